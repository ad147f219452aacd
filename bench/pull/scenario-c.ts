/**
 * Scenario C: N concurrent cold clients of one blob, each with its own token and connection: wall
 * time, per-client times, and how many upstream blob GETs the contestant made for all of them.
 */
import type { Agent } from 'undici';
import type { BlobFile } from '../blob-file.ts';
import type { Contestant } from '../contestants.ts';
import { PullClient } from '../pull-client.ts';
import { eachContestant, measure, percentile, type RunOutput, type SuiteContext } from './runner.ts';

export const C_REPO = 'library/bench-c';

/**
 * `count` concurrent pulls of one blob through `c`, each its own puller (its own token, its own
 * connection): the clients' bytes and their min / median / max times.
 */
export async function concurrentPulls(
  c: Contestant,
  agent: Agent,
  signal: AbortSignal,
  repo: string,
  blob: BlobFile,
  count: number,
): Promise<RunOutput> {
  const times = await Promise.all(
    Array.from({ length: count }, async () => {
      const t = await new PullClient(c.url, agent, signal).pullBlob(repo, blob.digest, blob.size);
      return t.ms;
    }),
  );
  times.sort((a, b) => a - b);
  return {
    bytes: blob.size * count,
    clients: {
      count: times.length,
      minMs: times[0] ?? NaN,
      medianMs: percentile(times, 50),
      maxMs: times[times.length - 1] ?? NaN,
    },
  };
}

export async function scenarioC(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  blob: BlobFile,
): Promise<void> {
  await eachContestant(contestants, async (c, agent) => {
    const pullAll = (signal: AbortSignal): Promise<RunOutput> =>
      concurrentPulls(c, agent, signal, C_REPO, blob, ctx.params.cClients);
    const after = (signal: AbortSignal): Promise<void> => c.stored(blob.digest, blob.size, signal);
    await measure(ctx, c, 'C', '', pullAll, { after, writes: 2 * blob.size });
  });
}
