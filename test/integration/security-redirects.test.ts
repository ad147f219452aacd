/**
 * Where Docxy points clients and where an upstream may point Docxy.
 *
 * Forged Host / X-Forwarded-Host / Forwarded headers never change a realm (the WWW-Authenticate of
 * `/v2/` and of a manifest 401, on the open mirror and with client authentication), and no response
 * carries a Location or Link naming the forged host (docxy CVE-2025-63761: realm built from Host).
 *
 * A hostile upstream (a tiny registry stand-in on 127.0.0.1, Docxy configured with
 * `limits.allow_private_redirects: false`) answers blob and manifest GETs with 307 to loopback,
 * link-local (cloud metadata), `0.0.0.0`, `localhost`, numeric and IPv4-mapped IPv6 spellings of
 * loopback: Docxy answers 502 JSON at once, saying it refused, and the canary listener there sees
 * no connection. A control with `allow_private_redirects: true` shows the canary would have seen
 * it. The same upstream naming a loopback token realm in its challenge must not make Docxy fetch
 * that realm either.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';

import type { ConfigInput } from '../../src/config/schema.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, type TestResponse } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, TINY, basicAuthorization, seedImages, sha256 } from '../helpers/images.ts';
import { assertOciError, bearerParams, need, startCanary, type Canary } from '../helpers/security.ts';
import { sendJson } from '../helpers/token-server.ts';

// ---------------------------------------------------------------------------------------------
// Forged Host headers

const FORGED: readonly Record<string, string>[] = [
  { host: 'evil.example' },
  { host: 'evil.example:443' },
  { 'x-forwarded-host': 'evil.example' },
  { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' },
  { forwarded: 'host=evil.example;proto=https' },
  { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-server': 'evil.example' },
  { 'x-original-host': 'evil.example', 'x-host': 'evil.example' },
];

/** No response header mentions the forged host. */
function assertNothingForged(res: TestResponse, what: string): void {
  for (const [k, v] of Object.entries(res.headers)) {
    const text = Array.isArray(v) ? v.join(', ') : String(v);
    assert.ok(!text.includes('evil'), `${what}: header ${k}: ${text}`);
  }
  assert.equal(res.header('location'), undefined, `${what}: no Location`);
}

