// Runs node's test runner over one suite's files (no glob in --test, so the runner can start
// on any node). Usage: node scripts/run-tests.mjs unit|integration|all [extra node args]
//
// The tests run on DOCXY_TEST_NODE (a node binary), else on this node if it is supported (>= 22),
// else on the cached Node 22 from scripts/node-bin.mjs. That node's directory goes first in PATH,
// so everything the tests start (`process.execPath`, `#!/usr/bin/env node` scripts such as an
// installed `docxy` or `npm`) runs on the same node.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';

import { MIN_MAJOR, nodeBinPath } from './node-bin.mjs';

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
const roots = {
  unit: ['src', 'test/conformance', 'bench'],
  integration: ['test/integration'],
  all: ['src', 'test', 'bench'],
}[suite];
if (!roots) {
  console.error(`unknown suite ${suite}`);
  process.exit(2);
}
const files = roots.flatMap((r) => walk(r, [])).sort();
function testNode() {
  if (process.env.DOCXY_TEST_NODE) return process.env.DOCXY_TEST_NODE;
  if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) return process.execPath;
  const cached = nodeBinPath(MIN_MAJOR);
  if (existsSync(cached)) return cached;
  console.error(
    `Node ${process.version} is below the supported ${MIN_MAJOR}; run \`node scripts/node-bin.mjs ${MIN_MAJOR}\` ` +
      'once (or set DOCXY_TEST_NODE). Running on it anyway.',
  );
  return process.execPath;
}
// Absolute, so the PATH entry holds in tests that run commands from another directory.
const chosen = testNode();
const node = chosen.includes('/') ? resolve(chosen) : chosen;
const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
console.log(`# ${suite} tests on Node ${version} (${node})`);
const concurrency = suite === 'integration' ? '1' : '2';
// Docxy reads every DOCXY_* variable as configuration and rejects unknown keys, so none of the
// caller's (DOCXY_TEST_NODE included) may reach the Docxy processes the tests start.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DOCXY_')));
env.PATH = `${dirname(node)}${delimiter}${process.env.PATH ?? ''}`;
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
  {
    stdio: 'inherit',
    env,
  },
);
process.exit(res.status ?? 1);
