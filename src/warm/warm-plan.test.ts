import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eachLimited, planImage, refusalError, WarmError, type ManifestDoc } from './warm-plan.ts';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
/** An image manifest: its own config and layer, plus a layer every platform shares. */
const image = (config: string, layer: string): ManifestDoc => ({
  config: { digest: d(config), size: 10 },
  layers: [
    { digest: d('f'), size: 100 },
    { digest: d(layer), size: 5 },
  ],
});
const docs = new Map<string, ManifestDoc>([
  [
    '1',
    {
      manifests: [
        { digest: d('a'), platform: { os: 'linux', architecture: 'amd64' } },
        { digest: d('c'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { digest: d('e'), platform: { os: 'unknown', architecture: 'unknown' } },
      ],
    },
  ],
  [d('a'), image('a', 'b')],
  [d('c'), image('c', 'd')],
]);
const fetched: string[] = [];
const manifest = (ref: string): Promise<ManifestDoc> => {
  fetched.push(ref);
  const m = docs.get(ref);
  return m === undefined ? Promise.reject(new WarmError(`no ${ref}`)) : Promise.resolve(m);
};
const target = { name: 'library/x', reference: '1' };

test('planImage: chosen platforms only, a shared layer once, attestations never', async () => {
  fetched.length = 0;
  const one = await planImage(manifest, target, [{ os: 'linux', architecture: 'arm64' }]);
  assert.deepEqual(one.platforms, ['linux/arm64/v8']);
  assert.deepEqual(fetched, ['1', d('c')]);
  assert.deepEqual(
    one.blobs.map((b) => b.digest),
    [d('c'), d('f'), d('d')],
  );
  const all = await planImage(manifest, target, 'all');
  assert.deepEqual(all.platforms, ['linux/amd64', 'linux/arm64/v8']);
  assert.equal(all.blobs.length, 5, 'two configs, the shared layer once, two own layers');
  await assert.rejects(
    planImage(manifest, target, [{ os: 'linux', architecture: 's390x' }]),
    (e: unknown) => e instanceof WarmError && e.message === 'no linux/s390x in the index',
  );
});

test('eachLimited: never more than the limit at once, and stop ends the queue', async () => {
  let running = 0;
  let peak = 0;
  const done: number[] = [];
  await eachLimited([1, 2, 3, 4, 5, 6], 2, async (n) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 5));
    done.push(n);
    running--;
  });
  assert.equal(peak, 2);
  assert.deepEqual([...done].sort(), [1, 2, 3, 4, 5, 6]);
  const some: number[] = [];
  await eachLimited(
    [1, 2, 3, 4],
    1,
    (n) => {
      some.push(n);
      return Promise.resolve();
    },
    () => some.length >= 2,
  );
  assert.deepEqual(some, [1, 2]);
});

test('refusalError: the OCI error in its own words, else the status', () => {
  const body = JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] });
  assert.equal(
    refusalError('manifest 1', 404, body).message,
    'manifest 1: MANIFEST_UNKNOWN: manifest unknown',
  );
  assert.equal(refusalError('blob x', 502, '<html>').message, 'blob x: HTTP 502');
});