describe('forged Host and X-Forwarded-Host never change a realm or a Location', () => {
  const user = { username: 'hostuser', password: 'host-user-pw' };
  const publicUrl = 'http://docxy.public.example:7000';
  let hub: FakeHub | undefined;
  let openPublic: TestDocxy | undefined;
  let openBound: TestDocxy | undefined;
  let authed: TestDocxy | undefined;

  before(async () => {
    hub = await startFakeHub({ privateRepositories: { 'private/app': [] } });
    await seedImages(hub, ['tiny']);
    openPublic = await startDocxy({ upstream: { url: hub.registryUrl }, public_url: publicUrl });
    openBound = await startDocxy({ upstream: { url: hub.registryUrl } });
    authed = await startDocxy({
      upstream: { url: hub.registryUrl },
      public_url: publicUrl,
      auth: {
        anonymous: false,
        users: [{ name: user.username, password_hash: bcrypt.hashSync(user.password, 4) }],
      },
      rate_limit: { failed_login_delay: 0 },
    });
  });

  after(async () => {
    await Promise.allSettled([openPublic?.stop(), openBound?.stop(), authed?.stop()]);
    await hub?.stop();
  });

  /** The realm each Docxy must name: from public_url, or from its bound address. */
  const cases = (): [string, TestDocxy, string][] => [
    ['open mirror, public_url', need(openPublic, 'docxy'), `${publicUrl}/auth/token`],
    ['open mirror, bound address', need(openBound, 'docxy'), `${need(openBound, 'docxy').url}/auth/token`],
    ['auth.anonymous false', need(authed, 'docxy'), `${publicUrl}/auth/token`],
  ];

  it('the /v2/ challenge realm comes from the public URL whatever the Host headers say', async () => {
    for (const [name, d, realm] of cases()) {
      for (const headers of FORGED) {
        const what = `${name} ${JSON.stringify(headers)} GET /v2/`;
        const res = await httpGet(`${d.url}/v2/`, { headers });
        assert.equal(res.status, 401, what);
        assert.equal(bearerParams(res.header('www-authenticate')).realm, realm, what);
        assertNothingForged(res, what);
      }
    }
  });

  it('a manifest 401 (a private repository upstream, or no Docxy token) names the same realm', async () => {
    for (const [name, d, realm] of cases()) {
      for (const headers of FORGED) {
        for (const method of ['GET', 'HEAD'] as const) {
          const what = `${name} ${JSON.stringify(headers)} ${method} private/app manifest`;
          const res = await httpGet(`${d.url}/v2/private/app/manifests/1`, {
            method,
            headers: { ...headers, accept: ACCEPT_ALL_MANIFESTS },
          });
          assert.equal(res.status, 401, `${what}: ${res.body.toString()}`);
          const c = bearerParams(res.header('www-authenticate'));
          assert.equal(c.realm, realm, what);
          assert.equal(c.scope, 'repository:private/app:pull', what);
          assertNothingForged(res, what);
        }
      }
    }
  });

  it('token, blob (across the CDN redirect) and tags/list answers carry no Location and no forged Link', async () => {
    const authedDocxy = need(authed, 'docxy');
    const tok = await httpGet(`${authedDocxy.url}/auth/token?service=docxy&scope=repository:tiny:pull`, {
      headers: { authorization: basicAuthorization(user) },
    });
    assert.equal(tok.status, 200);
    const docxyToken = (tok.json() as { token: string }).token;
    for (const [name, d] of cases()) {
      const auth: Record<string, string> = d === authedDocxy ? { authorization: `Bearer ${docxyToken}` } : {};
      for (const headers of FORGED) {
        const blob = await httpGet(`${d.url}/v2/tiny/blobs/${TINY.layers[0]?.digest ?? ''}`, {
          headers: { ...headers, ...auth },
        });
        assert.equal(blob.status, 200, `${name}: blob`);
        assertNothingForged(blob, `${name} ${JSON.stringify(headers)} blob`);
        const tags = await httpGet(`${d.url}/v2/tiny/tags/list?n=1`, { headers: { ...headers, ...auth } });
        assertNothingForged(tags, `${name} ${JSON.stringify(headers)} tags/list`);
        const token = await httpGet(`${d.url}/auth/token?service=x&scope=repository:tiny:pull`, { headers });
        assertNothingForged(token, `${name} ${JSON.stringify(headers)} /auth/token`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A hostile upstream's redirects and realms

/** Canary content: the blob the hostile upstream "serves" by redirecting to the canary. */
const CANARY_BODY = Buffer.from('canary: if you can read this, a private address was reached\n');
const CANARY_DIGEST = sha256(CANARY_BODY);

interface HostileUpstream {
  readonly url: string;
  /** Redirect targets per repository name (`redir/<case>`). */
  readonly targets: Map<string, string>;
  /** When set, `/v2/` and everything else answer 401 with this realm. */
  realm: string | undefined;
  readonly seen: string[];
  stop(): Promise<void>;
}

/**
 * A registry stand-in: `/v2/` is 200 (anonymous) unless `realm` is set (then everything but
 * `/token` is a 401 challenge naming it); a manifest or blob GET of `redir/<case>` is a 307 to
 * `targets.get(<case>)`; `/token` answers 200 with HTML (a broken token service).
 */
async function startHostileUpstream(): Promise<HostileUpstream> {
  const sockets = new Set<Socket>();
  const state: HostileUpstream = {
    url: '',
    targets: new Map(),
    realm: undefined,
    seen: [],
    stop: () => Promise.resolve(),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    state.seen.push(`${req.method ?? ''} ${url}`);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      sendJson(res, status, body, headers);
    };
    if (url.startsWith('/token')) {
      // A token service that is not one: 200 with a body that is no JSON.
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': 15 });
      res.end('<html>no</html>');
      return;
    }
    if (state.realm !== undefined) {
      json(
        401,
        { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
        {
          'www-authenticate': `Bearer realm="${state.realm}",service="hostile"`,
        },
      );
      return;
    }
    if (url === '/v2/' || url === '/v2') {
      json(200, {});
      return;
    }
    const m = /^\/v2\/redir\/([a-z0-9-]+)\/(?:blobs|manifests)\//.exec(url);
    const target = m?.[1] === undefined ? undefined : state.targets.get(m[1]);
    if (target !== undefined) {
      res.writeHead(307, { location: target, 'content-length': 0 });
      res.end();
      return;
    }
    json(404, { errors: [{ code: 'NAME_UNKNOWN', message: 'unknown' }] });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          resolve();
        });
      }),
  });
}

describe('a hostile upstream cannot send docxy to private addresses (allow_private_redirects: false)', () => {
  let upstream: HostileUpstream | undefined;
  let canary: Canary | undefined;
  let canary6: Canary | undefined;
  let guarded: TestDocxy | undefined;
  let permissive: TestDocxy | undefined;
  const up = (): HostileUpstream => need(upstream, 'the hostile upstream');
  const can = (): Canary => need(canary, 'the canary');

  before(async () => {
    canary = await startCanary('127.0.0.1', CANARY_BODY);
    canary6 = await startCanary('::1', CANARY_BODY).catch(() => undefined); // no IPv6 loopback: skip that case
    upstream = await startHostileUpstream();
    const config = (allow: boolean): ConfigInput => ({
      upstream: { url: need(upstream, 'upstream').url, timeouts: { connect: '5s' } },
      limits: { allow_private_redirects: allow },
      cache: { resume_retries: 0 },
    });
    guarded = await startDocxy(config(false));
    permissive = await startDocxy(config(true));
    const c = need(canary, 'canary');
    const targets: [string, string][] = [
      ['loopback', `${c.url}/x`],
      ['metadata', 'http://169.254.169.254/latest/meta-data'],
      ['metadata-iam', 'http://169.254.169.254/latest/meta-data/iam/security-credentials/'],
      ['localhost', `http://localhost:${c.port}/x`],
      ['decimal', `http://2130706433:${c.port}/x`],
      ['short', `http://127.1:${c.port}/x`],
      ['zero', `http://0.0.0.0:${c.port}/x`],
      ['mapped', `http://[::ffff:127.0.0.1]:${c.port}/x`],
      ['mapped-metadata', 'http://[::ffff:169.254.169.254]/latest/meta-data'],
      ['private10', 'http://10.0.0.1/x'],
      ['private192', 'http://192.168.0.1/x'],
    ];
    if (canary6 !== undefined) targets.push(['ipv6', `${canary6.url}/x`]);
    for (const [k, v] of targets) up().targets.set(k, v);
  });

  after(async () => {
    await Promise.allSettled([guarded?.stop(), permissive?.stop()]);
    await Promise.allSettled([upstream?.stop(), canary?.stop(), canary6?.stop()]);
  });

  const connections = (): number => can().connections() + (canary6?.connections() ?? 0);

  it('control: with allow_private_redirects true the loopback redirect is followed (the canary sees it)', async () => {
    const before = connections();
    const res = await httpGet(`${need(permissive, 'docxy').url}/v2/redir/loopback/blobs/${CANARY_DIGEST}`);
    assert.equal(res.status, 200, res.body.toString());
    assert.ok(res.body.equals(CANARY_BODY));
    assert.ok(connections() > before, 'the canary saw the connection');
  });

  for (const which of [
    'loopback',
    'metadata',
    'metadata-iam',
    'localhost',
    'decimal',
    'short',
    'zero',
    'mapped',
    'mapped-metadata',
    'private10',
    'private192',
    'ipv6',
  ]) {
    it(`a blob GET redirected to ${which} is a fast 502 JSON and reaches nothing`, async (t) => {
      const target = up().targets.get(which);
      if (target === undefined) {
        // No IPv6 loopback here: the case cannot be set up; say so instead of passing silently.
        assert.equal(which, 'ipv6', `no target for ${which}`);
        t.diagnostic('no ::1 on this machine: the IPv6 canary could not listen; only the IPv4 cases ran');
        return;
      }
      const before = connections();
      const t0 = Date.now();
      const res = await httpGet(`${need(guarded, 'docxy').url}/v2/redir/${which}/blobs/${CANARY_DIGEST}`);
      const ms = Date.now() - t0;
      t.diagnostic(`${target} -> ${res.status} in ${ms} ms: ${res.body.toString()}`);
      assertOciError(res, 502, 'UNAVAILABLE');
      const message = String((res.json() as { errors: { message: string }[] }).errors[0]?.message);
      assert.match(
        message,
        /private or loopback address/,
        'refused by the guard, not by a failed connection',
      );
      assert.ok(ms < 1000, `answered in ${ms} ms (the guard refuses before connecting)`);
      assert.equal(connections(), before, 'the canary saw no connection');
      assert.ok(!res.body.includes(CANARY_BODY));
    });
  }

  it('a manifest GET redirected to loopback is refused the same way', async () => {
    const before = connections();
    const res = await httpGet(`${need(guarded, 'docxy').url}/v2/redir/loopback/manifests/1`, {
      headers: { accept: ACCEPT_ALL_MANIFESTS },
    });
    assertOciError(res, 502, 'UNAVAILABLE');
    assert.equal(connections(), before, 'the canary saw no connection');
  });

  it('the guarded docxy never contacted the canary at all', () => {
    assert.deepEqual(
      can().requests(),
      [`GET /x`],
      'only the control (allow_private_redirects: true) reached the canary',
    );
  });

  it('an upstream challenge naming a loopback realm does not make docxy fetch it (nor relay its body)', async (t) => {
    // A fresh upstream and Docxy: the realm is discovered once and cached, so it must be there from the start.
    const hostile = await startHostileUpstream();
    let d: TestDocxy | undefined;
    try {
      const realm = `${can().url}/token`;
      hostile.realm = realm;
      d = await startDocxy({ upstream: { url: hostile.url }, limits: { allow_private_redirects: false } });
      const before = connections();
      const requestsBefore = can().requests().length;
      const token = await httpGet(`${d.url}/auth/token?service=hostile&scope=repository:some/img:pull`);
      const manifest = await httpGet(`${d.url}/v2/some/img/manifests/1`, {
        headers: { accept: ACCEPT_ALL_MANIFESTS },
      });
      t.diagnostic(`/auth/token -> ${token.status} ${token.body.toString().slice(0, 120)}`);
      t.diagnostic(`manifest -> ${manifest.status} ${manifest.body.toString().slice(0, 120)}`);
      t.diagnostic(`canary saw: ${can().requests().slice(requestsBefore).join(', ') || 'nothing'}`);
      assert.ok(!token.body.includes(CANARY_BODY), "the realm's body was relayed to the client");
      assert.equal(connections(), before, `docxy fetched the loopback realm ${realm}`);
    } finally {
      await d?.stop();
      await hostile.stop();
    }
  });

  it('an upstream token service answering 200 with a body that is no JSON is a 502 JSON, not a 500', async (t) => {
    const hostile = await startHostileUpstream();
    let d: TestDocxy | undefined;
    try {
      // The realm is the upstream's own origin: nothing private about it, only broken.
      hostile.realm = `${hostile.url}/token`;
      d = await startDocxy({ upstream: { url: hostile.url } });
      const res = await httpGet(`${d.url}/v2/some/img/manifests/1`, {
        headers: { accept: ACCEPT_ALL_MANIFESTS },
      });
      t.diagnostic(`manifest -> ${res.status} ${res.body.toString()}`);
      assertOciError(res, 502, 'UNAVAILABLE');
      const blob = await httpGet(`${d.url}/v2/some/img/blobs/${CANARY_DIGEST}`);
      t.diagnostic(`blob -> ${blob.status} ${blob.body.toString()}`);
      assertOciError(blob, 502, 'UNAVAILABLE');
    } finally {
      await d?.stop();
      await hostile.stop();
    }
  });
});
