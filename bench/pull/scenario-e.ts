/**
 * Scenario E: the upstream behind a capped link (link/link.ts: a network namespace, a veth pair
 * shaped with tc, two relays), at each configured rate. Per rate, each contestant is started
 * fresh with the link as its upstream (an empty cache, so both pulls are cold) and measured on:
 *
 *   cold@R     one client pulls a large blob (1 GiB in a full run); direct pulls over the link too
 *   one@R      direct only: ONE pull of the clients' blob (256 MiB), the baseline for clients@R
 *   clients@R  N concurrent cold clients (50) of that blob; a cache that coalesces makes one
 *              upstream download, so its wall time should stay near one direct pull's
 *
 * The token server and the contestants' clients stay on loopback: only the registry (manifests
 * and blobs) is behind the link, which is where the bytes are.
 */
import type { FakeHub } from '../../test/helpers/fake-hub.ts';
import type { BlobFile } from '../blob-file.ts';
import type { Contestant, ContestantName, PullerName } from '../contestants.ts';
import { startCappedLink } from '../link/link.ts';
import { RssSampler } from '../measure.ts';
import { PullClient } from '../pull-client.ts';
import { concurrentPulls } from './scenario-c.ts';
import {
  errorText,
  log,
  measure,
  newAgent,
  STEP_LIMIT_MS,
  type RunOutput,
  type SuiteContext,
} from './runner.ts';

export const E_REPO = 'library/bench-e';
export const E_CLIENTS_REPO = 'library/bench-e-clients';

/** What scenario E ran on, for the JSON report. */
export interface LinkSuite {
  ratesMbit: number[];
  rttMs: number;
  /** How the link was built and shaped (ip, tc and the relays' command lines). */
  commands: string[];
  /** Every contestant instance started behind the link, with its configuration. */
  contestants: {
    mbit: number;
    name: ContestantName;
    url: string;
    summary: string;
    config: string | undefined;
  }[];
  /** Peak RSS of each contestant's process tree over its E runs (100 ms samples), per rate. */
  memoryPeaks: { mbit: number; name: ContestantName; peak: number }[];
}

/** A time limit that a run moving `bytes` over the link at `mbit` cannot reach unless stuck. */
function limitFor(bytes: number, mbit: number): number {
  return STEP_LIMIT_MS + Math.ceil(3 * ((bytes * 8) / (mbit * 1e6)) * 1000);
}

export async function scenarioE(
  ctx: SuiteContext,
  names: readonly PullerName[],
  blobs: { one: BlobFile; clients: BlobFile },
  start: (name: PullerName, hub: FakeHub) => Promise<Contestant>,
): Promise<LinkSuite> {
  const { eRatesMbit, eRttMs, eClients } = ctx.params;
  const link = await startCappedLink({ hubPort: ctx.hub.registryPort, rttMs: eRttMs });
  const out: LinkSuite = {
    ratesMbit: [...eRatesMbit],
    rttMs: eRttMs,
    commands: [],
    contestants: [],
    memoryPeaks: [],
  };
  // The hub as the contestants see it: its registry only through the link.
  const behindLink: FakeHub = {
    ...ctx.hub,
    registryUrl: link.url,
    registryPort: Number(link.host.split(':')[1]),
  };
  try {
    log(`E: link ${link.url} -> hub ${ctx.hub.registryUrl}${eRttMs > 0 ? `, rtt +${eRttMs} ms` : ''}`);
    for (const mbit of eRatesMbit) {
      link.setRate(mbit);
      for (const name of names) {
        const c = await start(name, behindLink);
        out.contestants.push({ mbit, name, url: c.url, summary: c.summary, config: c.config });
        const samplers = new Map<ContestantName, RssSampler>();
        const pid = c.pid;
        if (pid !== undefined) {
          const s = new RssSampler(() => pid);
          s.start();
          samplers.set(name, s);
        }
        const eCtx: SuiteContext = { ...ctx, samplers, linkPids: () => link.pids(), linkMbit: mbit };
        const agent = newAgent();
        try {
          await runOne(eCtx, c, agent, mbit, blobs, eClients);
        } finally {
          await agent.close();
          for (const s of samplers.values()) {
            s.stop();
            out.memoryPeaks.push({ mbit, name, peak: s.peak });
          }
          try {
            await c.stop();
          } catch (err) {
            log(`stopping ${c.name} failed: ${errorText(err)}`);
          }
        }
      }
    }
  } finally {
    out.commands = [...link.commands];
    await link.stop();
  }
  return out;
}

async function runOne(
  ctx: SuiteContext,
  c: Contestant,
  agent: ReturnType<typeof newAgent>,
  mbit: number,
  blobs: { one: BlobFile; clients: BlobFile },
  clients: number,
): Promise<void> {
  const pullOnce =
    (repo: string, blob: BlobFile) =>
    async (signal: AbortSignal): Promise<RunOutput> => {
      const t = await new PullClient(c.url, agent, signal).pullBlob(repo, blob.digest, blob.size);
      return { bytes: t.bytes };
    };
  const stored =
    (blob: BlobFile) =>
    (signal: AbortSignal): Promise<void> =>
      c.stored(blob.digest, blob.size, signal);
  const { one, clients: many } = blobs;
  await measure(ctx, c, 'E', `cold@${mbit}M`, pullOnce(E_REPO, one), {
    after: stored(one),
    writes: 2 * one.size,
    limitMs: limitFor(2 * one.size, mbit),
  });
  if (c.name === 'direct') {
    await measure(ctx, c, 'E', `one@${mbit}M`, pullOnce(E_CLIENTS_REPO, many), {
      limitMs: limitFor(many.size, mbit),
    });
    return;
  }
  // Distribution fetches per client (and once more to store): allow for every byte, N + 1 times.
  await measure(
    ctx,
    c,
    'E',
    `clients@${mbit}M`,
    (signal) => concurrentPulls(c, agent, signal, E_CLIENTS_REPO, many, clients),
    { after: stored(many), writes: 2 * many.size, limitMs: limitFor((clients + 1) * many.size, mbit) },
  );
}
