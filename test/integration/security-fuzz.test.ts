/**
 * Property-based fuzzing of Docxy's HTTP surface with fast-check (fixed seeds: a failure prints its
 * seed and path and replays the same way), through fastify's `inject()` on in-process Docxies whose
 * upstream is the fake hub.
 *
 * 1. Hostile requests (10,000 runs) against `auth.anonymous: false`, so no request may be served
 *    content: paths with `../`, `%2e%2e`, `%00`, double slashes, unicode, very long parts, names,
 *    tags and digests off the grammar, random methods; headers with forged Host and
 *    X-Forwarded-Host, huge Accept, Range garbage, Authorization garbage (random and JWT-shaped
 *    strings, forged tokens signed with the wrong key, `alg: none`, expired or for another audience
 *    with Docxy's own key); token requests with odd scopes and forms. Properties: no 5xx; every
 *    non-2xx body is OCI JSON (`errors[0].code` a string); only `/auth/token…` and `/health` may
 *    answer 2xx; a challenge's realm is always Docxy's public URL; no Location. Afterwards nothing
 *    was stored, and no file appeared or changed outside the data directory.
 * 2. Valid-looking requests (2,000 runs) against the open mirror (auth off) with the hub up: manifests,
 *    blobs, tags and referrers of known and unknown names. No 5xx at all (502/503/504 would only be
 *    acceptable with the upstream down, and it is up); non-2xx bodies are OCI JSON; every 200 body
 *    is the bytes its digest names.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { METHODS } from 'node:http';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { UnsecuredJWT } from 'jose';

import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { MULTI, OCI_INDEX, SOMEUSER_APP, TINY, seedImages } from '../helpers/images.ts';
import { filesUnder } from '../helpers/cache-probe.ts';
import { docxyClaims, need, p256, signDocxyToken, writeFile } from '../helpers/security.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

const HOSTILE_RUNS = 10_000;
const VALID_RUNS = 2_000;
/** Each property must finish within this (an interrupted run counts as a failure). */
const TIME_LIMIT_MS = 150_000;

const REPO_DIR = join(import.meta.dirname, '..', '..');
/** Docxy's data directory sits five levels inside a fuzz root: a traversal of a few `..` lands in it. */
const fuzzRoot = makeTmpDir('fuzz');
const dataDir = join(fuzzRoot.path, 'a', 'b', 'c', 'd', 'data');
const docxyKey = p256();
const keyFile = writeFile(join(fuzzRoot.path, 'token.key'), docxyKey.privatePem);

let hub: FakeHub | undefined;
let authed: TestDocxy | undefined;
let open: TestDocxy | undefined;
/** Forged tokens (each must be refused), made in `before`. */
let forgedTokens: string[] = [];
/** Non-2xx answers of the hostile runs whose body was no OCI JSON error (checked by its own test). */
const nonOci: { kind: string; what: string }[] = [];
let hostileRunsDone = 0;

before(async () => {
  mkdirSync(dataDir, { recursive: true });
  hub = await startFakeHub();
  await seedImages(hub, ['tiny', 'app', 'multi', 'ociindex']);
  authed = await startDocxy({
    upstream: { url: hub.registryUrl },
    data: dataDir,
    log_level: 'warn',
    auth: { anonymous: false, token: { key_file: keyFile } },
    // Failed logins must not slow the fuzz down (the delay itself is tested in security-limits).
    rate_limit: { failed_login_delay: 0 },
  });
  open = await startDocxy({ upstream: { url: hub.registryUrl }, log_level: 'warn' });
  const other = p256();
  const access = (name: string): { type: string; name: string; actions: string[] }[] => [
    { type: 'repository', name, actions: ['pull'] },
  ];
  const names = ['tiny', 'library/tiny', 'a', 'someuser/app'];
  forgedTokens = (
    await Promise.all(
      names.flatMap((n) => [
        signDocxyToken(other.privateKey, docxyClaims({ access: access(n) })),
        signDocxyToken(docxyKey.privateKey, docxyClaims({ access: access(n), expIn: -60, iatIn: -600 })),
        signDocxyToken(docxyKey.privateKey, docxyClaims({ access: access(n), aud: 'registry.docker.io' })),
        signDocxyToken(docxyKey.privateKey, docxyClaims({ access: access(n), iss: 'auth.docker.io' })),
        signDocxyToken(docxyKey.privateKey, docxyClaims({ access: access(n), upstream: 'ghcr.io' })),
        signDocxyToken(
          new TextEncoder().encode(docxyKey.publicPem),
          docxyClaims({ access: access(n) }),
          'HS256',
        ),
        Promise.resolve(
          new UnsecuredJWT({ access: access(n), upstream: 'docker.io' })
            .setIssuer('docxy')
            .setAudience('docxy')
            .setSubject('x')
            .setExpirationTime('5m')
            .encode(),
        ),
      ]),
    )
  ).flat();
});

