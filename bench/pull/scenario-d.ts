/**
 * Scenario D: warm GETs of many different cached tag manifests (round robin over `images`) for a
 * fixed time on a fixed number of keep-alive connections, the way issue 14 measured the peers:
 * `wrk -t2 -c64 -d10s` (Debian's `wrk`, C: the load takes little of the two cores) with a Lua
 * script that cycles the paths, Docker v2 + OCI `Accept`. Every manifest is fetched and checked
 * against its digest (twice, so every cache has it) before the load; during the load wrk counts
 * non-2xx answers and socket errors as errors. Without wrk an undici Pool does the load and checks
 * every answer's digest (its own CPU then competes with the server's: the table says which ran).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { ACCEPT_ALL_MANIFESTS, type TestImage } from '../../test/helpers/images.ts';
import type { Contestant } from '../contestants.ts';
import { PullClient } from '../pull-client.ts';
import {
  errorText,
  log,
  measure,
  newAgent,
  percentile,
  stepSignal,
  type RunOutput,
  type SuiteContext,
} from './runner.ts';

/** Scenario D's repository: tags 1..dManifests, one small image each. */
export const D_REPO = 'library/bench-d';
const WRK = '/usr/bin/wrk';
const run = promisify(execFile);
/** Cap on requests per undici D run, besides its duration. */
const D_MAX_REQUESTS = 2_000_000;

export const dLoadTool = (): 'wrk' | 'undici' => (existsSync(WRK) ? 'wrk' : 'undici');

export async function scenarioD(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  images: readonly TestImage[],
): Promise<void> {
  const repo = images[0]?.repo;
  if (repo === undefined) throw new Error('scenario D needs at least one manifest');
  for (const c of contestants) {
    // Warm up (and get a token when the contestant asks for one): every manifest twice, checked.
    const agent = newAgent();
    let token: string | undefined;
    try {
      const client = new PullClient(c.url, agent, stepSignal(ctx.global));
      for (let round = 0; round < 2; round++)
        for (const image of images) await client.pullManifest(image.repo, image.tag, image.digest);
      token = client.tokenFor(repo);
    } catch (err) {
      log(`D ${c.name}: warm-up failed: ${errorText(err)}`);
    } finally {
      await agent.close();
    }
    const headers: Record<string, string> = { accept: ACCEPT_ALL_MANIFESTS, 'user-agent': 'docxy-bench' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    await measure(ctx, c, 'D', '', (signal) =>
      dLoadTool() === 'wrk'
        ? wrkLoad(ctx, c.url, images, headers, signal)
        : undiciLoad(ctx, c.url, images, headers, signal),
    );
  }
}

const pathOf = (image: TestImage): string => `/v2/${image.repo}/manifests/${image.tag}`;

/** wrk's `--latency` figure (`1.23ms`, `850.00us`, `1.02s`) in milliseconds. */
export function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (m === null) return NaN;
  const scale = { us: 1e-3, ms: 1, s: 1e3, m: 60e3 }[m[2] as 'us' | 'ms' | 's' | 'm'];
  return Number(m[1]) * scale;
}

/** What wrk printed: requests, seconds, errors, p50/p99 (ms). Throws on output it cannot read. */
export function parseWrk(out: string): {
  requests: number;
  secs: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
} {
  const total = /(\d+) requests in ([\d.]+)(ms|s|m)\b/.exec(out);
  const p50 = /^\s*50%\s+(\S+)/m.exec(out);
  const p99 = /^\s*99%\s+(\S+)/m.exec(out);
  if (total === null || p50 === null || p99 === null) throw new Error(`unreadable wrk output: ${out}`);
  const secs = Number(total[2]) * { ms: 1e-3, s: 1, m: 60 }[total[3] as 'ms' | 's' | 'm'];
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = Number(non2xx?.[1] ?? 0) + (socket?.slice(1).reduce((a, b) => a + Number(b), 0) ?? 0);
  return { requests: Number(total[1]), secs, errors, p50Ms: wrkMs(p50[1]!), p99Ms: wrkMs(p99[1]!) };
}

async function wrkLoad(
  ctx: SuiteContext,
  url: string,
  images: readonly TestImage[],
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<RunOutput> {
  const dir = mkdtempSync(join(tmpdir(), 'docxy-bench-d-'));
  try {
    const script = join(dir, 'paths.lua');
    const list = images.map((i) => JSON.stringify(pathOf(i))).join(',\n  ');
    writeFileSync(
      script,
      `local paths = {\n  ${list}\n}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n`,
    );
    const args = [
      '-t2',
      `-c${ctx.params.dConnections}`,
      `-d${ctx.params.dSeconds}s`,
      '--latency',
      '-s',
      script,
    ];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    // Asynchronous, so this process keeps sampling the servers' RSS while wrk runs.
    const { stdout } = await run(WRK, [...args, `${url}/`], {
      encoding: 'utf8',
      signal,
      timeout: (ctx.params.dSeconds + 60) * 1000,
    });
    const w = parseWrk(stdout);
    if (w.requests === 0) throw new Error(`wrk made no request: ${stdout}`);
    if (w.errors > 0) log(`D: wrk counted ${w.errors} errors`);
    const avgSize = images.reduce((n, i) => n + i.size, 0) / images.length;
    return {
      bytes: Math.round((w.requests - w.errors) * avgSize),
      requests: {
        count: w.requests - w.errors,
        rps: (w.requests - w.errors) / w.secs,
        p50Ms: w.p50Ms,
        p99Ms: w.p99Ms,
        errors: w.errors,
        load: `wrk -t2 -c${ctx.params.dConnections}`,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function undiciLoad(
  ctx: SuiteContext,
  url: string,
  images: readonly TestImage[],
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<RunOutput> {
  const pool = new Pool(url, {
    connections: ctx.params.dConnections,
    pipelining: 1,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  try {
    const latencies: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let bytes = 0;
    let next = 0;
    const start = performance.now();
    const deadline = start + ctx.params.dSeconds * 1000;
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline && latencies.length + errors < D_MAX_REQUESTS && !signal.aborted) {
        const image = images[next++ % images.length]!;
        const t0 = performance.now();
        try {
          const res = await pool.request({ path: pathOf(image), method: 'GET', headers, signal });
          const buf = Buffer.from(await res.body.arrayBuffer());
          const digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
          if (res.statusCode !== 200 || digest !== image.digest) {
            errors++;
            firstError ??= `HTTP ${res.statusCode} ${buf.toString('utf8').slice(0, 200)}`;
            continue;
          }
          bytes += buf.length;
          latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= errorText(err);
        }
      }
    };
    await Promise.all(Array.from({ length: ctx.params.dConnections }, worker));
    const elapsed = (performance.now() - start) / 1000;
    latencies.sort((a, b) => a - b);
    if (latencies.length === 0)
      throw new Error(`no successful request (${errors} errors: ${String(firstError)})`);
    if (errors > 0) log(`D: ${errors} failed requests, first: ${String(firstError)}`);
    return {
      bytes,
      requests: {
        count: latencies.length,
        rps: latencies.length / elapsed,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        errors,
        load: `undici Pool, ${ctx.params.dConnections} connections`,
      },
    };
  } finally {
    await pool.close();
  }
}
