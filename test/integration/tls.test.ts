/**
 * Docxy serving HTTPS itself (`tls.cert` / `tls.key`), with a throw-away test CA (test-ca.ts):
 *
 *   docker pull     -- dockerd 20.10 trusting the CA through `certs.d/<host:port>/ca.crt` pulls
 *                      library/tiny:1 from the fake hub through Docxy, once per key form: RSA
 *                      PKCS#1, EC P-256 SEC1 and PKCS#8. One dockerd for the file; its certs.d is
 *                      a directory of this test bind-mounted into the daemon's sandbox.
 *   plain listener  -- `http_listen` answers 308 to the same path on `public_url` whatever the Host
 *                      header says, /health with 200, and an ACME challenge path itself (404 for an
 *                      unknown token, never a redirect)
 *   HTTP/2          -- curl --http2 negotiates h2 (ALPN)
 *   start-up errors -- a key that does not match the certificate stops `docxy serve` with a
 *                      non-zero exit and a message naming both files
 *   expiry warnings -- an expired certificate and one expiring in three days are served, with a
 *                      warning in the log
 *
 * Every Docxy here runs in this process unless the test is about the process itself; everything
 * listens on 127.0.0.1 only, and everything started is stopped in after hooks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';

import { need } from '../helpers/client-steps.ts';
import { runCommand } from '../helpers/clients/common.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { TINY, seedImages, type ImageDescriptor } from '../helpers/images.ts';
import { freePort } from '../helpers/process.ts';
import {
  KEY_PEM_HEADER,
  createTestCa,
  type KeyType,
  type ServerCert,
  type TestCa,
} from '../helpers/test-ca.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { peerCertificate } from '../helpers/tls-client.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const ENTRY = join(REPO_ROOT, 'test', 'helpers', 'docxy-entry.ts');

let ca: TestCa | undefined;
const files = makeTmpDir('tls-files');

const theCa = (): TestCa => need(ca, 'the test CA');

before(async () => {
  ca = await createTestCa();
});

after(() => {
  ca?.remove();
  files.remove();
});

/** An in-process Docxy serving HTTPS with `cert`, its plain listener on a free loopback port. */
async function startTlsDocxy(
  t: TestContext,
  cert: ServerCert,
  extra: Record<string, unknown> = {},
): Promise<{ docxy: TestDocxy; httpPort: number }> {
  const httpPort = await freePort();
  const docxy = await startDocxy({
    tls: { cert: cert.certFile, key: cert.keyFile },
    http_listen: `127.0.0.1:${httpPort}`,
    ...extra,
  });
  t.after(() => docxy.stop());
  return { docxy, httpPort };
}

/** Log lines at warn (40) or above. */
function warnings(docxy: TestDocxy): Record<string, unknown>[] {
  return docxy.logs().filter((l) => typeof l.level === 'number' && l.level >= 40);
}

// ---------------------------------------------------------------------------------------------

