/**
 * Real clients through a fleet (issue 12): `docker pull` and `ctr images pull` of every seeded
 * image through the round-robin nginx in front of three replicas (one RADOS Gateway bucket, one
 * Redis), then again with the upstream gone — registry AND token service down — served from the
 * bucket by whichever replica nginx picks.
 *
 *   warm-up        -- one dockerd (`registry-mirrors` = nginx, plus direct `127.0.0.1:PORT/…`
 *                     pulls, both platforms of each multi-arch image, the 200 MB image) and one
 *                     containerd (`hosts.toml` naming nginx) pull everything; every replica must
 *                     have answered some of it.
 *   upstream down  -- `hub.stopRegistry()` and `hub.token.stop()`, then a FRESH dockerd and a
 *                     FRESH containerd (new roots, nothing local) pull everything again and get
 *                     the same IDs and digests. Each replica's realm is nginx's URL, so a client's
 *                     token may come from another replica than its pulls: stand-in tokens are
 *                     not checked on manifests and blobs, so that works. Every request is `hit` or
 *                     `stale`, at least two replicas answered, and the upstream saw nothing.
 *
 * The fleet is started once for the file; clients and fleet are stopped in `after` hooks, pass or fail.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { need } from '../helpers/client-steps.ts';
import { ctrPulls, dockerdPullsEverything, type PullTarget } from '../helpers/client-pulls.ts';
import { startContainerd, writeHostsToml, type Containerd } from '../helpers/clients/containerd.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { describeRequest } from '../helpers/docxy.ts';
import { startFleet, type Fleet } from '../helpers/fleet.ts';
import { ALL_IMAGES, seedImages, type ImageDescriptor, type ImageName } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';
import { stopUpstream, type UpstreamOutage } from '../helpers/upstream-outage.ts';
import { paths } from '../../src/storage/paths.ts';

const SECRET = 'fleet-clients-secret-0123456789ab';

let fleet: Fleet | undefined;
let images: Record<ImageName, ImageDescriptor> | undefined;

const theFleet = (): Fleet => need(fleet, 'the fleet');

/** A request log line of one replica, with the replica's name. */
interface Served {
  readonly replica: string;
  readonly line: Record<string, unknown>;
}

const requestLines = (f: Fleet, i: number): Record<string, unknown>[] =>
  need(f.replicas[i], `replica ${String(i)}`)
    .proc.logs()
    .filter((l) => l.msg === 'request');

/** Where each replica's request log stands now. */
const mark = (): number[] => theFleet().replicas.map((_, i) => requestLines(theFleet(), i).length);

/** Every replica's request log lines since `m`. */
function servedSince(m: readonly number[]): Served[] {
  const f = theFleet();
  return f.replicas.flatMap((r, i) =>
    requestLines(f, i)
      .slice(m[i] ?? 0)
      .map((line) => ({ replica: r.name, line })),
  );
}

const describeServed = (s: readonly Served[]): string =>
  s.map(({ replica, line }) => `${replica}: ${describeRequest(line)}`).join('\n');

/** The fleet as the clients see it: nginx's address, and every replica's log. */
function target(): PullTarget {
  return {
    hostPort: theFleet().nginx.hostPort,
    images: need(images, 'the seeded images'),
    watch() {
      const m = mark();
      return () => servedSince(m).map((s) => s.line);
    },
  };
}

before(async () => {
  fleet = await startFleet({
    names: ['a', 'b', 'c'],
    secret: SECRET,
    seed: async (hub) => {
      images = await seedImages(hub, ALL_IMAGES);
    },
  });
});

after(async () => {
  await fleet?.stop();
});

/** One dockerd and one containerd, both pointed at nginx; what started is in `into` even on failure. */
interface Clients {
  dockerd?: Dockerd;
  containerd?: Containerd;
  hostsDir?: string;
}