after(async () => {
  const results = await Promise.allSettled([authed?.stop(), open?.stop(), hub?.stop()]);
  fuzzRoot.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------
// File-system footprint

/** path -> mtime of the entries of `dir` (recursively when asked, skipping `skip`). */
function snapshot(dir: string, recursive: boolean, skip?: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (p === skip) continue;
      try {
        const st = statSync(p);
        out.set(p, st.mtimeMs);
        if (recursive && st.isDirectory()) walk(p);
      } catch {
        /* vanished meanwhile */
      }
    }
  };
  walk(dir);
  return out;
}

/** Entries created or modified between two snapshots. */
function changed(before: Map<string, number>, after: Map<string, number>): string[] {
  return [...after].filter(([p, m]) => before.get(p) !== m).map(([p]) => p);
}

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries: hostile requests

const b64url = (s: string): string => Buffer.from(s).toString('base64url');
const hex = (min: number, max: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...Array.from('0123456789abcdef')), minLength: min, maxLength: max });

/** Whitespace-separated words (to keep long constant lists compact). */
const words = (text: string): string[] => text.trim().split(/\s+/);

const nastySegments = words(String.raw`
  .. . ... %2e%2e %2E%2E %2e .%2e %2e. ..%2f ..%5c %2f %2F %5c \ ..\.. %00 a%00b %0a %0d%0a % %zz
  %c0%ae%c0%ae %e2%80%ae ~ * ** ..; ; : @ $ _catalog manifests blobs uploads tags list referrers library
  v2 auth token latest etc passwd objects meta tmp _tag token.key package.json upstreams challenge
  sha256 sha256: sha512: md5:d41d8cd98f00b204e9800998ecf8427e A UPPER -x .x _x a__b a---b a..b a.-b
  localhost:5000 evil.example 127.0.0.1 0 null undefined constructor __proto__ prototype hasOwnProperty
`);

const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-]{1,2}[a-z0-9]{1,4})?$/) },
  { weight: 6, arbitrary: fc.constantFrom(...nastySegments) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => encodeURIComponent(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc
      .string({ unit: 'binary-ascii', minLength: 1, maxLength: 6 })
      .map((s) => encodeURIComponent(s)),
  },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 6000 }).map((n) => 'a'.repeat(n)) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 2, max: 300 }).map((n) => Array.from({ length: n }, () => 'a').join('/')),
  },
  { weight: 2, arbitrary: hex(64, 64).map((h) => `sha256:${h}`) },
  { weight: 1, arbitrary: hex(0, 130).map((h) => `sha256:${h}`) },
  { weight: 1, arbitrary: hex(128, 128).map((h) => `sha512:${h}`) },
  { weight: 1, arbitrary: hex(64, 64).map((h) => `sha256:${h.toUpperCase()}`) },
  { weight: 1, arbitrary: fc.constantFrom(TINY.digest, TINY.configDigest, `${TINY.digest}/../..`) },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.:@-]{0,140}$/) },
);

const name: fc.Arbitrary<string> = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));

const query: fc.Arbitrary<string> = fc
  .array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom(...words('ns n last scope service account digest mount from artifactType')),
        fc.string({ maxLength: 6 }).map(encodeURIComponent),
      ),
      fc.oneof(
        fc.constantFrom(
          'a b c',
          '',
          ...words(`
            docker.io evil.example 127.0.0.1:1 169.254.169.254 localhost ../../etc -1 0 99999999999999999999
            repository:tiny:pull repository:../../x:pull repository:a:push,pull repository:tiny:*
            registry:catalog:* repository(plugin):a:pull repository:quay.io/a:pull docxy
          `),
        ),
        segment,
        fc.string({ maxLength: 30 }).map(encodeURIComponent),
      ),
    ),
    { maxLength: 5 },
  )
  .map((kv) => (kv.length === 0 ? '' : `?${kv.map(([k, v]) => `${k}=${v}`).join('&')}`));