describe('docker pull over HTTPS, with the test CA in certs.d', () => {
  let hub: FakeHub | undefined;
  let dockerd: Dockerd | undefined;
  let tiny: ImageDescriptor | undefined;
  const certsDir = makeTmpDir('tls-certs-d');

  before(async () => {
    hub = await startFakeHub();
    tiny = (await seedImages(hub, ['tiny'])).tiny;
    // dockerd takes any registry whose host resolves into 127.0.0.0/8 as insecure: it would skip
    // certificate verification (and certs.d) altogether. In its sandbox `localhost` is ::1 only,
    // so `localhost:PORT` is verified against certs.d/localhost:PORT/ca.crt.
    dockerd = await startDockerd({ certsDir: certsDir.path, hosts: '::1 localhost\n' });
  });

  after(async () => {
    const results = await Promise.allSettled([dockerd?.stop(), hub?.stop()]);
    certsDir.remove();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  });

  /**
   * Docxy on [::1]:PORT (see above) with `public_url` https://localhost:PORT, the name dockerd
   * uses, so the token realm Docxy hands out is on the same verified name.
   */
  async function startV6Docxy(t: TestContext, cert: ServerCert): Promise<{ docxy: TestDocxy; host: string }> {
    const port = await freePort();
    const { docxy } = await startTlsDocxy(t, cert, {
      listen: `[::1]:${port}`,
      public_url: `https://localhost:${port}`,
      upstream: { url: need(hub, 'the hub').registryUrl },
    });
    return { docxy, host: `localhost:${port}` };
  }

  function trustCa(host: string): void {
    mkdirSync(join(certsDir.path, host), { recursive: true });
    writeFileSync(join(certsDir.path, host, 'ca.crt'), theCa().certPem);
  }

  it('is refused by dockerd while certs.d has no CA for the host (the pulls below verify TLS)', async (t) => {
    const cert = await theCa().issue({ name: 'pull-untrusted' });
    const { host } = await startV6Docxy(t, cert);
    const res = await need(dockerd, 'dockerd').pull(`${host}/library/tiny:1`);
    assert.notEqual(res.code, 0, 'the pull must fail');
    assert.match(res.stderr, /x509: certificate signed by unknown authority/);
  });

  const cases: readonly { keyType: KeyType; what: string }[] = [
    { keyType: 'rsa-pkcs1', what: 'an RSA key (PKCS#1)' },
    { keyType: 'ec-p256-sec1', what: 'a P-256 EC key (SEC1)' },
    { keyType: 'rsa-pkcs8', what: 'a PKCS#8 key' },
  ];
  for (const { keyType, what } of cases) {
    it(`pulls library/tiny:1 through Docxy serving ${what}`, async (t) => {
      const cert = await theCa().issue({ name: `pull-${keyType}`, keyType });
      assert.ok(cert.keyPem.startsWith(KEY_PEM_HEADER[keyType]), `the key file is ${keyType}`);
      const { docxy, host } = await startV6Docxy(t, cert);
      trustCa(host);
      const d = need(dockerd, 'dockerd');
      t.after(async () => {
        await d.removeImage(`${host}/library/tiny:1`);
      });

      const peer = await peerCertificate({ host: '::1', port: docxy.port, ca: theCa().certPem });
      assert.equal(peer.serial, cert.serial, 'Docxy presents the configured certificate');
      assert.ok(peer.authorized, `the chain verifies: ${String(peer.authorizationError)}`);

      const t0 = Date.now();
      const res = await d.pull(`${host}/library/tiny:1`);
      t.diagnostic(`docker pull over HTTPS (${keyType}): ${Date.now() - t0} ms`);
      assert.equal(res.code, 0, `docker pull failed:\n${res.stdout}\n${res.stderr}\n${d.log().slice(-3000)}`);
      const image = need(tiny, 'library/tiny:1');
      assert.equal(await d.imageId(`${host}/library/tiny:1`), image.configDigest);
      assert.deepEqual(await d.repoDigests(`${host}/library/tiny:1`), [
        `${host}/library/tiny@${image.digest}`,
      ]);

      const served = docxy
        .requestLogs()
        .filter((l) => l.status === 200)
        .map((l) => `${String(l.method)} ${String(l.path)}`);
      const layer = TINY.layers[0]?.digest ?? '';
      assert.ok(
        served.includes(`GET /v2/library/tiny/blobs/${layer}`),
        `the layer came through Docxy over TLS:\n${served.join('\n')}`,
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------

/** A plain HTTP request with a Host header of our choosing (fetch and undici would not send it). */
function plainGet(
  port: number,
  path: string,
  host: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.once('error', reject);
    req.end();
  });
}

describe('the plain HTTP listener beside HTTPS', () => {
  let docxy: TestDocxy | undefined;
  let httpPort = 0;
  const publicUrl = 'https://mirror.docxy.test:8443';

  before(async () => {
    const cert = await theCa().issue({ name: 'redirect' });
    httpPort = await freePort();
    docxy = await startDocxy({
      tls: { cert: cert.certFile, key: cert.keyFile },
      http_listen: `127.0.0.1:${httpPort}`,
      public_url: publicUrl,
    });
  });

  after(async () => {
    await docxy?.stop();
  });

  it('redirects with 308 to the same path and query on public_url, ignoring the Host header', async () => {
    const res = await plainGet(httpPort, '/v2/library/tiny/manifests/1?x=1', 'evil.example');
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, `${publicUrl}/v2/library/tiny/manifests/1?x=1`);
    assert.doesNotMatch(JSON.stringify(res.headers), /evil\.example/);
  });

  it('never turns a scheme-relative request target into another host', async () => {
    const res = await plainGet(httpPort, '//evil.example/v2/', 'evil.example');
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, `${publicUrl}/`);
  });

  it('answers /health itself with 200', async () => {
    const res = await plainGet(httpPort, '/health', 'evil.example');
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { status?: unknown }).status, 'ok');
  });

  it('answers /health/ready itself with the readiness JSON, never redirecting it', async () => {
    const res = await plainGet(httpPort, '/health/ready', 'evil.example');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers.location, undefined);
    const body = JSON.parse(res.body) as { status?: unknown; storage?: { writable?: unknown } };
    assert.equal(body.status, 'ready');
    assert.equal(body.storage?.writable, true);
  });

  it('answers ACME challenge paths itself (404 for a token it does not hold), never redirecting them', async () => {
    const res = await plainGet(httpPort, '/.well-known/acme-challenge/unknown-token_1', 'evil.example');
    assert.equal(res.status, 404);
    assert.equal(res.headers.location, undefined);
  });
});

