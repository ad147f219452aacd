/**
 * Client authentication (`auth.anonymous: false`): Docxy's own Bearer challenge and token
 * endpoint, htpasswd users (one written by the real `htpasswd -B` CLI, one by Docxy's
 * `htpasswdAdd`), audit lines for failed logins, real clients (docker login + pull through dockerd,
 * podman login + pull), the repository policy (403 DENIED before any upstream contact), and token
 * forgeries, each refused with 401.
 *
 * World: the fake Docker Hub (Distribution 2.8 with token auth and a CDN) seeded with library/tiny:1,
 * someuser/app:2 and myorg/x:1, and two in-process Docxies in front of it:
 *   - `open`: no policy, two upstreams (docker.io, the default, and quay.io, both the fake hub) so a
 *     token of one upstream can be tried on the other; its signing key is a file this test wrote,
 *     so it can sign test tokens with Docxy's own key;
 *   - `policy`: alice may pull everything but myorg/**, bob everything.
 * Everything is stopped and every directory removed in `after`, pass or fail.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { SignJWT, UnsecuredJWT } from 'jose';

import { htpasswdAdd } from '../../src/auth/htpasswd.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startPodman, type Podman } from '../helpers/clients/podman.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, type TestResponse } from '../helpers/http.ts';
import {
  ACCEPT_ALL_MANIFESTS,
  SOMEUSER_APP,
  TINY,
  basicAuthorization,
  buildImage,
  pushImage,
  seedImages,
  type ImageDescriptor,
} from '../helpers/images.ts';
import {
  assertOciError,
  bearerParams,
  docxyClaims,
  htpasswdCli,
  httpPull,
  jwtPayload,
  need,
  p256,
  signDocxyToken,
  writeFile,
} from '../helpers/security.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

// ---------------------------------------------------------------------------------------------
// Fixture

const dir = makeTmpDir('security-auth');
const htpasswdFile = join(dir.path, 'htpasswd');
const docxyKey = p256();
const keyFile = writeFile(join(dir.path, 'token.key'), docxyKey.privatePem);
const secret = (who: string): string => `${who}-pw-${randomBytes(9).toString('hex')}`;
/** carol: written by `htpasswd -B -b -c`; alice and bob: by Docxy's htpasswdAdd. */
const carol = { username: 'carol', password: secret('carol') };
const alice = { username: 'alice', password: secret('alice') };
const bob = { username: 'bob', password: secret('bob') };

let hub: FakeHub | undefined;
let open: TestDocxy | undefined;
let policy: TestDocxy | undefined;
let myorg: ImageDescriptor | undefined;
const theHub = (): FakeHub => need(hub, 'the fake hub');
const theOpen = (): TestDocxy => need(open, 'the docxy without policy');
const thePolicy = (): TestDocxy => need(policy, 'the docxy with a policy');

before(async () => {
  await htpasswdCli(htpasswdFile, carol.username, carol.password, true);
  htpasswdAdd(htpasswdFile, alice.username, alice.password);
  htpasswdAdd(htpasswdFile, bob.username, bob.password);
  hub = await startFakeHub();
  await seedImages(hub, ['tiny', 'app']);
  myorg = await pushImage(hub, await buildImage({ repo: 'myorg/x', tag: '1' }));
  const auth = { anonymous: false, htpasswd: htpasswdFile, token: { key_file: keyFile } };
  // A small failed-login delay: the wrong-password tests must not slow every later login down.
  const rateLimit = { failed_login_delay: '10ms' };
  open = await startDocxy({
    upstreams: [
      { name: 'docker.io', url: hub.registryUrl },
      { name: 'quay.io', url: hub.registryUrl },
    ],
    auth,
    rate_limit: rateLimit,
  });
  policy = await startDocxy({
    upstream: { url: hub.registryUrl },
    auth,
    rate_limit: rateLimit,
    policy: [
      { upstream: '*', allow: ['**'], deny: ['myorg/**'], who: ['alice'] },
      { upstream: '*', allow: ['**'], who: ['bob'] },
    ],
  });
});

