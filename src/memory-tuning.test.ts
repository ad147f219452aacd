import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { planMemoryReexec, type ProcessView } from './memory-tuning.ts';

const MiB = 1024 ** 2;
const view = (over: Partial<ProcessView> = {}): ProcessView => ({
  execPath: '/usr/bin/node',
  execArgv: [],
  argv: ['/usr/bin/node', '/opt/docxy/bin/docxy.js', 'serve', '--config', '/etc/docxy.yaml'],
  env: { PATH: '/usr/bin', HOME: '/home/docxy' },
  ...over,
});

test('the plan puts the V8 flag before the script and keeps every argument and variable', () => {
  const plan = planMemoryReexec(
    { semi_space: 8 * MiB, malloc_arenas: 1 },
    view({ execArgv: ['--import', 'tsx'] }),
  );
  assert.ok(plan);
  assert.equal(plan.file, '/usr/bin/node');
  assert.deepEqual(plan.args, [
    '/usr/bin/node',
    '--max-semi-space-size=8',
    '--import',
    'tsx',
    '/opt/docxy/bin/docxy.js',
    'serve',
    '--config',
    '/etc/docxy.yaml',
  ]);
  assert.deepEqual(plan.env, { PATH: '/usr/bin', HOME: '/home/docxy', MALLOC_ARENA_MAX: '1' });
  assert.deepEqual(plan.applied, ['--max-semi-space-size=8', 'MALLOC_ARENA_MAX=1']);
});

test('a process already running with the settings is not re-executed again', () => {
  const tuning = { semi_space: 8 * MiB, malloc_arenas: 1 };
  const first = planMemoryReexec(tuning, view());
  assert.ok(first);
  const after = view({ execArgv: first.args.slice(1, -4), env: first.env });
  assert.equal(planMemoryReexec(tuning, after), undefined);
});

test("the operator's own settings win, and 0 means the runtime's default", () => {
  const tuning = { semi_space: 8 * MiB, malloc_arenas: 1 };
  assert.equal(
    planMemoryReexec(
      tuning,
      view({ env: { NODE_OPTIONS: '--max_semi_space_size=32', MALLOC_ARENA_MAX: '4' } }),
    ),
    undefined,
  );
  const onlyArenas = planMemoryReexec(tuning, view({ execArgv: ['--max-semi-space-size', '16'] }));
  assert.deepEqual(onlyArenas?.applied, ['MALLOC_ARENA_MAX=1']);
  assert.equal(planMemoryReexec({ semi_space: 0, malloc_arenas: 0 }, view()), undefined);
  assert.deepEqual(planMemoryReexec({ semi_space: 0, malloc_arenas: 2 }, view())?.applied, [
    'MALLOC_ARENA_MAX=2',
  ]);
});

test('a real process re-executes itself once, in place, with the settings in effect', async (t) => {
  const execve = (process as { execve?: unknown }).execve;
  if (typeof execve !== 'function') {
    // Node 22.0-22.14 has no process.execve: the fallback (a warning, no re-exec) is what runs there.
    const { reexecForMemory } = await import('./memory-tuning.ts');
    assert.match(reexecForMemory({ semi_space: 8 * MiB, malloc_arenas: 1 }) ?? '', /Node >= 22\.15/);
    t.diagnostic('process.execve is not available on this Node: checked the fallback');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'docxy-reexec-'));
  try {
    const script = join(dir, 'reexec.ts');
    const module = fileURLToPath(new URL('./memory-tuning.ts', import.meta.url));
    writeFileSync(
      script,
      [
        `import { reexecForMemory } from ${JSON.stringify(module)};`,
        `process.stderr.write('start ' + process.pid + '\\n');`,
        `const why = reexecForMemory({ semi_space: 4 * 1024 ** 2, malloc_arenas: 1 });`,
        `process.stdout.write(JSON.stringify({ why, pid: process.pid, execArgv: process.execArgv,`,
        `  argv: process.argv.slice(2), arenas: process.env.MALLOC_ARENA_MAX, keep: process.env.KEEP_ME }));`,
      ].join('\n'),
    );
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', script, 'serve', '--flag'],
      {
        env: { ...process.env, KEEP_ME: 'yes', MALLOC_ARENA_MAX: undefined, NODE_OPTIONS: '' },
        cwd: process.cwd(),
      },
    );
    const starts = stderr.match(/^start (\d+)$/gm) ?? [];
    assert.equal(starts.length, 2, `the script started twice (before and after the re-exec): ${stderr}`);
    const out = JSON.parse(stdout) as {
      why?: string;
      pid: number;
      execArgv: string[];
      argv: string[];
      arenas?: string;
      keep?: string;
    };
    assert.equal(out.why, undefined, 'the re-executed process has nothing left to change');
    assert.equal(starts[0], `start ${out.pid}`, 'same PID after the re-exec');
    assert.deepEqual(out.execArgv.slice(0, 3), ['--max-semi-space-size=4', '--import', 'tsx']);
    assert.deepEqual(out.argv, ['serve', '--flag']);
    assert.equal(out.arenas, '1');
    assert.equal(out.keep, 'yes', 'the environment is kept');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
