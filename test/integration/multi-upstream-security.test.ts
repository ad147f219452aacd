/**
 * Many registries behind one Docxy: what must not happen, and the per-upstream plumbing, checked
 * over plain HTTP (and with skopeo where a real client's behaviour is the point). The world is the one of multi-upstream-clients.test.ts
 * (test/helpers/multi-upstream.ts): a token-auth hub for docker.io, a Basic-auth registry for
 * ghcr.io (Docxy holds its credentials, `hosts: [localhost]`), an anonymous one for quay.io.
 *
 *   - routing: an `ns` or host-like path prefix that names no configured upstream is 404
 *     NAME_UNKNOWN, and no connection reaches anything new (a canary listener, the three
 *     upstreams' logs, the hub's token server and CDN);
 *   - per-upstream realms: `/v2/` challenges as the routed upstream does (Basic for ghcr.io,
 *     Docxy's own Bearer realm for docker.io, none for quay.io), realms built from the public URL
 *     whatever the Host header says;
 *   - credentials: after pulls through ghcr.io (Docxy's own and a client's forwarded Basic), no log
 *     line holds the password or its Basic form;
 *   - a client's token never crosses upstreams: skopeo, inspecting `127.0.0.1:PORT/quay.io/…`, gets
 *     its token from the default (docker.io) realm and sends it on every request, tags/list
 *     included; quay.io must never receive it;
 *   - realm trust: a token-auth upstream whose realm is on another host (`localhost:P` while the
 *     registry is `127.0.0.1:R`) never receives Docxy's credentials on cache fills nor a client's
 *     through `/auth/token/<name>` (a Basic header, or the OAuth2 POST form with a password or
 *     refresh token); with the realm host in `auth_hosts` it does (control);
 *   - egress proxies: `proxy: http://…` and `proxy: socks5://…` on the quay.io upstream carry its
 *     traffic and only its traffic;
 *   - mirrors failover: primary down -> the mirror serves; both down -> 502 JSON for an image
 *     never cached, the cached image still served.
 *
 * Every server and Docxy started here is stopped in `after` hooks, pass or fail.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';

import type { ConfigInput } from '../../src/config/schema.ts';
import { need } from '../helpers/client-steps.ts';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startHttpProxy, startSocks5Proxy, type EgressProxy } from '../helpers/egress-proxies.ts';
import { httpGet, type TestResponse } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  basicAuthorization,
  buildImage,
  pushImage,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { startRegistryWorld, type RegistryWorld } from '../helpers/multi-upstream.ts';
import { startPlainRegistry, type PlainRegistry } from '../helpers/plain-registry.ts';
import { freePort } from '../helpers/process.ts';
import { startTokenServer, type TokenServer } from '../helpers/token-server.ts';

// ---------------------------------------------------------------------------------------------
// Shared fixture: the three upstreams and one Docxy in front of them

let world: RegistryWorld | undefined;
let docxy: TestDocxy | undefined;

const theWorld = (): RegistryWorld => need(world, 'the registry world');
const theDocxy = (): TestDocxy => need(docxy, 'docxy');

/** Every Docxy a test starts, stopped by the file's `after` hook if the test's own did not. */
const extraDocxies = new Set<TestDocxy>();
async function startExtraDocxy(config: ConfigInput): Promise<TestDocxy> {
  const d = await startDocxy(config);
  extraDocxies.add(d);
  return d;
}
async function stopExtraDocxy(d: TestDocxy | undefined): Promise<void> {
  if (d === undefined || !extraDocxies.delete(d)) return;
  await d.stop();
}

before(async () => {
  world = await startRegistryWorld();
  docxy = await startDocxy({ upstreams: world.upstreamsConfig() });
});

