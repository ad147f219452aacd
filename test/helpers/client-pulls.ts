/**
 * The pulls the real-client tests repeat (warm-up, then again with the upstream down), against one
 * Docxy or a fleet behind nginx: dockerd via `registry-mirrors` and directly, `ctr` via
 * `hosts.toml`, each image checked against the descriptor it was pushed with. What the mirror
 * logged during a pull is in every failure message.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

import { timed } from './client-steps.ts';
import type { Containerd } from './clients/containerd.ts';
import type { Dockerd } from './clients/dockerd.ts';
import { describeRequest, type TestDocxy } from './docxy.ts';
import type { ChildDescriptor, ImageDescriptor, ImageName } from './images.ts';

/** A mirror the clients pull through, and what it logged. */
export interface PullTarget {
  /** `127.0.0.1:PORT`: the registry name of direct pulls (plain HTTP, an insecure registry). */
  readonly hostPort: string;
  /** The pushed images' descriptors, by name. */
  readonly images: Readonly<Record<ImageName, ImageDescriptor>>;
  /** Starts watching the mirror's request log; the function returned gives the lines since then. */
  watch(): () => readonly Record<string, unknown>[];
}

/** One Docxy in the test process as a pull target. */
export function pullTargetOf(
  docxy: TestDocxy,
  images: Readonly<Record<ImageName, ImageDescriptor>>,
): PullTarget {
  return {
    hostPort: docxy.hostPort,
    images,
    watch() {
      const mark = docxy.logMark();
      return () => docxy.requestsSince(mark);
    },
  };
}

/** Every multi-arch image is pulled for both of its platforms. */
export const ARCHES = ['arm64', 'amd64'] as const;

/** The platform manifest of a multi-arch image for `architecture`. */
export function child(desc: ImageDescriptor, architecture: string): ChildDescriptor {
  const c = desc.children?.find((x) => x.platform.os === 'linux' && x.platform.architecture === architecture);
  if (c === undefined) throw new Error(`${desc.repo}:${desc.tag} has no linux/${architecture} child`);
  return c;
}

const describeAll = (lines: readonly Record<string, unknown>[]): string =>
  lines.map(describeRequest).join('\n');

/** Pulls `ref` (optionally for a platform), checking the exit code and reporting the time. */
async function dockerPull(
  t: TestContext,
  target: PullTarget,
  d: Dockerd,
  ref: string,
  platform?: string,
): Promise<readonly Record<string, unknown>[]> {
  const since = target.watch();
  const r = await timed(
    t,
    `docker pull ${platform === undefined ? '' : `--platform ${platform} `}${ref}`,
    () => d.pull(ref, { ...(platform === undefined ? {} : { platform }), timeoutMs: 300_000 }),
  );
  assert.equal(r.code, 0, `docker pull ${ref}: ${r.stderr}\nthe mirror saw:\n${describeAll(since())}`);
  return since();
}

/** dockerd: the mirror's short name, then every image directly, each checked against its descriptor. */
export async function dockerdPullsEverything(t: TestContext, target: PullTarget, d: Dockerd): Promise<void> {
  const host = target.hostPort;
  const image = (name: ImageName): ImageDescriptor => target.images[name];

  // registry-mirrors: Docker asks the mirror for library/tiny; falling back to the Hub is impossible
  // (dead proxy), so a pull that works came through the mirror.
  const tiny = image('tiny');
  const seen = await dockerPull(t, target, d, 'tiny:1');
  assert.equal(await d.imageId('tiny:1'), tiny.configDigest);
  assert.deepEqual(await d.repoDigests('tiny:1'), [`tiny@${tiny.digest}`]);
  assert.ok(
    seen.some((l) => l.path === '/v2/library/tiny/manifests/1'),
    `the mirror saw:\n${describeAll(seen)}`,
  );
  // Gone again, so the direct pull of the same image below is a real pull with one repo digest.
  assert.equal((await d.removeImage('tiny:1')).code, 0);

  // Single-platform images, directly from the insecure registry 127.0.0.1:PORT.
  for (const [name, path] of [
    ['tiny', 'tiny:1'],
    ['app', 'someuser/app:2'],
    ['ocimanifest', 'ocimanifest:1'],
  ] as const) {
    const desc = image(name);
    const ref = `${host}/${path}`;
    await dockerPull(t, target, d, ref);
    assert.equal(await d.imageId(ref), desc.configDigest, `${ref} image ID`);
    const repo = path.slice(0, path.lastIndexOf(':'));
    assert.deepEqual(await d.repoDigests(ref), [`${host}/${repo}@${desc.digest}`], `${ref} repo digest`);
  }

  // Both platforms of the manifest list and of the OCI index, each a real pull (removed in between).
  for (const name of ['multi', 'ociindex'] as const) {
    const desc = image(name);
    const ref = `${host}/${name}:1`;
    for (const arch of ARCHES) {
      await dockerPull(t, target, d, ref, `linux/${arch}`);
      assert.equal(await d.imageId(ref), child(desc, arch).configDigest, `${ref} linux/${arch} image ID`);
      assert.deepEqual(await d.repoDigests(ref), [`${host}/${name}@${desc.digest}`]);
      assert.equal((await d.removeImage(ref)).code, 0);
      await assert.rejects(d.imageId(ref));
    }
  }

  // The 200 MB image; dropped again at once (the image store is vfs).
  const big = image('big');
  const bigRef = `${host}/big:1`;
  await dockerPull(t, target, d, bigRef);
  assert.equal(await d.imageId(bigRef), big.configDigest);
  assert.deepEqual(await d.repoDigests(bigRef), [`${host}/big@${big.digest}`]);
  assert.equal((await d.removeImage(bigRef)).code, 0);
}

/**
 * ctr: each of `names` as `docker.io/<repo>:<tag>` through a docker.io hosts.toml naming the
 * mirror, its digest checked and its tag's manifest request seen by the mirror.
 */
export async function ctrPulls(
  t: TestContext,
  target: PullTarget,
  c: Containerd,
  hostsDir: string,
  names: readonly ImageName[],
): Promise<void> {
  for (const name of names) {
    const desc = target.images[name];
    const ref = `docker.io/${desc.repo}:${desc.tag}`;
    const since = target.watch();
    const r = await timed(t, `ctr images pull ${ref}`, () => c.pull(ref, { hostsDir }));
    assert.equal(
      r.code,
      0,
      `ctr pull ${ref}: ${r.stdout}\n${r.stderr}\nthe mirror saw:\n${describeAll(since())}`,
    );
    assert.equal(await c.imageDigest(ref), desc.digest, `${ref} digest`);
    const seen = since();
    assert.ok(
      seen.some((l) => l.path === `/v2/${desc.repo}/manifests/${desc.tag}`),
      `the mirror saw:\n${describeAll(seen)}`,
    );
  }
}
