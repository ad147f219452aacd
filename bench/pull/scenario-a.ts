/**
 * Scenario A: a cold pull of a whole image (manifest, config, layer) through each contestant,
 * one client; the runner records the contestant's RSS growth during it.
 */
import type { TestImage } from '../../test/helpers/images.ts';
import type { Contestant } from '../contestants.ts';
import { PullClient, type Transfer } from '../pull-client.ts';
import { eachContestant, measure, type RunOutput, type SuiteContext } from './runner.ts';

export async function scenarioA(
  ctx: SuiteContext,
  contestants: readonly Contestant[],
  image: TestImage,
): Promise<void> {
  const writes = 2 * image.blobs.reduce((n, b) => n + b.size, 0);
  await eachContestant(contestants, async (c, agent) => {
    const pull = async (signal: AbortSignal): Promise<RunOutput> => {
      const t: Transfer = await new PullClient(c.url, agent, signal).pullImage(image);
      return { bytes: t.bytes };
    };
    await measure(ctx, c, 'A', '', pull, { writes });
  });
}
