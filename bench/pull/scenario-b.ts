/**
 * Scenario B: one large blob (1 GiB in a full run), cold (the first pull fills the cache) then
 * warm (the second pull is served from it), one client. References (nginx serving the file with
 * sendfile) take part in the warm phase only, after one unmeasured pull that brings the file into
 * the page cache, where a cache's just-written file also is.
 */
import type { Agent } from 'undici';
import type { BlobFile } from '../blob-file.ts';
import type { Contestant } from '../contestants.ts';
import { PullClient } from '../pull-client.ts';
import { eachContestant, measure, stepSignal, type RunOutput, type SuiteContext } from './runner.ts';

export const B_REPO = 'library/bench-b';

export async function scenarioB(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  blob: BlobFile,
  references: readonly Contestant[] = [],
): Promise<void> {
  const puller =
    (c: Contestant, agent: Agent) =>
    async (signal: AbortSignal): Promise<RunOutput> => {
      const t = await new PullClient(c.url, agent, signal).pullBlob(B_REPO, blob.digest, blob.size);
      return { bytes: t.bytes };
    };
  await eachContestant(contestants, async (c, agent) => {
    const pull = puller(c, agent);
    const after = (signal: AbortSignal): Promise<void> => c.stored(blob.digest, blob.size, signal);
    await measure(ctx, c, 'B', 'cold', pull, { after, writes: 2 * blob.size });
    await measure(ctx, c, 'B', 'warm', pull);
  });
  await eachContestant(references, async (c, agent) => {
    const pull = puller(c, agent);
    await pull(stepSignal(ctx.global));
    await measure(ctx, c, 'B', 'warm', pull);
  });
}
