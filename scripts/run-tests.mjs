// Runs node's test runner over one suite's files (node 20 has no glob support in --test).
// Usage: node scripts/run-tests.mjs unit|integration|all [extra node args]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir, out) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (n.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const suite = process.argv[2] ?? 'all';
const roots = { unit: ['src', 'test/conformance'], integration: ['test/integration'], all: ['src', 'test'] }[
  suite
];
if (!roots) {
  console.error(`unknown suite ${suite}`);
  process.exit(2);
}
const files = roots.flatMap((r) => walk(r, [])).sort();
const node = process.env.DOCXY_TEST_NODE ?? process.execPath;
const concurrency = suite === 'integration' ? '1' : '2';
const res = spawnSync(
  node,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...process.argv.slice(3),
    ...files,
  ],
  { stdio: 'inherit' },
);
process.exit(res.status ?? 1);
