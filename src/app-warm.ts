/**
 * The `warm:` schedule: the server warms its configured images shortly after it starts listening
 * and then every `warm.interval`, in-process through its own caches (warm/local-source.ts), so tags
 * are revalidated and new blobs fetched before nodes pull them. Runs never overlap: one still going
 * when the next is due makes that one skipped. A run never crashes the server; close() aborts it.
 */
import type { BlobService } from './cache/blob-service.ts';
import type { RepositoryLinks } from './cache/links.ts';
import type { Config } from './config/load.ts';
import type { Logger } from './observability/logger.ts';
import type { WarmMetrics } from './observability/metrics.ts';
import type { Router } from './routing/router.ts';
import type { UpstreamRuntime } from './upstream/runtime.ts';
import { parseImage } from './warm/image-ref.ts';
import { createLocalWarmer } from './warm/local-source.ts';
import { eachLimited, parsePlatform, type Platform } from './warm/warm-plan.ts';

/** The first run waits this long after listen, so it never competes with the start itself. */
const firstRunDelayMs = 1000;

export interface WarmRunSummary {
  readonly images: number;
  readonly warmed: number;
  readonly failures: number;
  readonly blobs: number;
  readonly fetched: number;
  readonly bytes: number;
  readonly aborted: boolean;
}

export interface WarmSchedule {
  /** Starts the timers (after listen). */
  start(): void;
  /** Stops the timers and aborts a running run, waiting for it to wind down. */
  close(): Promise<void>;
}

export interface WarmScheduleDeps {
  readonly config: Config['warm'];
  readonly router: Router<UpstreamRuntime>;
  /** Absent when the cache is off: there is nothing to warm then. */
  readonly blobs: BlobService | undefined;
  readonly links: RepositoryLinks | undefined;
  readonly log: Logger;
  readonly metrics: WarmMetrics | undefined;
}

/** The schedule, or undefined when `warm.interval` is 0 or there are no images. */
export function buildWarmSchedule(deps: WarmScheduleDeps): WarmSchedule | undefined {
  const { config, log } = deps;
  if (config.interval === 0 || config.images.length === 0) return undefined;
  if (deps.blobs === undefined || deps.links === undefined) {
    log.warn('warm.images is set but cache.enabled is false: nothing is warmed');
    return undefined;
  }
  const warmer = createLocalWarmer({ router: deps.router, blobs: deps.blobs, links: deps.links });
  const platforms: Platform[] | 'all' =
    config.platforms === 'all'
      ? 'all'
      : config.platforms.flatMap((p) => {
          const parsed = parsePlatform(p);
          return parsed === undefined ? [] : [parsed];
        });
  let first: NodeJS.Timeout | undefined;
  let every: NodeJS.Timeout | undefined;
  let running: { abort: AbortController; done: Promise<WarmRunSummary> } | undefined;
  let closed = false;

  async function run(signal: AbortSignal): Promise<WarmRunSummary> {
    const t0 = Date.now();
    let warmed = 0;
    let failures = 0;
    let blobs = 0;
    let fetched = 0;
    let bytes = 0;
    await eachLimited(
      config.images,
      config.concurrency,
      async (ref) => {
        // The schema checked the reference; the router adds library/ where the upstream wants it.
        const target = parseImage(ref, false);
        try {
          if (target === undefined) throw new Error('not an image reference');
          const r = await warmer.warm(target, platforms, signal);
          warmed++;
          blobs += r.blobs;
          fetched += r.fetched;
          bytes += r.bytes;
          log.debug({ image: ref, platforms: r.platforms, blobs: r.blobs, fetched: r.fetched }, 'warmed');
        } catch (err) {
          if (signal.aborted) return;
          failures++;
          log.warn({ image: ref, reason: (err as Error).message }, 'warm failed');
        }
      },
      () => signal.aborted,
    );
    const summary = {
      images: config.images.length,
      warmed,
      failures,
      blobs,
      fetched,
      bytes,
      aborted: signal.aborted,
    };
    log.info({ ...summary, durationMs: Date.now() - t0 }, signal.aborted ? 'warm run aborted' : 'warm run');
    return summary;
  }

  function tick(): void {
    if (closed) return;
    if (running !== undefined) {
      deps.metrics?.run('skipped');
      log.warn({ interval: config.interval }, 'warm run skipped: the previous one is still running');
      return;
    }
    const abort = new AbortController();
    const done = run(abort.signal).then(
      (s) => {
        deps.metrics?.run(s.aborted ? 'aborted' : s.failures > 0 ? 'failed' : 'ok');
        deps.metrics?.imageFailures(s.failures);
        return s;
      },
      (err: unknown) => {
        // run() catches per image; this is a bug, and still no reason to take the server down.
        log.error({ err }, 'warm run crashed');
        deps.metrics?.run('failed');
        return { images: 0, warmed: 0, failures: 0, blobs: 0, fetched: 0, bytes: 0, aborted: false };
      },
    );
    const entry = { abort, done };
    running = entry;
    void done.finally(() => {
      if (running === entry) running = undefined;
    });
  }

  return {
    start() {
      if (closed || first !== undefined) return;
      first = setTimeout(
        () => {
          tick();
          if (closed) return;
          every = setInterval(tick, config.interval);
          every.unref();
        },
        Math.min(firstRunDelayMs, config.interval),
      );
      first.unref();
    },
    async close() {
      closed = true;
      clearTimeout(first);
      clearInterval(every);
      const r = running;
      if (r === undefined) return;
      r.abort.abort();
      await r.done;
    },
  };
}
