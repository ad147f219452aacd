/**
 * The "many registries behind one Docxy" test world: three local upstreams on 127.0.0.1, each
 * seeded with a distinct small image.
 *
 *   docker.io stand-in -- the fake hub (token auth, CDN redirect): library/hubimg:1
 *   ghcr.io stand-in   -- a Distribution registry with htpasswd (Basic) auth: owner/ghcrimg:1
 *   quay.io stand-in   -- an anonymous Distribution registry: org/quayimg:1
 *
 * `upstreamsConfig()` is the `upstreams:` list of a Docxy in front of all three. The ghcr upstream
 * carries Docxy's own credentials (the htpasswd user) and is also reached by host name: Docxy
 * listens on 127.0.0.1, so `localhost:PORT/owner/ghcrimg:1` routes by host to ghcr.io while
 * `127.0.0.1:PORT/…` falls to the default (docker.io).
 */
import { randomBytes } from 'node:crypto';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { buildImage, pushImage, type ImageDescriptor } from './images.ts';
import { startPlainRegistry, type PlainRegistry, type PlainRegistryUser } from './plain-registry.ts';

export type UpstreamInput = NonNullable<ConfigInput['upstreams']>[number];

export interface RegistryWorld {
  readonly hub: FakeHub;
  readonly ghcr: PlainRegistry;
  readonly quay: PlainRegistry;
  /** The ghcr stand-in's only user: Docxy's configured credentials, and what clients log in with. */
  readonly ghcrUser: PlainRegistryUser;
  readonly images: {
    readonly hub: ImageDescriptor;
    readonly ghcr: ImageDescriptor;
    readonly quay: ImageDescriptor;
  };
  /** The `upstreams:` list for a Docxy in front of the three; `quay` entries override quay.io's. */
  upstreamsConfig(quay?: Partial<UpstreamInput>): UpstreamInput[];
  /**
   * How many requests each piece has received so far (registries from their access logs, the
   * hub's token server and CDN from their records). Compare two snapshots to prove nothing new
   * reached any upstream.
   */
  requestCounts(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Host names (no port) that route to the ghcr stand-in. */
export const GHCR_HOSTS = ['localhost'];

export async function startRegistryWorld(): Promise<RegistryWorld> {
  let hub: FakeHub | undefined;
  let ghcr: PlainRegistry | undefined;
  let quay: PlainRegistry | undefined;
  // A password no log line could contain by chance.
  const ghcrUser = { username: 'ghcr-bot', password: `ghcr-pw-${randomBytes(12).toString('hex')}` };
  const stop = async (): Promise<void> => {
    const results = await Promise.allSettled([hub?.stop(), ghcr?.stop(), quay?.stop()]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  };
  try {
    [hub, ghcr, quay] = await Promise.all([
      startFakeHub(),
      startPlainRegistry({ users: [ghcrUser], name: 'ghcr-stand-in' }),
      startPlainRegistry({ name: 'quay-stand-in' }),
    ]);
    const [hubImg, ghcrImg, quayImg] = await Promise.all([
      buildImage({ repo: 'library/hubimg', tag: '1' }),
      buildImage({ repo: 'owner/ghcrimg', tag: '1' }),
      buildImage({ repo: 'org/quayimg', tag: '1' }),
    ]);
    const images = {
      hub: await pushImage(hub, hubImg),
      ghcr: await ghcr.push(ghcrImg),
      quay: await quay.push(quayImg),
    };
    const h = hub;
    const g = ghcr;
    const q = quay;
    return {
      hub: h,
      ghcr: g,
      quay: q,
      ghcrUser,
      images,
      upstreamsConfig: (quayOverrides = {}) => [
        { name: 'docker.io', url: h.registryUrl },
        { name: 'ghcr.io', url: g.registryUrl, hosts: GHCR_HOSTS, credentials: { ...ghcrUser } },
        { name: 'quay.io', url: q.registryUrl, ...quayOverrides },
      ],
      async requestCounts() {
        const [hubReqs, ghcrReqs, quayReqs] = await Promise.all([
          h.registryRequests(),
          g.registryRequests(),
          q.registryRequests(),
        ]);
        return {
          'docker.io registry': hubReqs.length,
          'docker.io token server': h.token.requests.length,
          'docker.io CDN': h.cdn?.requests.length ?? 0,
          'ghcr.io registry': ghcrReqs.length,
          'quay.io registry': quayReqs.length,
        };
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