/** Paths: near-valid registry routes, token routes, and free-form segment soup. */
const path: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(name, segment).map(([n, r]) => `/v2/${n}/manifests/${r}`) },
  { weight: 3, arbitrary: fc.tuple(name, segment).map(([n, d]) => `/v2/${n}/blobs/${d}`) },
  { weight: 1, arbitrary: name.map((n) => `/v2/${n}/tags/list`) },
  { weight: 1, arbitrary: fc.tuple(name, segment).map(([n, d]) => `/v2/${n}/referrers/${d}`) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(name, fc.constantFrom('', 'x', 'uuid'))
      .map(([n, u]) => `/v2/${n}/blobs/uploads/${u}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      ...words('/auth/token /auth/token/ /auth/token/docker.io /auth/token/evil.example'),
    ),
  },
  { weight: 1, arbitrary: segment.map((s) => `/auth/token/${s}`) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          ...words(`
            /v2/ /v2 //v2/ /v2// /V2/ /v2/./ /v2/../ /%76%32/ /v2%2f /.. /./v2/ /auth/ /health /health/ / // ///
            /objects/ /data/
          `),
        ),
        fc.array(segment, { maxLength: 6 }),
        fc.constantFrom('', '/', '//'),
      )
      .map(([p, s, t]) => `${p}${s.join('/')}${t}`),
  },
);

const host: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'evil.example',
    'evil.example:443',
    '127.0.0.1',
    'localhost',
    '[::1]',
    '169.254.169.254',
    'docker.io',
    'quay.io',
    '',
    ' ',
    'a'.repeat(300),
    'evil.example/path',
    'user@evil.example',
    '127.0.0.1:1, evil.example',
  ),
  fc.domain(),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
);

const mediaTypes = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  '*/*',
  'application/json',
  'text/html;q=0.1',
  ';;;',
  ',',
];
const accept: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.array(fc.constantFrom(...mediaTypes), { maxLength: 8 }).map((a) => a.join(', ')),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1000, max: 20_000 })
      .map((n) => Array.from({ length: n }, (_, i) => mediaTypes[i % mediaTypes.length]).join(', ')),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 200 }) },
);

const range: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    'bytes= 0-1',
    ...words(`
      bytes=0- bytes=-1 bytes=0-0 bytes=1-0 bytes=99999999999999999999- bytes=-0 bytes=0-1,2-3 bytes=abc
      items=0-1 bytes=-99999999999999999999 bytes=0-9007199254740993 bytes= bytes=--1 bytes=1e3- bytes=0x10-
    `),
  ),
  fc.tuple(fc.integer(), fc.integer()).map(([a, b]) => `bytes=${a}-${b}`),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
);

const jwtHeaders = [
  { alg: 'none' },
  { alg: 'ES256' },
  { alg: 'ES256', typ: 'JWT' },
  { alg: 'HS256' },
  { alg: 'RS256' },
  { alg: 'ES256', kid: '../../../../etc/passwd' },
  { alg: 'ES256', jku: 'http://127.0.0.1:1/jwks' },
  { alg: 'ES256', x5u: 'http://169.254.169.254/latest/meta-data' },
  { alg: 'ES256', crit: ['exp'] },
  { alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' } },
];
const jwtLike: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(...jwtHeaders).map((h) => JSON.stringify(h)),
      fc.json(),
    ),
    fc.oneof(
      fc.json(),
      fc
        .record({
          iss: fc.constantFrom('docxy', 'x'),
          aud: fc.constantFrom('docxy', 'registry.docker.io'),
          sub: fc.string({ maxLength: 8 }),
          exp: fc.integer({ min: 0, max: 2 ** 33 }),
          upstream: fc.constantFrom('docker.io', 'quay.io', ''),
          access: fc.constant([{ type: 'repository', name: 'tiny', actions: ['pull', 'push', '*'] }]),
        })
        .map((p) => JSON.stringify(p)),
    ),
    fc.string({ unit: 'binary-ascii', maxLength: 90 }),
  )
  .map(([h, p, s]) => `${b64url(h)}.${b64url(p)}.${b64url(s)}`);

const authorization: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: jwtLike.map((t) => `Bearer ${t}`) },
  // Picked when generating (after `before` made them).
  {
    weight: 3,
    arbitrary: fc.nat({ max: 999 }).map((i) => `Bearer ${forgedTokens[i % forgedTokens.length] ?? ''}`),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 120 }).map((s) => `Bearer ${s}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => `Bearer docxy.${s}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'Bearer',
      'Bearer ',
      'bearer x',
      'BEARER a.b.c',
      'Basic',
      'Basic =',
      'Basic !!!',
      'Digest x',
      'Negotiate',
      '',
    ),
  },
  { weight: 1, arbitrary: fc.base64String({ maxLength: 40 }).map((s) => `Basic ${s}`) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 60 }) },
);

const headersArb = fc.record(
  {
    host,
    'x-forwarded-host': host,
    'x-forwarded-proto': fc.constantFrom('https', 'http', 'gopher', ''),
    forwarded: host.map((h) => `host=${h};proto=https`),
    accept,
    range,
    'if-range': fc.oneof(
      fc.constant(`"${TINY.digest}"`),
      fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
    ),
    'if-none-match': fc.oneof(
      fc.constantFrom('*', `"${TINY.digest}"`, 'W/"x"'),
      fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
    ),
    authorization,
    'content-type': fc.constantFrom(
      'application/x-www-form-urlencoded',
      'application/json',
      'text/plain',
      'multipart/form-data; boundary=x',
      '',
    ),
    'x-forwarded-for': fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ unit: 'grapheme-ascii', maxLength: 20 })),
  },
  { requiredKeys: [] },
);

const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'HEAD') },
  { weight: 2, arbitrary: fc.constantFrom(...METHODS.filter((m) => m !== 'CONNECT')) },
);

/** POST bodies for /auth/token: Docker's OAuth2 form, odd forms, and oversized ones (rare: bcrypt). */
const body: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 30, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.string({ maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc
      .record({
        grant_type: fc.constantFrom('password', 'refresh_token', 'client_credentials', ''),
        username: fc.constantFrom('nobody', '', 'a:b', '__proto__'),
        password: fc.string({ maxLength: 10 }),
        refresh_token: fc.string({ maxLength: 20 }),
        scope: fc.constantFrom('repository:tiny:pull', 'repository:../x:pull', ''),
        service: fc.constantFrom('docxy', 'x'),
      })
      .map((r) => new URLSearchParams(r).toString()),
  },
  { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 80_000 }).map((n) => `scope=${'a'.repeat(n)}`) },
);

const hostileRequest = fc.record({ method, path, query, headers: headersArb, body });

// ---------------------------------------------------------------------------------------------
// Arbitraries: valid-looking requests

const knownNames = ['tiny', 'library/tiny', 'someuser/app', 'multi', 'library/ociindex'];
const knownBlobs = [
  TINY.configDigest,
  ...TINY.layers.map((l) => l.digest),
  SOMEUSER_APP.configDigest,
  ...(MULTI.children ?? []).flatMap((c) => [c.configDigest, ...c.layers.map((l) => l.digest)]),
];
const knownManifests = [TINY.digest, SOMEUSER_APP.digest, MULTI.digest, OCI_INDEX.digest];

const validName = fc.oneof(
  fc.constantFrom(...knownNames),
  fc.stringMatching(/^[a-z0-9]{1,10}(?:(?:\.|_|__|-+)[a-z0-9]{1,5})?(?:\/[a-z0-9]{1,10}){0,2}$/),
);
const validTag = fc.oneof(
  fc.constantFrom('1', '2', 'latest'),
  fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,30}$/),
);
const validDigest = (known: string[]): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom(...known),
    hex(64, 64).map((h) => `sha256:${h}`),
  );

const validRequest = fc.oneof(
  fc.record({
    method: fc.constantFrom('GET', 'HEAD'),
    url: fc
      .tuple(validName, fc.oneof(validTag, validDigest(knownManifests)))
      .map(([n, r]) => `/v2/${n}/manifests/${r}`),
    accept: fc.subarray(mediaTypes.slice(0, 5)).map((a) => a.join(', ')),
    range: fc.constant(''),
  }),
  fc.record({
    method: fc.constantFrom('GET', 'HEAD'),
    url: fc.tuple(validName, validDigest(knownBlobs)).map(([n, d]) => `/v2/${n}/blobs/${d}`),
    accept: fc.constant(''),
    range: fc.constantFrom('', '', '', 'bytes=0-10', 'bytes=5-', 'bytes=-3', 'bytes=999999-'),
  }),
  fc.record({
    method: fc.constant('GET'),
    url: fc
      .tuple(validName, fc.option(fc.integer({ min: -2, max: 5 })), fc.option(validTag))
      .map(([n, k, l]) => {
        const q = new URLSearchParams();
        if (k !== null) q.set('n', String(k));
        if (l !== null) q.set('last', l);
        const s = q.toString();
        return `/v2/${n}/tags/list${s === '' ? '' : `?${s}`}`;
      }),
    accept: fc.constant(''),
    range: fc.constant(''),
  }),
  fc.record({
    method: fc.constant('GET'),
    url: fc.tuple(validName, validDigest(knownManifests)).map(([n, d]) => `/v2/${n}/referrers/${d}`),
    accept: fc.constant(''),
    range: fc.constant(''),
  }),
  fc.record({
    method: fc.constant('GET'),
    url: fc.constant('/v2/'),
    accept: fc.constant(''),
    range: fc.constant(''),
  }),
);

// ---------------------------------------------------------------------------------------------

interface Injected {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  rawPayload: Buffer;
}

function firstError(res: Injected): { code?: unknown } | undefined {
  try {
    const json = JSON.parse(res.rawPayload.toString('utf8')) as { errors?: { code?: unknown }[] };
    return Array.isArray(json.errors) ? json.errors[0] : undefined;
  } catch {
    return undefined;
  }
}

/** `<status> <the body's own code field, or its first characters>`, to group odd answers. */
function answerKind(res: Injected): string {
  const text = res.rawPayload.toString('utf8');
  let code: unknown;
  try {
    code = (JSON.parse(text) as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  return `${res.statusCode} ${typeof code === 'string' ? code : text.slice(0, 40)}`;
}

function headerText(res: Injected, name: string): string | undefined {
  const v = res.headers[name];
  return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : String(v);
}

describe('fuzz', () => {
  it(`hostile requests (${HOSTILE_RUNS} runs) to an authenticated docxy: no 5xx, no content, realm from the public URL, no files`, async (t) => {
    const d = need(authed, 'the authenticated docxy');
    const realm = `${d.publicUrl}/auth/token`;
    const watched = [
      { dir: '/tmp', recursive: false },
      { dir: REPO_DIR, recursive: false },
      { dir: join(REPO_DIR, 'test'), recursive: false },
      { dir: '/', recursive: false },
    ];
    const shared = watched.map((w) => snapshot(w.dir, w.recursive));
    const ours = snapshot(fuzzRoot.path, true, dataDir);
    /** Every decoded path segment sent: a file named like one of them would be our doing. */
    const fragments = new Set<string>();
    const statuses = new Map<number, number>();
    let runs = 0;
    let bcryptish = 0;
    const t0 = Date.now();

    await fc.assert(
      fc.asyncProperty(hostileRequest, async (req) => {
        runs++;
        const url = `${req.path}${req.query}`;
        for (const s of url.split(/[/?&=]/)) if (s.length >= 3) fragments.add(basename(decoded(s)));
        const headers: Record<string, string> = { ...req.headers };
        if (
          req.path.startsWith('/auth/token') &&
          (headers.authorization?.startsWith('Basic ') === true || req.body !== undefined)
        )
          bcryptish++;
        const res: Injected = await d.app.server.inject({
          method: req.method as 'GET',
          url,
          headers,
          ...(req.body === undefined ? {} : { payload: req.body }),
        });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        const what = `${req.method} ${url.slice(0, 200)} -> ${res.statusCode} ${res.rawPayload.toString('utf8').slice(0, 200)}`;
        assert.ok(res.statusCode < 500, `no 5xx: ${what}`);
        const pathOnly = url.split('?')[0] ?? '';
        if (res.statusCode >= 200 && res.statusCode < 300)
          assert.ok(
            pathOnly.startsWith('/auth/token') || pathOnly === '/health',
            `no content without a token: ${what}`,
          );
        else if (req.method !== 'HEAD' && res.statusCode !== 304) {
          // Recorded, not thrown: the runs go on, and the next test reports every kind seen.
          const json = /^application\/json/.test(headerText(res, 'content-type') ?? '');
          if (!json || typeof firstError(res)?.code !== 'string')
            nonOci.push({ kind: answerKind(res), what });
        }
        const challenge = headerText(res, 'www-authenticate');
        if (challenge !== undefined) {
          const m = /realm="([^"]*)"/.exec(challenge);
          assert.ok(
            m?.[1] === realm || m?.[1]?.startsWith(`${realm}/`) === true,
            `realm from the public URL: ${challenge}`,
          );
        }
        assert.equal(headerText(res, 'location'), undefined, `no Location: ${what}`);
      }),
      {
        numRuns: HOSTILE_RUNS,
        seed: 0x5ec_f022,
        plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS, { failOnInterrupt: true })],
        includeErrorInReport: true,
      },
    );

    hostileRunsDone = runs;
    t.diagnostic(`${runs} runs in ${Date.now() - t0} ms (${bcryptish} token requests with credentials)`);
    t.diagnostic(
      `statuses: ${[...statuses]
        .sort((a, b) => a[0] - b[0])
        .map(([s, n]) => `${s}x${n}`)
        .join(' ')}`,
    );
    assert.ok(runs >= HOSTILE_RUNS, `${runs} runs`);

    // Nothing was stored (no request was served content), and nothing appeared outside the data dir.
    assert.deepEqual(filesUnder(join(dataDir, 'objects')), [], 'nothing cached under data/objects');
    assert.deepEqual(
      changed(ours, snapshot(fuzzRoot.path, true, dataDir)),
      [],
      'nothing new in the fuzz root',
    );
    const suspicious = watched.flatMap((w, i) =>
      changed(shared[i] ?? new Map<string, number>(), snapshot(w.dir, w.recursive)).filter((p) =>
        fragments.has(basename(p)),
      ),
    );
    assert.deepEqual(
      suspicious,
      [],
      'no file named after a request appeared or changed in /tmp, /, or the repository',
    );
  });

  it('every non-2xx answer of the hostile runs is an OCI JSON error (errors[0].code a string)', (t) => {
    assert.ok(hostileRunsDone >= HOSTILE_RUNS, 'the hostile runs ran');
    // One example per kind of answer (status and the body's own error code, if any).
    const kinds = new Map<string, { n: number; example: string }>();
    for (const { kind, what } of nonOci) {
      const k = kinds.get(kind);
      if (k === undefined) kinds.set(kind, { n: 1, example: what });
      else k.n++;
    }
    for (const [kind, { n }] of kinds) t.diagnostic(`${n} x ${kind}`);
    assert.deepEqual(
      [...kinds].map(([kind, { n, example }]) => `${n} x ${kind}, e.g. ${example}`),
      [],
      `${nonOci.length} answers were no OCI JSON error`,
    );
  });

  it(`valid-looking requests (${VALID_RUNS} runs) to the open mirror with the hub up: no 5xx, verified bodies`, async (t) => {
    const d = need(open, 'the open docxy');
    const statuses = new Map<number, number>();
    let runs = 0;
    const t0 = Date.now();
    await fc.assert(
      fc.asyncProperty(validRequest, async (req) => {
        runs++;
        const headers: Record<string, string> = {};
        if (req.accept !== '') headers.accept = req.accept;
        if (req.range !== '') headers.range = req.range;
        const res: Injected = await d.app.server.inject({
          method: req.method as 'GET',
          url: req.url,
          headers,
        });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        const what = `${req.method} ${req.url} ${JSON.stringify(headers)} -> ${res.statusCode} ${res.rawPayload.toString('utf8').slice(0, 300)}`;
        assert.ok(res.statusCode < 500, `no 5xx with the upstream up: ${what}`);
        // Distribution 2.8 has no referrers API: its plain-text 404 is relayed as it is.
        const relayedReferrers = req.url.includes('/referrers/') && res.statusCode === 404;
        if (
          (res.statusCode < 200 || res.statusCode >= 300) &&
          req.method !== 'HEAD' &&
          res.statusCode !== 304 &&
          !relayedReferrers
        ) {
          assert.equal(typeof firstError(res)?.code, 'string', `OCI error body: ${what}`);
        }
        if (
          res.statusCode === 200 &&
          req.method === 'GET' &&
          !req.url.includes('/tags/') &&
          !req.url.includes('/referrers/') &&
          req.url !== '/v2/'
        ) {
          const digest = `sha256:${createHash('sha256').update(res.rawPayload).digest('hex')}`;
          const named = req.url.includes('/blobs/')
            ? req.url.slice(req.url.lastIndexOf('/') + 1)
            : headerText(res, 'docker-content-digest');
          assert.equal(digest, named, `the body is the bytes its digest names: ${what}`);
        }
      }),
      {
        numRuns: VALID_RUNS,
        seed: 0xd0c_5e11,
        plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS, { failOnInterrupt: true })],
        includeErrorInReport: true,
      },
    );
    t.diagnostic(`${runs} runs in ${Date.now() - t0} ms`);
    t.diagnostic(
      `statuses: ${[...statuses]
        .sort((a, b) => a[0] - b[0])
        .map(([s, n]) => `${s}x${n}`)
        .join(' ')}`,
    );
    assert.ok(runs >= VALID_RUNS, `${runs} runs`);
  });
});
