/**
 * The real-client tests' shared fixture: one fake hub seeded with every test image, and one Docxy
 * (default configuration, its own data directory) in front of it. The timings of each step are
 * kept for the tests' diagnostics.
 */
import { startDocxy, type TestDocxy } from './docxy.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { ALL_IMAGES, seedImages, type ImageDescriptor, type ImageName } from './images.ts';

export interface SeededWorld {
  readonly hub: FakeHub;
  readonly docxy: TestDocxy;
  readonly images: Record<ImageName, ImageDescriptor>;
  /** One line per setup step, with how long it took. */
  readonly timings: readonly string[];
  /** Stops Docxy and the hub; throws the first failure after trying both. */
  stop(): Promise<void>;
}

export async function startSeededWorld(): Promise<SeededWorld> {
  const timings: string[] = [];
  let t0 = Date.now();
  const hub = await startFakeHub();
  timings.push(`fake hub up in ${Date.now() - t0} ms`);
  try {
    t0 = Date.now();
    const images = await seedImages(hub, ALL_IMAGES);
    timings.push(`seeded ${ALL_IMAGES.join(', ')} in ${Date.now() - t0} ms`);
    t0 = Date.now();
    // startDocxy gives it a data directory of its own and removes it on stop.
    const docxy = await startDocxy({ upstream: { url: hub.registryUrl } });
    timings.push(`docxy up in ${Date.now() - t0} ms at ${docxy.url} (data ${docxy.dataDir})`);
    return {
      hub,
      docxy,
      images,
      timings,
      async stop() {
        const results = await Promise.allSettled([docxy.stop(), hub.stop()]);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      },
    };
  } catch (err) {
    await hub.stop();
    throw err;
  }
}
