/**
 * The contestants, each in front of the same fake hub and each its own process (so its memory and
 * CPU can be read from /proc), started with a known PID and stopped by that PID:
 *
 *   direct        the client talks to the hub itself (token, GET, follows the CDN redirect)
 *   docxy         `node bin/docxy.js serve --config FILE` (needs `npm run build`)
 *   distribution  Debian's CNCF Distribution 2.8 in pull-through proxy mode
 *   nginx         Debian's nginx as a `proxy_cache` mirror that follows the hub's blob redirect
 *   nginx-static  nginx serving the blob file from disk with sendfile: the warm reference
 *
 * (nginx.ts holds both nginx setups; server-process.ts starts and stops the processes.)
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { ConfigInput } from '../src/config/schema.ts';
import { REGISTRY_BINARY, type FakeHub } from '../test/helpers/fake-hub.ts';
import { freePort } from '../test/helpers/process.ts';
import { makeTmpDir } from '../test/helpers/tmp.ts';
import { startNginx } from './nginx.ts';
import { ready, spawnServer, stopAndRemove } from './server-process.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The contestants that pull through the hub (every scenario). */
export type PullerName = 'direct' | 'docxy' | 'docxy-nometrics' | 'distribution' | 'nginx';
/** `nginx-static` is a reference, not a cache: it serves one file, in scenario B's warm phase only. */
export type ContestantName = PullerName | 'nginx-static';
/** The default set; `docxy-nometrics` (metrics.enabled false, for the metrics' cost) is opt-in. */
export const CONTESTANTS: readonly ContestantName[] = [
  'direct',
  'docxy',
  'distribution',
  'nginx',
  'nginx-static',
];
export const ALL_PULLERS: readonly PullerName[] = [
  'direct',
  'docxy',
  'distribution',
  'nginx',
  'docxy-nometrics',
];
export const ALL_CONTESTANTS: readonly ContestantName[] = [...ALL_PULLERS, 'nginx-static'];

export interface Contestant {
  readonly name: ContestantName;
  /** Where clients pull from. */
  readonly url: string;
  /** PID of the server process (root of its tree), undefined for `direct`. */
  readonly pid: number | undefined;
  /** One line describing the setup, for the report. */
  readonly summary: string;
  /** The configuration file it runs with, verbatim (for the JSON report). */
  readonly config: string | undefined;
  /** After a cold pull: waits until the contestant has stored the blob, when it stores in the background. */
  stored(digest: string, size: number, signal: AbortSignal): Promise<void>;
  /** The process's log so far (for diagnosing a failure). */
  log(): string;
  stop(): Promise<void>;
}

export function envWithout(prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith(prefix)));
}

const nothingToWait = (): Promise<void> => Promise.resolve();

export function direct(hub: FakeHub): Contestant {
  return {
    name: 'direct',
    url: hub.registryUrl,
    pid: undefined,
    summary: `the client pulls from the hub itself (${hub.cdn === undefined ? 'blobs served by the registry' : 'blob GETs redirected to the CDN'})`,
    config: undefined,
    stored: nothingToWait,
    log: () => '',
    stop: nothingToWait,
  };
}

/** Docxy as a contestant; `extra` adds or replaces top-level keys of its configuration (the soak sets memory and cache limits). */
export async function startDocxy(hub: FakeHub, extra: Partial<ConfigInput> = {}): Promise<Contestant> {
  const dir = makeTmpDir('bench-docxy');
  try {
    const port = await freePort();
    const data = join(dir.path, 'data');
    mkdirSync(data);
    const config = {
      listen: `127.0.0.1:${port}`,
      log_level: 'info',
      data,
      upstream: { url: hub.registryUrl },
      cache: { enabled: true },
      ...extra,
    } satisfies ConfigInput;
    const text = stringify(config);
    const file = join(dir.path, 'docxy.yaml');
    writeFileSync(file, text);
    const proc = spawnServer(
      process.execPath,
      [
        // Extra node flags for Docxy only, e.g. BENCH_DOCXY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p".
        ...(process.env.BENCH_DOCXY_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
        // Another checkout's built Docxy (an A/B of a change), e.g. BENCH_DOCXY_ROOT=/tmp/old.
        join(process.env.BENCH_DOCXY_ROOT ?? REPO_ROOT, 'bin', 'docxy.js'),
        'serve',
        '--config',
        file,
      ],
      {
        logFile: join(dir.path, 'docxy.log'),
        cwd: REPO_ROOT,
        env: envWithout('DOCXY_'),
      },
    );
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, 'docxy', `${url}/health`, (s) => s === 200);
    return {
      name: extra.metrics?.enabled === false ? 'docxy-nometrics' : 'docxy',
      url,
      pid: proc.pid,
      summary: `node bin/docxy.js serve: listen ${config.listen}, upstream ${hub.registryUrl}, data <tmp>, cache.enabled true, metrics.enabled ${String(extra.metrics?.enabled !== false)}, log_level info`,
      config: text,
      stored: nothingToWait,
      log: () => proc.log(),
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

export async function startDistributionProxy(hub: FakeHub): Promise<Contestant> {
  const dir = makeTmpDir('bench-distribution');
  try {
    const port = await freePort();
    const storage = join(dir.path, 'storage');
    // Distribution 2.8's proxy mode needs only `proxy.remoteurl` (credentials are optional: it then
    // fetches anonymous tokens from the realm the remote's challenge names). No `auth` section:
    // its front is open. Storage and the proxy scheduler's state live in `storage`.
    const config = {
      version: 0.1,
      log: { level: 'info', formatter: 'text', fields: { service: 'bench-distribution-proxy' } },
      storage: {
        filesystem: { rootdirectory: storage },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: 'docxy-bench-distribution-proxy-secret' },
      proxy: { remoteurl: hub.registryUrl },
    };
    const text = stringify(config);
    const file = join(dir.path, 'config.yml');
    writeFileSync(file, text);
    const proc = spawnServer(REGISTRY_BINARY, ['serve', file], {
      logFile: join(dir.path, 'registry.log'),
      cwd: dir.path,
      env: envWithout('REGISTRY_'),
    });
    const url = `http://127.0.0.1:${port}`;
    await ready(proc, 'distribution proxy', `${url}/v2/`, (s) => s === 200);
    return {
      name: 'distribution',
      url,
      pid: proc.pid,
      summary: `docker-registry 2.8 serve: proxy.remoteurl ${hub.registryUrl}, filesystem storage <tmp>, no auth on its front`,
      config: text,
      // It serves a cold blob from one upstream GET while a second GET fills its storage in the
      // background: wait for that copy, so the next run does not overlap it.
      async stored(digest, size, signal) {
        const hex = digest.slice('sha256:'.length);
        const data = join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
        const deadline = Date.now() + 300_000;
        for (let i = 0; i < 3000 && !signal.aborted && Date.now() < deadline; i++) {
          if (existsSync(data) && statSync(data).size === size) return;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`distribution proxy never stored ${digest}`);
      },
      log: () => proc.log(),
      stop: stopAndRemove(proc, dir),
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

/** Starts one contestant by name. */
export function startContestant(name: PullerName, hub: FakeHub): Promise<Contestant> {
  switch (name) {
    case 'direct':
      return Promise.resolve(direct(hub));
    case 'docxy':
      return startDocxy(hub);
    case 'docxy-nometrics':
      return startDocxy(hub, { metrics: { enabled: false } });
    case 'distribution':
      return startDistributionProxy(hub);
    case 'nginx':
      return startNginx(hub);
  }
}
