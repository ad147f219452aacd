/**
 * Scenario D: warm tag-manifest GETs for a fixed time on a fixed number of keep-alive
 * connections; every answer is checked against the manifest's digest. Requests per second, p50
 * and p99 latency.
 */
import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import { ACCEPT_ALL_MANIFESTS, TINY } from '../../test/helpers/images.ts';
import type { Contestant } from '../contestants.ts';
import { PullClient } from '../pull-client.ts';
import { errorText, log, measure, newAgent, percentile, stepSignal, type SuiteContext } from './runner.ts';

/** Cap on requests per D run, besides its duration. */
const D_MAX_REQUESTS = 2_000_000;

export async function scenarioD(ctx: SuiteContext, contestants: readonly Contestant[]): Promise<void> {
  const image = TINY;
  const path = `/v2/${image.repo}/manifests/${image.tag}`;
  for (const c of contestants) {
    // Warm it up (and get a token when the contestant asks for one): two GETs, so a cache has it.
    const agent = newAgent();
    let token: string | undefined;
    try {
      const client = new PullClient(c.url, agent, stepSignal(ctx.global));
      await client.pullManifest(image.repo, image.tag, image.digest);
      await client.pullManifest(image.repo, image.tag, image.digest);
      token = client.tokenFor(image.repo);
    } catch (err) {
      log(`D ${c.name}: warm-up failed: ${errorText(err)}`);
    } finally {
      await agent.close();
    }
    const headers: Record<string, string> = { accept: ACCEPT_ALL_MANIFESTS, 'user-agent': 'docxy-bench' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const pool = new Pool(c.url, {
      connections: ctx.params.dConnections,
      pipelining: 1,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    try {
      await measure(ctx, c, 'D', '', async (signal) => {
        const latencies: number[] = [];
        let errors = 0;
        let firstError: string | undefined;
        let bytes = 0;
        const start = performance.now();
        const deadline = start + ctx.params.dSeconds * 1000;
        const worker = async (): Promise<void> => {
          while (
            performance.now() < deadline &&
            latencies.length + errors < D_MAX_REQUESTS &&
            !signal.aborted
          ) {
            const t0 = performance.now();
            try {
              const res = await pool.request({ path, method: 'GET', headers, signal });
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
              signal.throwIfAborted();
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
        if (errors > 0) log(`D ${c.name}: ${errors} failed requests, first: ${String(firstError)}`);
        return {
          bytes,
          requests: {
            count: latencies.length,
            rps: latencies.length / elapsed,
            p50Ms: percentile(latencies, 50),
            p99Ms: percentile(latencies, 99),
            errors,
          },
        };
      });
    } finally {
      await pool.close();
    }
  }
}