after(async () => {
  const results = await Promise.allSettled([
    ...[...extraDocxies].map((d) => d.stop()),
    docxy?.stop(),
    world?.stop(),
  ]);
  extraDocxies.clear();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------
// Helpers

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface PulledImage {
  digest: string;
  configDigest: string;
}

/** The first error code of an OCI error body. */
function errorCode(res: TestResponse): string | undefined {
  const body = res.json() as { errors?: { code?: string }[] };
  return body.errors?.[0]?.code;
}

/**
 * A pull over plain HTTP, the way a client does it without auth: the tag's manifest, then config
 * and layers, each body checked against its digest. `repoPath` is the name as Docxy sees it (with
 * a routing prefix, if any).
 */
async function httpPull(
  base: string,
  repoPath: string,
  tag: string,
  headers: Record<string, string> = {},
): Promise<PulledImage> {
  const m = await httpGet(`${base}/v2/${repoPath}/manifests/${tag}`, {
    headers: { accept: ACCEPT_ALL_MANIFESTS, ...headers },
  });
  assert.equal(m.status, 200, `GET ${repoPath}:${tag}: ${m.status} ${m.body.toString()}`);
  const digest = sha256(m.body);
  assert.equal(m.header('docker-content-digest'), digest, 'the manifest is the bytes its digest names');
  const manifest = m.json() as { config: { digest: string }; layers: { digest: string }[] };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
    const b = await httpGet(`${base}/v2/${repoPath}/blobs/${d}`, { headers });
    assert.equal(
      b.status,
      200,
      `GET blob ${d} of ${repoPath}: ${b.status} ${b.body.toString().slice(0, 200)}`,
    );
    assert.equal(sha256(b.body), d, `blob ${d} has its content`);
  }
  return { digest, configDigest: manifest.config.digest };
}

function assertSameImage(got: PulledImage, want: ImageDescriptor): void {
  assert.deepEqual(got, { digest: want.digest, configDigest: want.configDigest });
}

/** A TCP listener that only counts connections: the host a hostile `ns` would like Docxy to dial. */
async function startCanary(): Promise<{
  port: number;
  connections: () => number;
  stop: () => Promise<void>;
}> {
  let n = 0;
  const server: Server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => n,
    stop: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** One request a recording front received. */
interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

/**
 * A reverse proxy in front of a server (a registry, a token service) that records each request's
 * method, URL, `Authorization` header and body: what the server receives from Docxy, headers and
 * form bodies included (the registries' access logs have neither).
 */
async function startRecordingFront(
  target: string,
): Promise<{ url: string; port: number; seen: Seen[]; stop: () => Promise<void> }> {
  const seen: Seen[] = [];
  const to = new URL(target);
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization,
        body: body.toString('utf8'),
      });
      const out = httpRequest(
        { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      out.once('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      out.end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Routing: names that no upstream is configured for

describe('names no upstream is configured for', () => {
  it('unconfigured ns and host-like prefixes get 404 NAME_UNKNOWN and dial nothing', async (t) => {
    const canary = await startCanary();
    try {
      const d = theDocxy();
      const before = await theWorld().requestCounts();
      const blob = `sha256:${'a'.repeat(64)}`;
      const canaryHost = `127.0.0.1:${canary.port}`;
      const refused: [string, 'GET' | 'HEAD'][] = [
        ['/v2/x/manifests/1?ns=evil.example', 'GET'],
        ['/v2/x/manifests/1?ns=evil.example', 'HEAD'],
        [`/v2/x/blobs/${blob}?ns=evil.example`, 'GET'],
        ['/v2/x/tags/list?ns=evil.example', 'GET'],
        ['/v2/?ns=evil.example', 'GET'],
        // ns naming the canary itself, by address and by name.
        [`/v2/x/manifests/1?ns=${canaryHost}`, 'GET'],
        [`/v2/x/manifests/1?ns=localhost:${canary.port}`, 'GET'],
        ['/v2/evil.example/x/manifests/1', 'GET'],
        ['/v2/evil.example/x/manifests/1', 'HEAD'],
        [`/v2/evil.example/x/blobs/${blob}`, 'GET'],
        ['/v2/evil.example/x/tags/list', 'GET'],
        ['/v2/localhost/x/manifests/1', 'GET'],
      ];
      for (const [path, method] of refused) {
        const res = await httpGet(`${d.url}${path}`, { method });
        assert.equal(res.status, 404, `${method} ${path}: ${res.status} ${res.body.toString()}`);
        if (method === 'GET') assert.equal(errorCode(res), 'NAME_UNKNOWN', `${method} ${path}`);
      }
      // Docxy's token endpoint for an unconfigured registry.
      const tok = await httpGet(`${d.url}/auth/token/evil.example?scope=repository:x:pull`);
      assert.equal(tok.status, 404);
      assert.equal(errorCode(tok), 'NAME_UNKNOWN');
      // A prefix with the canary's port is no valid repository name at all.
      const invalid = await httpGet(`${d.url}/v2/localhost:${canary.port}/x/manifests/1`);
      assert.equal(invalid.status, 400);
      assert.equal(errorCode(invalid), 'NAME_INVALID');

      assert.equal(canary.connections(), 0, 'no connection reached the canary');
      assert.deepEqual(await theWorld().requestCounts(), before, 'no upstream saw a new request');
      t.diagnostic(
        `${refused.length + 2} requests refused; upstream counts unchanged: ${JSON.stringify(before)}`,
      );
    } finally {
      await canary.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Per-upstream realms

describe("docxy's per-upstream challenges", () => {
  it('/v2/ on the ghcr host or with ?ns=ghcr.io: anonymous welcome (Docxy holds the Basic credentials), credentials checked upstream', async () => {
    const d = theDocxy();
    const user = theWorld().ghcrUser;
    for (const [what, path, host] of [
      ['Host: localhost', '/v2/', `localhost:${d.port}`],
      ['?ns=ghcr.io', '/v2/?ns=ghcr.io', undefined],
    ] as const) {
      const hostHeader: Record<string, string> = host === undefined ? {} : { host };
      // Docxy pulls with its own ghcr account, so an anonymous client must not be asked to log in.
      const anon = await httpGet(`${d.url}${path}`, { headers: hostHeader });
      assert.equal(anon.status, 200, what);
      assert.equal(anon.header('www-authenticate'), undefined, what);
      // A client that brings credentials still has them checked by the registry itself.
      const wrong = `Basic ${Buffer.from(`${user.username}:wrong`).toString('base64')}`;
      const bad = await httpGet(`${d.url}${path}`, { headers: { ...hostHeader, authorization: wrong } });
      assert.equal(bad.status, 401, `${what}: a wrong password reaches ghcr and is refused`);
    }
  });

  it('the default upstream challenges with Bearer at <public>/auth/token, whatever the Host', async () => {
    const d = theDocxy();
    const hub = theWorld().hub;
    for (const host of [undefined, `evil.example:${d.port}`, 'evil.example']) {
      const res = await httpGet(`${d.url}/v2/`, { headers: host === undefined ? {} : { host } });
      assert.equal(res.status, 401, `Host ${String(host)}`);
      assert.equal(
        res.header('www-authenticate'),
        `Bearer realm="${d.publicUrl}/auth/token",service="${hub.service}"`,
        `Host ${String(host)}: the realm comes from the public URL`,
      );
    }
  });

  it('quay.io (anonymous) answers /v2/ without a challenge', async () => {
    const res = await httpGet(`${theDocxy().url}/v2/?ns=quay.io`);
    assert.equal(res.status, 200);
    assert.equal(res.header('www-authenticate'), undefined);
  });

  it("ghcr.io accepts the client's own Basic credentials on /v2/ (forwarded), and refuses wrong ones", async () => {
    const d = theDocxy();
    const user = theWorld().ghcrUser;
    const host = `localhost:${d.port}`;
    const ok = await httpGet(`${d.url}/v2/`, { headers: { host, authorization: basicAuthorization(user) } });
    assert.equal(ok.status, 200);
    const wrong = basicAuthorization({ username: user.username, password: 'not-the-password' });
    const bad = await httpGet(`${d.url}/v2/`, { headers: { host, authorization: wrong } });
    assert.equal(bad.status, 401);
  });
});

// ---------------------------------------------------------------------------------------------
// No upstream credential in the log

describe('upstream credentials and the log', () => {
  it('after pulls through ghcr.io, no docxy log line holds its password or Basic form', async (t) => {
    const d = theDocxy();
    const w = theWorld();
    const basic = basicAuthorization(w.ghcrUser);
    // Docxy's own credentials (cache fills), by host and by prefix; then a client's Basic header,
    // forwarded on /v2/ and sent along with a pull.
    const host = `localhost:${d.port}`;
    assert.equal((await httpGet(`${d.url}/v2/`, { headers: { host, authorization: basic } })).status, 200);
    assertSameImage(await httpPull(d.url, 'owner/ghcrimg', '1', { host }), w.images.ghcr);
    assertSameImage(await httpPull(d.url, 'ghcr.io/owner/ghcrimg', '1'), w.images.ghcr);
    assertSameImage(
      await httpPull(d.url, 'owner/ghcrimg', '1', { host, authorization: basic }),
      w.images.ghcr,
    );
    const ghcrSaw = (await w.ghcr.registryRequests()).filter((r) => r.uri.includes('/owner/ghcrimg/'));
    assert.ok(ghcrSaw.length > 0, 'the ghcr stand-in served the image');
    const log = d.logText();
    assert.ok(!log.includes(w.ghcrUser.password), 'the password is in no log line');
    assert.ok(!log.includes(basic.slice('Basic '.length)), 'the base64 credentials are in no log line');
    t.diagnostic(`${d.logs().length} log lines checked`);
  });
});

// ---------------------------------------------------------------------------------------------
// A client's token for one upstream never reaches another

describe("a client's token from the default realm and a path-prefixed upstream", () => {
  let skopeo: Skopeo | undefined;
  let front: Awaited<ReturnType<typeof startRecordingFront>> | undefined;
  let d: TestDocxy | undefined;

  before(async () => {
    const w = theWorld();
    front = await startRecordingFront(w.quay.registryUrl);
    d = await startExtraDocxy({ upstreams: w.upstreamsConfig({ url: front.url }) });
    skopeo = await startSkopeo();
  });

  after(async () => {
    await Promise.allSettled([skopeo?.stop(), stopExtraDocxy(d), front?.stop()]);
  });

  it('skopeo inspect 127.0.0.1:PORT/quay.io/org/quayimg:1 sends no docker.io token to quay.io', async (t) => {
    const w = theWorld();
    const docxyQuay = need(d, 'the docxy in front of the recording front');
    const f = need(front, 'the recording front');
    const tokensBefore = w.hub.token.requests.length;
    // skopeo pings /v2/ (the default upstream: docker.io's challenge, realm <public>/auth/token),
    // fetches a token there for repository:quay.io/org/quayimg:pull, and sends it on every request,
    // including tags/list, which Docxy relays to quay.io.
    const out = await need(skopeo, 'skopeo').inspect(`docker://${docxyQuay.hostPort}/quay.io/org/quayimg:1`);
    assert.equal(out.Digest, w.images.quay.digest);
    const issued = w.hub.token.requests
      .slice(tokensBefore)
      .map((r) => r.token)
      .filter((x): x is string => x !== undefined);
    // The token for repository:quay.io/org/quayimg must not come from docker.io's token service.
    assert.ok(
      w.hub.token.requests
        .slice(tokensBefore)
        .every((r) => r.query.scope.every((sc) => !sc.includes('quay'))),
      'docker.io was asked for a quay.io scope',
    );
    const leaked = f.seen.filter((r) => issued.some((tok) => r.authorization === `Bearer ${tok}`));
    t.diagnostic(
      `quay.io saw: ${f.seen.map((r) => `${r.method} ${r.url}${r.authorization === undefined ? '' : ' (Authorization)'}`).join(', ')}`,
    );
    assert.deepEqual(
      leaked.map((r) => `${r.method} ${r.url}`),
      [],
      'no request to quay.io carried a token issued by the docker.io token service',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Realm trust: a token service outside the registry's domain

describe('a token realm outside the upstream registry domain', () => {
  const service = 'realm-test.example';
  const docxyUser = { username: 'docxy-bot', password: `docxy-pw-${Date.now()}` };
  const clientUser = { username: 'client', password: `client-pw-${Date.now()}` };
  const pushUser = { username: 'pusher', password: 'push-secret' };
  let token: TokenServer | undefined;
  /** The realm as the registry names it: a recording front of the token server, on localhost. */
  let realm: Awaited<ReturnType<typeof startRecordingFront>> | undefined;
  let registry: PlainRegistry | undefined;
  let img: ImageDescriptor | undefined;
  /** The upstream's name in Docxy's config (prefix and /auth/token/<name>). */
  const name = 'registry.example';

  before(async () => {
    token = await startTokenServer({
      issuer: 'realm-test-issuer',
      service,
      users: {
        [pushUser.username]: pushUser.password,
        [docxyUser.username]: docxyUser.password,
        [clientUser.username]: clientUser.password,
      },
    });
    realm = await startRecordingFront(`http://127.0.0.1:${token.port}`);
    // The registry is 127.0.0.1:R; its challenge names the token service as localhost:P.
    registry = await startPlainRegistry({
      name: 'realm-test',
      token: {
        realm: `http://localhost:${realm.port}/token`,
        service,
        issuer: 'realm-test-issuer',
        rootCertBundle: token.certPemPath,
      },
    });
    img = await pushImage(
      { registryUrl: registry.registryUrl, realm: token.url, service, pushUser },
      await buildImage({ repo: 'team/private', tag: '1' }),
    );
  });

  after(async () => {
    await Promise.allSettled([registry?.stop(), realm?.stop(), token?.stop()]);
  });

  function docxyConfig(authHosts: string[]): ConfigInput {
    return {
      upstreams: [
        { name: 'docker.io', url: theWorld().hub.registryUrl },
        {
          name,
          url: need(registry, 'the realm-test registry').registryUrl,
          credentials: { ...docxyUser },
          auth_hosts: authHosts,
        },
      ],
    };
  }

  const theRealm = (): Awaited<ReturnType<typeof startRecordingFront>> => need(realm, 'the realm');
  /** What the realm received from `mark` on. */
  const realmSince = (mark: number): Seen[] => theRealm().seen.slice(mark);

  /**
   * POSTs Docker's OAuth2 token form to Docxy's realm for this upstream, as containerd does when it
   * has credentials (`grant_type=password` with the password in the body) and docker does with a
   * stored identity token (`grant_type=refresh_token`).
   */
  const refreshToken = `refresh-${Date.now()}`;
  const clientOAuth = async (d: TestDocxy): Promise<void> => {
    const grants: Record<string, string>[] = [
      { grant_type: 'password', username: clientUser.username, password: clientUser.password },
      { grant_type: 'refresh_token', refresh_token: refreshToken },
    ];
    for (const grant of grants) {
      const form = new URLSearchParams({
        ...grant,
        service,
        scope: 'repository:team/private:pull',
        client_id: 'containerd-client',
      });
      await httpGet(`${d.url}/auth/token/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
    }
  };

  /** Asks Docxy's realm for this upstream for a pull token, as a logged-in client would. */
  const clientToken = (d: TestDocxy): Promise<TestResponse> => {
    const url = new URL(`${d.url}/auth/token/${name}`);
    url.searchParams.set('service', service);
    url.searchParams.set('scope', 'repository:team/private:pull');
    return httpGet(url.href, { headers: { authorization: basicAuthorization(clientUser) } });
  };

  it('docxy points clients at its own realm for the upstream', async () => {
    const d = await startExtraDocxy(docxyConfig([]));
    try {
      const res = await httpGet(`${d.url}/v2/?ns=${name}`);
      assert.equal(res.status, 401);
      assert.equal(
        res.header('www-authenticate'),
        `Bearer realm="${d.publicUrl}/auth/token/${name}",service="${service}"`,
      );
    } finally {
      await stopExtraDocxy(d);
    }
  });

  it("cache fills never send docxy's credentials there; nor does /auth/token/<name> forward a client's", async (t) => {
    const d = await startExtraDocxy(docxyConfig([]));
    try {
      let mark = theRealm().seen.length;
      assertSameImage(await httpPull(d.url, `${name}/team/private`, '1'), need(img, 'the image'));
      const fills = realmSince(mark);
      assert.ok(fills.length > 0, 'docxy fetched tokens from the realm for its cache fills');
      assert.deepEqual(
        fills.filter((r) => r.authorization !== undefined).map((r) => r.url),
        [],
        'the realm received no Authorization on cache fills',
      );

      mark = theRealm().seen.length;
      const res = await clientToken(d);
      assert.equal(res.status, 200, `an anonymous token came back: ${res.body.toString()}`);
      const forwarded = realmSince(mark);
      assert.equal(forwarded.length, 1, 'the client token request reached the realm once');
      assert.equal(
        forwarded[0]?.authorization,
        undefined,
        "the client's Basic credentials were not forwarded",
      );
      t.diagnostic(`${fills.length} + ${forwarded.length} realm requests, none with Authorization`);
    } finally {
      await stopExtraDocxy(d);
    }
  });

  it('the OAuth2 form a client POSTs to /auth/token/<name> brings it no password or refresh token', async () => {
    const d = await startExtraDocxy(docxyConfig([]));
    try {
      const mark = theRealm().seen.length;
      await clientOAuth(d);
      const got = realmSince(mark);
      const leaks = got
        .filter(
          (r) =>
            r.authorization !== undefined ||
            r.body.includes(encodeURIComponent(clientUser.password)) ||
            r.body.includes(refreshToken),
        )
        .map((r) => `${r.method} ${r.url} ${r.body}`);
      assert.deepEqual(leaks, [], 'no client secret reached the untrusted realm');
    } finally {
      await stopExtraDocxy(d);
    }
  });

  it('control: with the realm host in auth_hosts, the credentials do reach it', async () => {
    const d = await startExtraDocxy(docxyConfig(['localhost']));
    try {
      let mark = theRealm().seen.length;
      assertSameImage(await httpPull(d.url, `${name}/team/private`, '1'), need(img, 'the image'));
      const fills = realmSince(mark);
      assert.ok(fills.length > 0);
      assert.ok(
        fills.every((r) => r.authorization === basicAuthorization(docxyUser)),
        `every fill token request carried docxy's credentials: ${JSON.stringify(fills)}`,
      );
      mark = theRealm().seen.length;
      const res = await clientToken(d);
      assert.equal(res.status, 200);
      assert.deepEqual(
        realmSince(mark).map((r) => r.authorization),
        [basicAuthorization(clientUser)],
      );
      mark = theRealm().seen.length;
      await clientOAuth(d);
      const posted = realmSince(mark);
      assert.ok(
        posted.some((r) => r.method === 'POST' && r.body.includes(encodeURIComponent(clientUser.password))),
        `the recording front sees form bodies: ${JSON.stringify(posted)}`,
      );
    } finally {
      await stopExtraDocxy(d);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Egress proxies

describe('egress proxy on the quay.io upstream', () => {
  for (const kind of ['http', 'socks5'] as const) {
    it(`proxy: ${kind}:// carries the quay.io traffic, and only it`, async (t) => {
      const proxy: EgressProxy = kind === 'http' ? await startHttpProxy() : await startSocks5Proxy();
      let d: TestDocxy | undefined;
      try {
        const w = theWorld();
        d = await startExtraDocxy({ upstreams: w.upstreamsConfig({ proxy: proxy.url }) });
        const quayBefore = (await w.quay.registryRequests()).length;
        assertSameImage(await httpPull(d.url, 'quay.io/org/quayimg', '1'), w.images.quay);
        const quayAfter = (await w.quay.registryRequests()).length;
        assert.ok(quayAfter > quayBefore, 'the quay stand-in served the pull');
        assert.ok(proxy.hits.length > 0, 'the proxy carried connections');
        assert.deepEqual(
          [...new Set(proxy.hits.map((h) => `${h.kind} ${h.target}`))],
          [`CONNECT ${w.quay.hostPort}`],
          'every proxied connection went to the quay stand-in',
        );
        // Other upstreams stay direct.
        const hits = proxy.hits.length;
        assertSameImage(await httpPull(d.url, 'hubimg', '1'), w.images.hub);
        assertSameImage(await httpPull(d.url, 'ghcr.io/owner/ghcrimg', '1'), w.images.ghcr);
        assert.equal(proxy.hits.length, hits, 'docker.io and ghcr.io traffic did not use the proxy');
        t.diagnostic(`${proxy.hits.length} proxied connection(s), ${quayAfter - quayBefore} quay requests`);
      } finally {
        await stopExtraDocxy(d);
        await proxy.stop();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Mirrors failover

describe('mirrors failover on the quay.io upstream', () => {
  let mirror: PlainRegistry | undefined;
  let failover: TestDocxy | undefined;
  let cached: ImageDescriptor | undefined;
  let fresh: ImageDescriptor | undefined;
  const d = (): TestDocxy => need(failover, 'the failover docxy');

  before(async () => {
    mirror = await startPlainRegistry({ name: 'quay-mirror' });
    cached = await mirror.push(await buildImage({ repo: 'org/quayimg', tag: '1' }));
    fresh = await mirror.push(await buildImage({ repo: 'org/fresh', tag: '1' }));
    const deadPrimary = `http://127.0.0.1:${await freePort()}`;
    // tag_ttl 0: every tag request asks the upstream, so "still served" below is serve-stale.
    failover = await startExtraDocxy({
      upstreams: theWorld().upstreamsConfig({ url: deadPrimary, mirrors: [mirror.registryUrl], tag_ttl: 0 }),
    });
  });

  after(async () => {
    await Promise.allSettled([stopExtraDocxy(failover), mirror?.stop()]);
  });

  it('primary down: pulls come from the mirror', async () => {
    const m = need(mirror, 'the mirror');
    const before = (await m.registryRequests()).length;
    assertSameImage(await httpPull(d().url, 'quay.io/org/quayimg', '1'), need(cached, 'the image'));
    const saw = (await m.registryRequests()).slice(before).map((r) => `${r.method} ${r.uri}`);
    assert.ok(
      saw.some((r) => r.startsWith('GET /v2/org/quayimg/manifests/')),
      `the mirror served the manifest: ${saw.join(', ')}`,
    );
  });

  it('primary and mirror down: an image never cached is a 502 with a JSON error', async (t) => {
    const m = need(mirror, 'the mirror');
    // The image exists at the mirror: the 502 below is only about reaching it.
    const direct = await httpGet(`${m.registryUrl}/v2/org/fresh/manifests/1`, {
      headers: { accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(direct.header('docker-content-digest'), need(fresh, 'the fresh image').digest);
    await m.stopRegistry();
    const res = await httpGet(`${d().url}/v2/quay.io/org/fresh/manifests/1`, {
      headers: { accept: ACCEPT_ALL_MANIFESTS },
    });
    assert.equal(res.status, 502, res.body.toString());
    assert.match(res.header('content-type') ?? '', /^application\/json/);
    const first = (res.json() as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    assert.equal(first?.code, 'UNAVAILABLE', res.body.toString());
    assert.match(first.message ?? '', /unreachable/, res.body.toString());
    t.diagnostic(`docxy answered 502: ${res.body.toString()}`);
  });

  it('primary and mirror down: the cached image is still served', async () => {
    assert.equal(need(mirror, 'the mirror').running(), false, 'the mirror is stopped');
    const mark = d().requestLogs().length;
    assertSameImage(await httpPull(d().url, 'quay.io/org/quayimg', '1'), need(cached, 'the image'));
    const manifest = d()
      .requestLogs()
      .slice(mark)
      .find((l) => String(l.path) === '/v2/quay.io/org/quayimg/manifests/1');
    assert.equal(manifest?.cache, 'stale', 'the tag was answered stale from the cache');
  });
});
