/**
 * Docxy as users get it: `npm pack` of this repository (which runs the `prepack` script: a clean
 * build of dist/), the tarball installed with `npm install --omit=dev` into an empty directory,
 * and the installed `node_modules/.bin/docxy` run from there — never the source tree, never a
 * devDependency. What the test suite cannot see from the source tree (a run-time import that is
 * only a devDependency, a file `files` leaves out) breaks here.
 *
 * The installed CLI is started through its `#!/usr/bin/env node` line with the test's own node
 * first in PATH (scripts/run-tests.mjs selects it; Node 22 in CI), and with every DOCXY_* variable
 * removed, so only the flags and files a test gives count. One pack and install per test file;
 * `remove()` deletes the tarball and the install.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

import { runCommand, type CmdResult } from './clients/common.ts';
import { jsonLogLines } from './docxy-process.ts';
import { freePort, startProcess, waitForPort, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');

export interface PackedInstall {
  /** The `.tgz` that `npm pack` wrote. */
  readonly tarball: string;
  readonly tarballBytes: number;
  /** Paths inside the package (`bin/docxy.js`, `dist/main.js`, …), sorted. */
  readonly files: readonly string[];
  /** The install's root (holding package.json and node_modules/). */
  readonly prefix: string;
  /** `<prefix>/node_modules/docxy`. */
  readonly packageDir: string;
  /** `<prefix>/node_modules/.bin/docxy`, the link npm made from `bin`. */
  readonly bin: string;
  readonly packMs: number;
  readonly installMs: number;
  /** The environment the CLI runs with: the test's node first in PATH, no DOCXY_* variables. */
  env(extra?: Record<string, string>): NodeJS.ProcessEnv;
  /** Runs `docxy …args` to completion in `cwd` (default: a scratch directory of the install). */
  run(args: readonly string[], opts?: { cwd?: string; input?: string }): Promise<CmdResult>;
  /** Starts `docxy serve …args` and waits until `port` accepts connections. */
  serve(opts: ServeOptions): Promise<PackedDocxy>;
  remove(): void;
}

export interface ServeOptions {
  /** Flags after `serve`; `--listen 127.0.0.1:<port>` is added unless `listen` is false. */
  args?: readonly string[];
  /** The port to listen on (default: a free one). */
  port?: number;
  /** false: the config file names the listen address (`--listen` left out). */
  listen?: boolean;
  cwd: string;
  /** How long start-up may take (ACME issuance happens before the listener opens). */
  startTimeoutMs?: number;
}

export interface PackedDocxy {
  readonly proc: Managed;
  readonly port: number;
  readonly url: string;
  /** host:port, as clients name the registry. */
  readonly hostPort: string;
  /** The JSON log lines so far. */
  logs(): Record<string, unknown>[];
  log(): string;
  stop(): Promise<void>;
}

async function checked(
  cmd: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const r = await runCommand(cmd, args, { cwd, env, timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The fields of `npm pack --json` used here. */
interface PackJson {
  filename: string;
  size: number;
  files: { path: string }[];
}

function parsePack(stdout: string): PackJson {
  // npm writes lifecycle script banners to stderr, so stdout is the JSON alone.
  const parsed: unknown = JSON.parse(stdout);
  const first: unknown = Array.isArray(parsed) ? parsed[0] : undefined;
  if (typeof first !== 'object' || first === null || !('filename' in first) || !('files' in first)) {
    throw new Error(`unexpected npm pack --json output:\n${stdout}`);
  }
  return first as PackJson;
}

/** Packs the repository and installs the tarball, production dependencies only, into a temp dir. */
export async function packAndInstall(): Promise<PackedInstall> {
  const tmp = makeTmpDir('packed');
  try {
    const env: NodeJS.ProcessEnv = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DOCXY_'))),
      // npm, the prepack build and the installed CLI run on the node running the tests.
      PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
    };
    const t0 = Date.now();
    const pack = parsePack(
      await checked('npm', ['pack', '--json', '--pack-destination', tmp.path], REPO_ROOT, env),
    );
    const packMs = Date.now() - t0;
    const tarball = join(tmp.path, pack.filename);

    const prefix = join(tmp.path, 'install');
    mkdirSync(prefix);
    writeFileSync(join(prefix, 'package.json'), '{ "private": true }\n');
    const t1 = Date.now();
    // As a user installs it: the registry's current versions within the declared ranges (the
    // tarball carries no lock file); --prefer-offline reuses npm's cache from `npm ci`.
    await checked(
      'npm',
      ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', tarball],
      prefix,
      env,
    );
    const installMs = Date.now() - t1;
    const scratch = join(tmp.path, 'work');
    mkdirSync(scratch);

    const packageDir = join(prefix, 'node_modules', 'docxy');
    const bin = join(prefix, 'node_modules', '.bin', 'docxy');
    const envWith = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...env, ...extra });
    return {
      tarball,
      tarballBytes: statSync(tarball).size,
      files: pack.files.map((f) => f.path).sort(),
      prefix,
      packageDir,
      bin,
      packMs,
      installMs,
      env: envWith,
      run: (args, opts = {}) =>
        runCommand(bin, args, {
          env,
          cwd: opts.cwd ?? scratch,
          ...(opts.input !== undefined ? { input: opts.input } : {}),
          timeoutMs: 60_000,
        }),
      async serve(opts) {
        const port = opts.port ?? (await freePort());
        const listen = opts.listen === false ? [] : ['--listen', `127.0.0.1:${port}`];
        const proc = startProcess('docxy (packed)', bin, ['serve', ...listen, ...(opts.args ?? [])], {
          logFile: join(opts.cwd, `docxy-${port}.log`),
          env,
          cwd: opts.cwd,
        });
        try {
          await Promise.race([
            waitForPort(port, '127.0.0.1', opts.startTimeoutMs ?? 30_000),
            proc.exited.then((code) => {
              throw new Error(`docxy exited (${String(code)}) before listening:\n${proc.log()}`);
            }),
          ]);
        } catch (err) {
          await proc.stop();
          throw err;
        }
        return {
          proc,
          port,
          url: `http://127.0.0.1:${port}`,
          hostPort: `127.0.0.1:${port}`,
          log: () => proc.log(),
          logs: () => jsonLogLines(proc.log()),
          stop: () => proc.stop(),
        };
      },
      remove: () => {
        tmp.remove();
      },
    };
  } catch (err) {
    tmp.remove();
    throw err;
  }
}

/** The installed package.json's `version`. */
export function installedVersion(install: PackedInstall): string {
  const pkg = JSON.parse(readFileSync(join(install.packageDir, 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  return String(pkg.version);
}