after(async () => {
  const results = await Promise.allSettled([open?.stop(), policy?.stop(), hub?.stop()]);
  dir.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** Asks a Docxy realm for a pull token on `repo` (as `docker` does), returning the raw answer. */
function tokenRequest(
  d: TestDocxy,
  repo: string,
  user?: { username: string; password: string },
  path = '/auth/token',
): Promise<TestResponse> {
  const url = new URL(`${d.url}${path}`);
  url.searchParams.set('service', 'docxy');
  url.searchParams.set('scope', `repository:${repo}:pull`);
  return httpGet(url.href, {
    headers: user === undefined ? {} : { authorization: basicAuthorization(user) },
  });
}

async function tokenFor(
  d: TestDocxy,
  repo: string,
  user?: { username: string; password: string },
  path?: string,
): Promise<string> {
  const res = await tokenRequest(d, repo, user, path);
  assert.equal(res.status, 200, `token for ${repo}: ${res.status} ${res.body.toString()}`);
  const token = (res.json() as { token?: unknown }).token;
  assert.equal(typeof token, 'string');
  return token as string;
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** GET of tiny's manifest with `headers`: what every forgery is tried on. */
function getTiny(d: TestDocxy, headers: Record<string, string>): Promise<TestResponse> {
  return httpGet(`${d.url}/v2/tiny/manifests/1`, { headers: { accept: ACCEPT_ALL_MANIFESTS, ...headers } });
}

/** 401 UNAUTHORIZED with Docxy's challenge (realm from the public URL). */
function assertRefused(d: TestDocxy, res: TestResponse, what: string): void {
  assertOciError(res, 401, 'UNAUTHORIZED', what);
  const c = bearerParams(res.header('www-authenticate'));
  assert.equal(c.realm, `${d.publicUrl}/auth/token`, `${what}: realm`);
  assert.equal(c.service, 'docxy', `${what}: service`);
}

/** Upstream activity counts (registry access log, token server, CDN), to prove nothing reached it. */
async function upstreamCounts(): Promise<Record<string, number>> {
  const h = theHub();
  return {
    registry: (await h.registryRequests()).length,
    token: h.token.requests.length,
    cdn: h.cdn?.requests.length ?? 0,
  };
}

async function timed<T>(t: TestContext, what: string, step: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const r = await step();
  t.diagnostic(`${what}: ${Date.now() - t0} ms`);
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('auth.anonymous false with an htpasswd file', () => {
  it('the htpasswd file holds a `htpasswd -B` entry and an htpasswdAdd entry, both bcrypt', () => {
    const lines = readFileSync(htpasswdFile, 'utf8').trim().split('\n');
    assert.equal(lines.length, 3, lines.join('\n'));
    assert.match(lines.find((l) => l.startsWith('carol:')) ?? '', /^carol:\$2y\$05\$/);
    assert.match(lines.find((l) => l.startsWith('alice:')) ?? '', /^alice:\$2y\$10\$/);
  });

  it('an anonymous manifest request is 401 with a Bearer challenge naming realm, service and scope', async () => {
    const d = theOpen();
    const res = await getTiny(d, {});
    assertOciError(res, 401, 'UNAUTHORIZED');
    assert.equal(
      res.header('www-authenticate'),
      `Bearer realm="${d.publicUrl}/auth/token",service="docxy",scope="repository:tiny:pull"`,
    );
  });

  it('an anonymous blob request is 401 with the challenge for its repository', async () => {
    const d = theOpen();
    const res = await httpGet(`${d.url}/v2/someuser/app/blobs/${SOMEUSER_APP.configDigest}`);
    assertOciError(res, 401, 'UNAUTHORIZED');
    assert.equal(
      res.header('www-authenticate'),
      `Bearer realm="${d.publicUrl}/auth/token",service="docxy",scope="repository:someuser/app:pull"`,
    );
  });

  it('an anonymous /v2/ is 401 with the challenge (no scope)', async () => {
    const d = theOpen();
    const res = await httpGet(`${d.url}/v2/`);
    assertOciError(res, 401, 'UNAUTHORIZED');
    assert.equal(res.header('www-authenticate'), `Bearer realm="${d.publicUrl}/auth/token",service="docxy"`);
  });

  it('a client without credentials that follows the challenge gets no content', async (t) => {
    // What `docker pull` does without `docker login`: the 401 names the realm, the client asks it
    // for a token without credentials and retries with whatever it got.
    const d = theOpen();
    const tok = await tokenRequest(d, 'tiny');
    t.diagnostic(`anonymous /auth/token: ${tok.status} ${tok.body.toString().slice(0, 120)}`);
    const token = tok.status === 200 ? (tok.json() as { token?: string }).token : undefined;
    if (token !== undefined) t.diagnostic(`anonymous token payload: ${JSON.stringify(jwtPayload(token))}`);
    const res = await getTiny(d, token === undefined ? {} : bearer(token));
    assert.notEqual(
      res.status,
      200,
      `with auth.anonymous false an anonymous client pulled library/tiny: ${res.status} ${res.body.toString().slice(0, 120)}`,
    );
    assert.ok([401, 403].includes(res.status), `401 or 403, got ${res.status}`);
  });

  it('a wrong password at /auth/token is 401 and audited (user, ip) without the password', async () => {
    const d = theOpen();
    const wrong = { username: carol.username, password: `wrong-${randomBytes(12).toString('hex')}` };
    const res = await tokenRequest(d, 'tiny', wrong);
    assertOciError(res, 401, 'UNAUTHORIZED');
    const audit = d
      .logs()
      .filter((l) => l.msg === 'audit' && l.event === 'auth_failed' && l.user === carol.username);
    assert.equal(audit.length, 1, JSON.stringify(audit));
    assert.equal(audit[0]?.ip, '127.0.0.1');
    const text = d.logText();
    assert.ok(!text.includes(wrong.password), 'the wrong password is in no log line');
    assert.ok(!text.includes(basicAuthorization(wrong).slice(6)), 'nor its Basic form');
    assert.ok(!text.includes(carol.password), 'nor the right one');
  });

  it('an unknown user is refused like a wrong password (401, audited)', async () => {
    const d = theOpen();
    const res = await tokenRequest(d, 'tiny', { username: 'mallory', password: 'guess' });
    assertOciError(res, 401, 'UNAUTHORIZED');
    assert.ok(d.logs().some((l) => l.msg === 'audit' && l.event === 'auth_failed' && l.user === 'mallory'));
  });

  for (const [who, user] of [
    ['`htpasswd -B -b -c` (carol)', carol],
    ['htpasswdAdd (alice)', alice],
  ] as const) {
    it(`the right password of the ${who} entry gets a token that pulls a manifest and its blobs`, async () => {
      const d = theOpen();
      const token = await tokenFor(d, 'tiny', user);
      const payload = jwtPayload(token);
      assert.equal(payload.sub, user.username);
      assert.deepEqual(payload.access, [{ type: 'repository', name: 'tiny', actions: ['pull'] }]);
      const got = await httpPull(d.url, 'tiny', '1', bearer(token));
      assert.equal(got.digest, TINY.digest);
      assert.deepEqual(got.blobs, [TINY.configDigest, ...TINY.layers.map((l) => l.digest)]);
      const lines = d.requestLogs().filter((l) => l.path === '/v2/tiny/manifests/1' && l.status === 200);
      assert.ok(
        lines.some((l) => l.user === user.username),
        'the request log names the user',
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('real clients log in and pull through docxy', () => {
  let dockerd: Dockerd | undefined;
  let podman: Podman | undefined;

  before(async () => {
    const d = theOpen();
    [dockerd, podman] = await Promise.all([
      startDockerd({ insecureRegistries: [d.hostPort] }),
      startPodman(),
    ]);
  });

  after(async () => {
    await Promise.allSettled([dockerd?.stop(), podman?.stop()]);
  });

  it('docker login with a wrong password fails', async (t) => {
    const d = theOpen();
    const r = await timed(t, 'docker login (wrong password)', () =>
      need(dockerd, 'dockerd').login(d.hostPort, carol.username, 'not-the-password'),
    );
    assert.notEqual(r.code, 0, `docker login succeeded with a wrong password: ${r.stdout}`);
  });

  it('docker login + docker pull 127.0.0.1:PORT/tiny:1 (dockerd, insecure registry)', async (t) => {
    const d = theOpen();
    const docker = need(dockerd, 'dockerd');
    const login = await timed(t, 'docker login', () =>
      docker.login(d.hostPort, carol.username, carol.password),
    );
    assert.equal(login.code, 0, `docker login: ${login.stderr}`);
    assert.match(login.stdout, /Login Succeeded/);
    const mark = d.requestLogs().length;
    const ref = `${d.hostPort}/tiny:1`;
    const pull = await timed(t, `docker pull ${ref}`, () => docker.pull(ref));
    const seen = d
      .requestLogs()
      .slice(mark)
      .map((l) => `${String(l.method)} ${String(l.path)} -> ${String(l.status)} user=${String(l.user)}`);
    assert.equal(pull.code, 0, `docker pull: ${pull.stderr}\ndocxy saw:\n${seen.join('\n')}`);
    assert.equal(await docker.imageId(ref), TINY.configDigest);
    assert.ok(
      d
        .requestLogs()
        .slice(mark)
        .some((l) => l.path === '/v2/tiny/manifests/1' && l.status === 200 && l.user === carol.username),
      `the manifest was served to carol:\n${seen.join('\n')}`,
    );
  });

  it('podman login + podman pull 127.0.0.1:PORT/someuser/app:2', async (t) => {
    const d = theOpen();
    const pm = need(podman, 'podman');
    const login = await timed(t, 'podman login', () =>
      pm.login(d.hostPort, alice.username, alice.password, { tlsVerify: false }),
    );
    assert.equal(login.code, 0, `podman login: ${login.stderr}`);
    const mark = d.requestLogs().length;
    const ref = `${d.hostPort}/someuser/app:2`;
    const pull = await timed(t, `podman pull ${ref}`, () => pm.pull(ref, { tlsVerify: false }));
    assert.equal(pull.code, 0, `podman pull: ${pull.stderr}`);
    assert.equal(await pm.imageDigest(ref), SOMEUSER_APP.digest);
    assert.equal(await pm.imageId(ref), SOMEUSER_APP.configDigest.slice('sha256:'.length));
    assert.ok(
      d
        .requestLogs()
        .slice(mark)
        .some((l) => String(l.path).startsWith('/v2/someuser/app/') && l.user === alice.username),
      'the requests were alice’s',
    );
  });

  it('no password or Basic credential reached the log', () => {
    const text = theOpen().logText();
    for (const u of [carol, alice]) {
      assert.ok(!text.includes(u.password), `${u.username}'s password is in no log line`);
      assert.ok(
        !text.includes(basicAuthorization(u).slice(6)),
        `${u.username}'s Basic form is in no log line`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('policy: alice may pull everything but myorg/**', () => {
  it('a token alice asks for myorg/x grants no access', async () => {
    const token = await tokenFor(thePolicy(), 'myorg/x', alice);
    assert.deepEqual(jwtPayload(token).access, []);
  });

  it('alice gets 403 DENIED for myorg/x (manifest and blob), audited, and the upstream sees nothing', async () => {
    const d = thePolicy();
    const img = need(myorg, 'myorg/x');
    const tokens = [await tokenFor(d, 'myorg/x', alice), await tokenFor(d, 'tiny', alice)];
    const before = await upstreamCounts();
    const tokenMark = theHub().token.requests.length;
    for (const token of tokens) {
      for (const [path, method] of [
        ['/v2/myorg/x/manifests/1', 'GET'],
        ['/v2/myorg/x/manifests/1', 'HEAD'],
        [`/v2/myorg/x/manifests/${img.digest}`, 'GET'],
        [`/v2/myorg/x/blobs/${img.configDigest}`, 'GET'],
        ['/v2/myorg/x/tags/list', 'GET'],
      ] as const) {
        const res = await httpGet(`${d.url}${path}`, {
          method,
          headers: { ...bearer(token), accept: ACCEPT_ALL_MANIFESTS },
        });
        if (method === 'HEAD') assert.equal(res.status, 403, `${method} ${path}`);
        else assertOciError(res, 403, 'DENIED', `${method} ${path}`);
      }
    }
    const after = await upstreamCounts();
    assert.deepEqual(after, before, 'no request reached the registry, token server or CDN');
    assert.deepEqual(
      theHub()
        .token.requests.slice(tokenMark)
        .flatMap((r) => r.query.scope),
      [],
    );
    const audit = d
      .logs()
      .filter(
        (l) => l.msg === 'audit' && l.event === 'denied' && l.user === 'alice' && l.repository === 'myorg/x',
      );
    assert.ok(audit.length >= 10, `every refusal is audited (${audit.length})`);
  });

  it('control: bob may pull myorg/x:1', async () => {
    const d = thePolicy();
    const got = await httpPull(d.url, 'myorg/x', '1', bearer(await tokenFor(d, 'myorg/x', bob)));
    assert.equal(got.digest, need(myorg, 'myorg/x').digest);
  });

  it("myorg/x's cached content is not served to alice by digest under a repository she may pull", async (t) => {
    const d = thePolicy();
    const img = need(myorg, 'myorg/x');
    // bob's pull (the control above, repeated here so this test stands alone) caches myorg/x.
    await httpPull(d.url, 'myorg/x', '1', bearer(await tokenFor(d, 'myorg/x', bob)));
    const token = await tokenFor(d, 'tiny', alice);
    const served: string[] = [];
    for (const path of [
      `/v2/tiny/manifests/${img.digest}`,
      `/v2/tiny/blobs/${img.configDigest}`,
      ...img.layers.map((l) => `/v2/tiny/blobs/${l.digest}`),
    ]) {
      const res = await httpGet(`${d.url}${path}`, {
        headers: { ...bearer(token), accept: ACCEPT_ALL_MANIFESTS },
      });
      t.diagnostic(`alice GET ${path} -> ${res.status} (${res.body.length} B)`);
      if (res.status === 200) served.push(path);
    }
    assert.deepEqual(served, [], 'content of a repository denied to alice was served to her');
  });
});

// ---------------------------------------------------------------------------------------------

describe('token forgeries are refused with 401', () => {
  const tinyAccess = [{ type: 'repository', name: 'tiny', actions: ['pull'] }];

  it("control: a token signed with docxy's key and the right claims is accepted", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      docxyKey.privateKey,
      docxyClaims({ sub: carol.username, access: tinyAccess }),
    );
    const res = await getTiny(d, bearer(token));
    assert.equal(res.status, 200, res.body.toString().slice(0, 200));
  });

  it('signed with another P-256 key', async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      p256().privateKey,
      docxyClaims({ sub: carol.username, access: tinyAccess }),
    );
    assertRefused(d, await getTiny(d, bearer(token)), 'another key');
  });

  it('signed with another key that the token carries in its own `jwk` header', async () => {
    const d = theOpen();
    const attacker = p256();
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ access: tinyAccess, upstream: 'docker.io' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', jwk: attacker.publicKey.export({ format: 'jwk' }) })
      .setIssuer('docxy')
      .setAudience('docxy')
      .setSubject(carol.username)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(attacker.privateKey);
    assertRefused(d, await getTiny(d, bearer(token)), 'embedded jwk');
  });

  it('alg none (an unsecured JWT)', async () => {
    const d = theOpen();
    const token = new UnsecuredJWT({ access: tinyAccess, upstream: 'docker.io' })
      .setIssuer('docxy')
      .setAudience('docxy')
      .setSubject(carol.username)
      .setIssuedAt()
      .setExpirationTime('5m')
      .encode();
    assertRefused(d, await getTiny(d, bearer(token)), 'alg none');
  });

  it("HS256 with docxy's public key as the HMAC secret", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      new TextEncoder().encode(docxyKey.publicPem),
      docxyClaims({ sub: carol.username, access: tinyAccess }),
      'HS256',
    );
    assertRefused(d, await getTiny(d, bearer(token)), 'HS256 key confusion');
  });

  it("a genuine token whose payload was edited (docxy's signature kept)", async () => {
    const d = theOpen();
    const genuine = await tokenFor(d, 'tiny', carol);
    const [header, , signature] = genuine.split('.');
    const payload = {
      ...jwtPayload(genuine),
      access: [{ type: 'repository', name: 'someuser/app', actions: ['pull'] }],
    };
    const edited = `${header ?? ''}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature ?? ''}`;
    const res = await httpGet(`${d.url}/v2/someuser/app/manifests/2`, {
      headers: { ...bearer(edited), accept: ACCEPT_ALL_MANIFESTS },
    });
    assertRefused(d, res, 'edited payload');
  });

  it("expired (signed with docxy's own key)", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      docxyKey.privateKey,
      docxyClaims({ sub: carol.username, access: tinyAccess, iatIn: -600, expIn: -60 }),
    );
    assertRefused(d, await getTiny(d, bearer(token)), 'expired');
  });

  it("wrong audience (signed with docxy's own key)", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      docxyKey.privateKey,
      docxyClaims({ sub: carol.username, access: tinyAccess, aud: 'registry.docker.io' }),
    );
    assertRefused(d, await getTiny(d, bearer(token)), 'wrong audience');
  });

  it("wrong issuer (signed with docxy's own key)", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      docxyKey.privateKey,
      docxyClaims({ sub: carol.username, access: tinyAccess, iss: 'auth.docker.io' }),
    );
    assertRefused(d, await getTiny(d, bearer(token)), 'wrong issuer');
  });

  it('a token for repository tiny used on someuser/app', async () => {
    const d = theOpen();
    const token = await tokenFor(d, 'tiny', carol);
    const res = await httpGet(`${d.url}/v2/someuser/app/manifests/2`, {
      headers: { ...bearer(token), accept: ACCEPT_ALL_MANIFESTS },
    });
    assertRefused(d, res, 'another repository');
    const c = bearerParams(res.header('www-authenticate'));
    assert.equal(c.scope, 'repository:someuser/app:pull');
    assert.equal(c.error, 'insufficient_scope');
    const blob = await httpGet(`${d.url}/v2/someuser/app/blobs/${SOMEUSER_APP.configDigest}`, {
      headers: bearer(token),
    });
    assertRefused(d, blob, 'another repository (blob)');
  });

  it('a token from /auth/token/quay.io used on the default upstream (docker.io)', async () => {
    const d = theOpen();
    // Control: the default realm's token for the same scope works.
    assert.equal((await getTiny(d, bearer(await tokenFor(d, 'tiny', carol)))).status, 200);
    const quayToken = await tokenFor(d, 'tiny', carol, '/auth/token/quay.io');
    assert.equal(jwtPayload(quayToken).upstream, 'quay.io');
    assertRefused(d, await getTiny(d, bearer(quayToken)), "quay.io's token on docker.io");
  });

  it('a pull token used for a push is refused (never 2xx) and nothing reaches the upstream', async () => {
    const d = theOpen();
    const token = await tokenFor(d, 'tiny', carol);
    const before = await upstreamCounts();
    const put = await httpGet(`${d.url}/v2/tiny/manifests/evil`, {
      method: 'PUT',
      headers: { ...bearer(token), 'content-type': TINY.mediaType },
      body: TINY.manifests.at(-1)?.bytes.toString('utf8') ?? '{}',
    });
    assert.ok(put.status >= 400, `PUT manifest: ${put.status}`);
    assertOciError(put, put.status);
    const post = await httpGet(`${d.url}/v2/tiny/blobs/uploads/`, { method: 'POST', headers: bearer(token) });
    assert.ok(post.status >= 400, `POST upload: ${post.status}`);
    assert.deepEqual(await upstreamCounts(), before, 'the upstream saw nothing');
  });

  it("a token signed with docxy's key claiming push still pushes nothing", async () => {
    const d = theOpen();
    const token = await signDocxyToken(
      docxyKey.privateKey,
      docxyClaims({
        sub: carol.username,
        access: [{ type: 'repository', name: 'tiny', actions: ['pull', 'push', '*'] }],
      }),
    );
    for (const [method, path] of [
      ['PUT', '/v2/tiny/manifests/evil'],
      ['POST', '/v2/tiny/blobs/uploads/'],
      ['PATCH', '/v2/tiny/blobs/uploads/x'],
      ['DELETE', `/v2/tiny/manifests/${TINY.digest}`],
    ] as const) {
      const res = await httpGet(`${d.url}${path}`, { method, headers: bearer(token), body: '{}' });
      assert.ok(res.status >= 400, `${method} ${path}: ${res.status}`);
      assertOciError(res, res.status, undefined, `${method} ${path}`);
    }
  });
});