// ---------------------------------------------------------------------------------------------

describe('HTTPS details', () => {
  /** `curl <flag>` against /health: the HTTP version it spoke and the status, e.g. `2 200`. */
  async function curlHealth(t: TestContext, name: string, flag: string): Promise<string> {
    const cert = await theCa().issue({ name });
    const { docxy } = await startTlsDocxy(t, cert);
    const res = await runCommand('curl', [
      '-sS',
      flag,
      '--cacert',
      theCa().certFile,
      '-o',
      '/dev/null',
      '-w',
      '%{http_version} %{http_code}',
      `https://127.0.0.1:${docxy.port}/health`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    return res.stdout;
  }

  it('negotiates HTTP/2 with curl --http2', async (t) => {
    assert.equal(await curlHealth(t, 'h2', '--http2'), '2 200');
  });

  it('still speaks HTTP/1.1 to a client that offers only that', async (t) => {
    assert.equal(await curlHealth(t, 'h1', '--http1.1'), '1.1 200');
  });

  it('refuses to start when the key does not match the certificate, naming both files', async () => {
    const cert = await theCa().issue({ name: 'mismatch' });
    const otherKey = await theCa().newKey('mismatch-other');
    const configFile = join(files.path, 'mismatch.yaml');
    const dataDir = join(files.path, 'mismatch-data');
    writeFileSync(
      configFile,
      stringify({
        listen: `127.0.0.1:${await freePort()}`,
        http_listen: `127.0.0.1:${await freePort()}`,
        data: dataDir,
        tls: { cert: cert.certFile, key: otherKey },
      }),
    );
    const res = await runCommand(
      process.execPath,
      ['--import', 'tsx', ENTRY, 'serve', '--config', configFile],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        timeoutMs: 60_000,
      },
    );
    assert.notEqual(res.code, 0, `docxy serve exited 0:\n${res.stdout}\n${res.stderr}`);
    assert.ok(res.stderr.includes(cert.certFile), `stderr names the certificate file:\n${res.stderr}`);
    assert.ok(res.stderr.includes(otherKey), `stderr names the key file:\n${res.stderr}`);
    assert.match(res.stderr, /does not match/);
  });

  it('serves an expired certificate with a warning in the log', async (t) => {
    const cert = await theCa().issue({
      name: 'expired',
      notBefore: new Date(Date.now() - 40 * 86_400_000),
      notAfter: new Date(Date.now() - 2 * 86_400_000),
    });
    const { docxy } = await startTlsDocxy(t, cert);
    const warned = warnings(docxy).filter((l) => /expired/i.test(String(l.msg)));
    assert.equal(warned.length, 1, `one expiry warning:\n${docxy.logText()}`);
    assert.equal(warned[0]?.serial, cert.serial);
    const peer = await peerCertificate({ port: docxy.port, ca: theCa().certPem });
    assert.equal(peer.serial, cert.serial);
    assert.equal(peer.authorized, false, 'a client rejects it, which is why the warning matters');
    assert.equal(peer.authorizationError, 'CERT_HAS_EXPIRED');
  });

  it('warns about a certificate that expires within 14 days', async (t) => {
    const cert = await theCa().issue({
      name: 'near-expiry',
      notAfter: new Date(Date.now() + 3 * 86_400_000),
    });
    const { docxy } = await startTlsDocxy(t, cert);
    const warned = warnings(docxy).filter((l) => /expires soon/i.test(String(l.msg)));
    assert.equal(warned.length, 1, `one expiry warning:\n${docxy.logText()}`);
    assert.equal(warned[0]?.serial, cert.serial);
    assert.equal(warned[0].daysLeft, 2, 'days left, rounded down');
  });

  it('does not warn about a certificate valid for another 30 days', async (t) => {
    const cert = await theCa().issue({ name: 'fresh' });
    const { docxy } = await startTlsDocxy(t, cert);
    assert.deepEqual(
      warnings(docxy).filter((l) => /expire/i.test(String(l.msg))),
      [],
      'no expiry warning for a fresh certificate',
    );
  });
});