async function startClients(into: Clients): Promise<void> {
  const n = theFleet().nginx;
  const results = await Promise.allSettled([
    startDockerd({ mirrors: [n.url], insecureRegistries: [n.hostPort] }).then((x) => {
      into.dockerd = x;
    }),
    startContainerd().then((x) => {
      into.containerd = x;
      into.hostsDir = join(x.dir, 'hosts');
      writeHostsToml(into.hostsDir, 'docker.io', n.url);
    }),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

async function stopClients(c: Clients): Promise<void> {
  const results = await Promise.allSettled([c.dockerd?.stop(), c.containerd?.stop()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Every manifest and blob digest of the seeded images: what the bucket must hold before the outage. */
function bucketKeys(): string[] {
  return Object.values(need(images, 'the seeded images')).flatMap((d) => [
    paths.manifest(d.digest),
    ...[d, ...(d.children ?? [])].flatMap((c) => [
      ...(c === d ? [] : [paths.manifest(c.digest)]),
      paths.blob(c.configDigest),
      ...c.layers.map((l) => paths.blob(l.digest)),
    ]),
  ]);
}

describe('warm-up: dockerd and ctr pull every image through nginx in front of three replicas', () => {
  const warm: Clients = {};
  let warmMark: number[] = [];

  before(async () => {
    warmMark = mark();
    await startClients(warm);
  });

  after(async () => {
    await stopClients(warm);
  });

  it('reports the fleet set-up', (t) => {
    for (const line of theFleet().timings) t.diagnostic(line);
  });

  it('dockerd pulls tiny:1 via registry-mirrors and every image (both platforms, big) directly', async (t) => {
    await dockerdPullsEverything(t, target(), need(warm.dockerd, 'dockerd'));
  });

  it('ctr pulls every image through a hosts.toml mirror', async (t) => {
    const c = need(warm.containerd, 'containerd');
    await ctrPulls(t, target(), c, need(warm.hostsDir, 'the hosts dir'), ALL_IMAGES);
  });

  it('every replica answered some of the pulls, and the bucket holds every manifest and blob', async (t) => {
    const served = servedSince(warmMark);
    for (const r of theFleet().replicas) {
      const n = served.filter((s) => s.replica === r.name).length;
      t.diagnostic(`replica ${r.name} answered ${String(n)} requests`);
      assert.ok(n > 0, `replica ${r.name} answered nothing:\n${describeServed(served)}`);
    }
    for (const k of bucketKeys()) await waitFor(`${k} in the bucket`, () => theFleet().inBucket(k), 30_000);
  });
});

describe('upstream down (registry and token service stopped): fresh clients pull everything again', () => {
  const fresh: Clients = {};
  let downMark: number[] = [];
  let outage: UpstreamOutage | undefined;

  before(async () => {
    outage = await stopUpstream(theFleet().hub);
    downMark = mark();
    await startClients(fresh);
  });

  after(async () => {
    await stopClients(fresh);
  });

  it('a fresh dockerd pulls tiny:1 via registry-mirrors and every image (both platforms, big) directly', async (t) => {
    await dockerdPullsEverything(t, target(), need(fresh.dockerd, 'dockerd'));
  });

  it('a fresh containerd pulls every image through a hosts.toml mirror', async (t) => {
    const c = need(fresh.containerd, 'containerd');
    await ctrPulls(t, target(), c, need(fresh.hostsDir, 'the hosts dir'), ALL_IMAGES);
  });

  it('every request was a hit or stale, at least two replicas answered, and the upstream saw nothing', (t) => {
    const served = servedSince(downMark);
    assert.ok(served.length > 0, 'the clients talked to the fleet');
    const all = describeServed(served);
    const other = served.filter(({ line }) => line.cache !== 'hit' && line.cache !== 'stale');
    assert.deepEqual(describeServed(other), '', `requests not answered as hit or stale:\n${all}`);
    const failed = served.filter(({ line }) => typeof line.status !== 'number' || line.status >= 500);
    assert.deepEqual(describeServed(failed), '', `requests that failed:\n${all}`);
    const tokens = served.filter(({ line }) => line.path === '/auth/token');
    assert.ok(tokens.length > 0, `the clients fetched tokens:\n${all}`);
    for (const { line } of tokens) assert.equal(line.status, 200, describeRequest(line));
    const content = served.filter(({ line }) => /\/(manifests|blobs)\//.test(String(line.path)));
    assert.deepEqual(
      describeServed(content.filter(({ line }) => line.status !== 200)),
      '',
      'every manifest and blob request was a 200',
    );

    // A client's token may come from another replica than the requests that carry it.
    const base = served.filter(({ line }) => line.path === '/v2/');
    t.diagnostic(
      `${String(tokens.length)} stand-in tokens (from ${[...new Set(tokens.map((s) => s.replica))].join(', ')}), ` +
        `${String(base.length)} /v2/ answers (${[...new Set(base.map((s) => `${s.replica}:${String(s.line.status)}`))].join(', ')})`,
    );
    const answered = new Map<string, number>();
    for (const { replica } of served) answered.set(replica, (answered.get(replica) ?? 0) + 1);
    t.diagnostic(
      `with the upstream down: ${[...answered].map(([r, n]) => `${r}=${String(n)}`).join(' ')} requests`,
    );
    assert.ok(answered.size >= 2, `at least two replicas answered:\n${all}`);

    need(outage, 'the outage').assertUntouched();
  });
});
