/**
 * What anonymous clients are told, and what they may still do when the upstream is gone.
 *
 *   login required   -- `auth.anonymous: false`: an anonymous token (or none) on a repository is a
 *                       401 `UNAUTHORIZED` with a challenge naming realm, service and scope; real
 *                       `docker pull` and `skopeo inspect` then say "unauthorized: authentication
 *                       required", not "denied" (measured: with `error="insufficient_scope"` in
 *                       the challenge both print "denied: requested access to the resource is
 *                       denied", so Docxy leaves it out). A logged-in user whom the policy refuses
 *                       still gets 403 DENIED.
 *   empty Basic      -- `Authorization: Basic Og==` (empty user and password, what the OCI
 *                       conformance suite and some SDKs send) is an anonymous token request: the
 *                       fake hub's token server sees no credentials, and the pull works.
 *   offline tokens   -- the fake hub's registry AND token server stopped: Docxy's realm hands out
 *                       its stand-in token and `GET /v2/` with it is 200 (clients such as `docker
 *                       login` check `/v2/` with the token they got); a forged `docxy.` token is
 *                       not welcome; an unknown tag is still a 5xx OCI error.
 * Everything started here is stopped in `after` hooks, pass or fail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';

import { timed } from '../helpers/client-steps.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startSkopeo, type Skopeo } from '../helpers/clients/skopeo.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, TINY, basicAuthorization, seedImages } from '../helpers/images.ts';
import { assertOciError, bearerParams, need } from '../helpers/security.ts';

const EMPTY_BASIC = `Basic ${Buffer.from(':').toString('base64')}`;
const alice = { username: 'alice', password: 'alice-secret-pw' };

let hub: FakeHub | undefined;
const theHub = (): FakeHub => need(hub, 'the fake hub');

before(async () => {
  hub = await startFakeHub();
  await seedImages(hub, ['tiny']);
});

after(async () => {
  await hub?.stop();
});

async function tokenFrom(d: TestDocxy, repo: string, authorization?: string): Promise<string> {
  const res = await httpGet(`${d.url}/auth/token?service=docxy&scope=repository:${repo}:pull`, {
    headers: authorization === undefined ? {} : { authorization },
  });
  assert.equal(res.status, 200, `token for ${repo}: ${res.status} ${res.body.toString()}`);
  const token = (res.json() as { token?: unknown }).token;
  assert.equal(typeof token, 'string');
  return token as string;
}

const manifest = (d: TestDocxy, path: string, token?: string): ReturnType<typeof httpGet> =>
  httpGet(`${d.url}/v2/${path}`, {
    headers: {
      accept: ACCEPT_ALL_MANIFESTS,
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
  });

describe('auth.anonymous false: an anonymous client is told to log in (401), a refused user is denied (403)', () => {
  let d: TestDocxy | undefined;
  let dockerd: Dockerd | undefined;
  let skopeo: Skopeo | undefined;
  const docxy = (): TestDocxy => need(d, 'docxy');

  before(async () => {
    d = await startDocxy({
      upstream: { url: theHub().registryUrl },
      auth: {
        anonymous: false,
        users: [
          { name: alice.username, password_hash: bcrypt.hashSync(alice.password, 4) },
          { name: 'mallory', password_hash: bcrypt.hashSync('mallory-pw', 4) },
        ],
      },
      policy: [{ who: 'alice', allow: ['**'] }],
      rate_limit: { failed_login_delay: 0 },
    });
    [dockerd, skopeo] = await Promise.all([
      startDockerd({ insecureRegistries: [docxy().hostPort] }),
      startSkopeo(),
    ]);
  });

  after(async () => {
    await Promise.allSettled([dockerd?.stop(), skopeo?.stop()]);
    await d?.stop();
  });

  it('an anonymous token on a manifest is 401 UNAUTHORIZED with the challenge (not 403 DENIED)', async () => {
    const token = await tokenFrom(docxy(), 'tiny');
    const res = await manifest(docxy(), 'tiny/manifests/1', token);
    assertOciError(res, 401, 'UNAUTHORIZED', 'anonymous token');
    const p = bearerParams(res.header('www-authenticate'));
    assert.deepEqual(p, {
      realm: `${docxy().publicUrl}/auth/token`,
      service: 'docxy',
      scope: 'repository:tiny:pull',
    });
  });

  it('no token at all is 401 with the challenge for the repository', async () => {
    const res = await manifest(docxy(), 'tiny/manifests/1');
    assertOciError(res, 401, 'UNAUTHORIZED', 'no token');
    assert.equal(bearerParams(res.header('www-authenticate')).scope, 'repository:tiny:pull');
  });

  it('a logged-in user the policy refuses still gets 403 DENIED; the allowed user pulls', async () => {
    const refused = await tokenFrom(
      docxy(),
      'tiny',
      basicAuthorization({ username: 'mallory', password: 'mallory-pw' }),
    );
    assertOciError(await manifest(docxy(), 'tiny/manifests/1', refused), 403, 'DENIED', 'mallory');
    const allowed = await tokenFrom(docxy(), 'tiny', basicAuthorization(alice));
    const ok = await manifest(docxy(), 'tiny/manifests/1', allowed);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(ok.header('docker-content-digest'), TINY.digest);
  });

  it('docker pull without login says authentication is required, not "denied"', async (t) => {
    const ref = `${docxy().hostPort}/tiny:1`;
    const r = await timed(t, `docker pull ${ref} (no login)`, () => need(dockerd, 'dockerd').pull(ref));
    t.diagnostic(`docker: ${r.stderr.trim()}`);
    assert.notEqual(r.code, 0, 'an anonymous docker pull succeeded');
    assert.match(r.stderr, /unauthorized: authentication required/i);
    assert.doesNotMatch(r.stderr, /denied: /i);
  });

  it('skopeo inspect without credentials says unauthorized / authentication required', async (t) => {
    const r = await need(skopeo, 'skopeo').skopeo([
      'inspect',
      '--tls-verify=false',
      `docker://${docxy().hostPort}/tiny:1`,
    ]);
    t.diagnostic(`skopeo: ${r.stderr.trim()}`);
    assert.notEqual(r.code, 0, 'an anonymous skopeo inspect succeeded');
    assert.match(r.stderr, /unauthorized: authentication required/i);
    assert.doesNotMatch(r.stderr, /denied/i);
  });
});

describe('empty Basic credentials at the realm are an anonymous token request', () => {
  let open: TestDocxy | undefined;
  let authed: TestDocxy | undefined;

  before(async () => {
    open = await startDocxy({ upstream: { url: theHub().registryUrl } });
    authed = await startDocxy({
      upstream: { url: theHub().registryUrl },
      auth: { anonymous: false, users: [] },
      policy: [{ who: 'anonymous', allow: ['**'] }],
      rate_limit: { failed_login_delay: 0 },
    });
  });

  after(async () => {
    await Promise.allSettled([open?.stop(), authed?.stop()]);
  });

  it('open mirror: Basic ":" is never relayed to the upstream token server, and the token pulls', async () => {
    const d = need(open, 'open docxy');
    const requests = theHub().token.requests;
    requests.length = 0;
    const token = await tokenFrom(d, 'tiny', EMPTY_BASIC);
    assert.ok(requests.length > 0, 'the token server was asked');
    for (const r of requests) assert.equal(r.authorization, undefined, `relayed: ${String(r.authorization)}`);
    const res = await manifest(d, 'tiny/manifests/1', token);
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.header('docker-content-digest'), TINY.digest);
  });

  it('auth.anonymous false: Basic ":" gets an anonymous Docxy token, not "wrong user name or password"', async () => {
    const d = need(authed, 'authed docxy');
    const token = await tokenFrom(d, 'tiny', EMPTY_BASIC);
    const res = await manifest(d, 'tiny/manifests/1', token);
    assert.equal(res.status, 200, res.body.toString());
  });
});

describe('offline tokens: with the upstream and its token server down', () => {
  let d: TestDocxy | undefined;
  let offlineHub: FakeHub | undefined;
  const docxy = (): TestDocxy => need(d, 'docxy');

  before(async () => {
    offlineHub = await startFakeHub();
    await seedImages(offlineHub, ['tiny']);
    d = await startDocxy({ upstream: { url: offlineHub.registryUrl, timeouts: { connect: '2s' } } });
    // Warm: the realm is learnt and tiny:1 cached, as a client pull would leave it.
    const warm = await manifest(docxy(), 'tiny/manifests/1', await tokenFrom(docxy(), 'tiny'));
    assert.equal(warm.status, 200, warm.body.toString());
    await offlineHub.stopRegistry();
    await offlineHub.token.stop();
  });

  after(async () => {
    await d?.stop();
    await offlineHub?.stop();
  });

  it('GET /v2/ with the stand-in token Docxy handed out is 200', async () => {
    const token = await tokenFrom(docxy(), 'tiny');
    assert.match(token, /^docxy\./, 'a stand-in token');
    const res = await httpGet(`${docxy().url}/v2/`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, `${res.status} ${res.body.toString()}`);
    assert.equal(res.header('docker-distribution-api-version'), 'registry/2.0');
  });

  it('a forged docxy. token is not welcome on /v2/ (401 with the challenge)', async () => {
    const res = await httpGet(`${docxy().url}/v2/`, { headers: { authorization: 'Bearer docxy.forged' } });
    assertOciError(res, 401, 'UNAUTHORIZED', 'forged stand-in');
    assert.equal(bearerParams(res.header('www-authenticate')).realm, `${docxy().publicUrl}/auth/token`);
  });

  it('the stand-in token pulls the cached manifest; an unknown tag is a 5xx OCI error', async () => {
    const token = await tokenFrom(docxy(), 'tiny');
    const hit = await manifest(docxy(), 'tiny/manifests/1', token);
    assert.equal(hit.status, 200, hit.body.toString());
    assert.equal(hit.header('docker-content-digest'), TINY.digest);
    const unknown = await manifest(docxy(), 'tiny/manifests/no-such-tag', token);
    assert.ok([502, 503, 504].includes(unknown.status), `unknown tag offline: ${unknown.status}`);
    assertOciError(unknown, unknown.status, undefined, 'unknown tag offline');
  });
});
