/**
 * Docxy as its own process (from source), serving HTTPS with test/fixtures/deploy/standalone-files.yaml
 * (only addresses and paths set through DOCXY_* variables), while a 200 MB blob download is running:
 *
 *   certificate swap -- the certificate and key are replaced by rename (the way certbot or a
 *                       Kubernetes secret swap symlinks); the running download completes with the
 *                       right digest on its old connection, and a new connection sees the new serial
 *   SIGHUP           -- files changed where Docxy's watcher cannot see it are picked up on SIGHUP
 *   bad replacement  -- a certificate with a key that does not match is refused (logged, naming the
 *                       files) and the certificate in use stays
 *   SIGTERM          -- a cold 200 MB download that is running finishes with the right digest,
 *                       new connections are refused at once, and the process then exits 0 without
 *                       waiting for the shutdown bound
 *
 * The download is read by the test at its own pace (slow-download.ts): part of it, then nothing
 * while the test changes certificates or signals the process, then the rest. Everything listens on
 * 127.0.0.1; the processes are stopped by PID in after hooks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import { need } from '../helpers/client-steps.ts';
import { spawnDocxy, type DocxyProcess } from '../helpers/docxy-process.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { bigImage, pushImage, type ImageDescriptor } from '../helpers/images.ts';
import { freePort, waitFor } from '../helpers/process.ts';
import { startSlowDownload, type SlowDownload } from '../helpers/slow-download.ts';
import { createTestCa, type ServerCert, type TestCa } from '../helpers/test-ca.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { httpsPullToken, peerCertificate } from '../helpers/tls-client.ts';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'deploy', 'standalone-files.yaml');
/** How much of the layer the test reads before it stops reading and changes something. */
const PART = 16 * 1024 * 1024;

let hub: FakeHub | undefined;
let big: ImageDescriptor | undefined;
let ca: TestCa | undefined;
const dir = makeTmpDir('tls-reload');

const theCa = (): TestCa => need(ca, 'the test CA');
const theBig = (): ImageDescriptor => need(big, 'library/big:1');
const bigLayer = (): { digest: string; size: number } => need(theBig().layers[0], "library/big:1's layer");

before(async () => {
  const t0 = Date.now();
  [hub, ca] = await Promise.all([startFakeHub(), createTestCa()]);
  big = await pushImage(hub, await bigImage());
  process.stdout.write(`# fake hub with library/big:1 and a test CA in ${Date.now() - t0} ms\n`);
});

after(async () => {
  await hub?.stop();
  ca?.remove();
  dir.remove();
});

/** Where the last `spawnTlsDocxy` put its plain HTTP listener. */
let lastHttpPort = 0;

/** Docxy from the fixture, its certificate at `certPath`/`keyPath`, with a data dir of its own. */
async function spawnTlsDocxy(name: string, certPath: string, keyPath: string): Promise<DocxyProcess> {
  const port = await freePort();
  lastHttpPort = await freePort();
  return spawnDocxy({
    configFile: FIXTURE,
    logFile: join(dir.path, `${name}.log`),
    port,
    env: {
      DOCXY_CERT_PATH: certPath,
      DOCXY_KEY_PATH: keyPath,
      DOCXY_HTTP_LISTEN: `127.0.0.1:${lastHttpPort}`,
      DOCXY_PUBLIC_URL: `https://localhost:${port}`,
      DOCXY_DATA: join(dir.path, `${name}-data`),
      DOCXY_UPSTREAM: need(hub, 'the hub').registryUrl,
    },
  });
}

/** Starts reading library/big:1's layer from Docxy over HTTPS (a pull token first, as clients do). */
async function downloadBigLayer(docxy: DocxyProcess, keepAlive = false): Promise<SlowDownload> {
  const base = `https://localhost:${docxy.port}`;
  const token = await httpsPullToken(base, theCa().certPem, need(hub, 'the hub').service, 'library/big');
  const dl = await startSlowDownload(`${base}/v2/library/big/blobs/${bigLayer().digest}`, {
    ca: theCa().certPem,
    headers: { authorization: `Bearer ${token}` },
    keepAlive,
  });
  assert.equal(dl.status, 200);
  return dl;
}

/** Log lines after the first `mark` ones. */
function logsSince(docxy: DocxyProcess, mark: number): Record<string, unknown>[] {
  return docxy.logs().slice(mark);
}

/** Waits for a log line after `mark` that `match` accepts. */
async function waitForLog(
  docxy: DocxyProcess,
  mark: number,
  what: string,
  match: (l: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await waitFor(
    what,
    () => {
      found = logsSince(docxy, mark).find(match);
      return found !== undefined;
    },
    15_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; log:\n${docxy.proc.log().slice(-4000)}`);
  });
  if (found === undefined) throw new Error(what);
  return found;
}

const inUse = (serial: string) => (l: Record<string, unknown>) =>
  l.msg === 'TLS certificate in use' && l.why === 'reload' && l.serial === serial;

async function servedSerial(docxy: DocxyProcess): Promise<string> {
  const peer = await peerCertificate({ port: docxy.port, ca: theCa().certPem });
  assert.ok(peer.authorized, `a new connection verifies: ${String(peer.authorizationError)}`);
  return peer.serial;
}

// ---------------------------------------------------------------------------------------------

describe('replacing the certificate of a running Docxy', () => {
  let docxy: DocxyProcess | undefined;
  const live = join(dir.path, 'live');
  const store = join(dir.path, 'store');
  /** The certificate a new connection should see now. */
  let current: ServerCert | undefined;
  let n = 0;

  /** Points live/cert.pem and live/key.pem at new files in store/ by renaming fresh symlinks over them. */
  function swapLinks(certFile: string, keyFile: string): void {
    n++;
    symlinkSync(certFile, join(live, `.cert-${n}`));
    symlinkSync(keyFile, join(live, `.key-${n}`));
    renameSync(join(live, `.key-${n}`), join(live, 'key.pem'));
    renameSync(join(live, `.cert-${n}`), join(live, 'cert.pem'));
  }

  before(async () => {
    mkdirSync(live);
    mkdirSync(store);
    current = await theCa().issue({ name: 'reload-a' });
    symlinkSync(current.certFile, join(live, 'cert.pem'));
    symlinkSync(current.keyFile, join(live, 'key.pem'));
    docxy = await spawnTlsDocxy('reload', join(live, 'cert.pem'), join(live, 'key.pem'));
  });

  after(async () => {
    await docxy?.stop();
  });

  it('keeps a running 200 MB download going across a swap by rename; new connections get the new certificate', async (t) => {
    const d = need(docxy, 'docxy');
    const old = need(current, 'the first certificate');
    assert.equal(await servedSerial(d), old.serial);
    const t0 = Date.now();
    const dl = await downloadBigLayer(d);
    t.after(() => {
      dl.destroy();
    });
    assert.equal(dl.serial, old.serial, 'the download runs on a connection with the first certificate');
    await dl.readUntil(PART);

    const next = await theCa().issue({ name: 'reload-b' });
    const mark = d.logs().length;
    swapLinks(next.certFile, next.keyFile);
    await waitForLog(d, mark, `the reload to serial ${next.serial}`, inUse(next.serial));
    assert.equal(await servedSerial(d), next.serial, 'a new connection sees the new certificate');
    current = next;
    assert.ok(dl.received() < bigLayer().size, 'the download was still running during the swap');

    const done = await dl.finish();
    t.diagnostic(`200 MB download across the swap: ${Date.now() - t0} ms`);
    assert.equal(done.bytes, bigLayer().size);
    assert.equal(done.digest, bigLayer().digest);
  });

  it('reloads on SIGHUP', async () => {
    const d = need(docxy, 'docxy');
    const before = need(current, 'the certificate in use');
    // New content behind the current symlinks, written in store/, a folder Docxy does not watch.
    const next = await theCa().issue({ name: 'reload-c' });
    writeFileSync(join(store, 'c.tmp'), next.certPem);
    renameSync(join(store, 'c.tmp'), before.certFile);
    writeFileSync(join(store, 'c.tmp'), next.keyPem);
    renameSync(join(store, 'c.tmp'), before.keyFile);
    await sleep(1000);
    assert.equal(await servedSerial(d), before.serial, 'without a signal nothing changed');

    const mark = d.logs().length;
    process.kill(d.proc.pid, 'SIGHUP');
    await waitForLog(d, mark, `the reload to serial ${next.serial}`, inUse(next.serial));
    assert.equal(await servedSerial(d), next.serial);
    current = { ...next, certFile: before.certFile, keyFile: before.keyFile };
  });

  it('refuses a replacement whose key does not match, keeping the certificate in use', async () => {
    const d = need(docxy, 'docxy');
    const inUseNow = need(current, 'the certificate in use');
    const next = await theCa().issue({ name: 'reload-d' });
    const wrongKey = await theCa().newKey('reload-d-wrong');
    const mark = d.logs().length;
    swapLinks(next.certFile, wrongKey);
    const failure = await waitForLog(
      d,
      mark,
      'the refused reload',
      (l) => l.msg === 'TLS reload failed; keeping the certificate in use',
    );
    assert.equal(failure.level, 50, 'logged as an error');
    assert.match(String(failure.err), /does not match/);
    assert.ok(
      String(failure.err).includes(join(live, 'key.pem')),
      `names the key file: ${String(failure.err)}`,
    );
    assert.ok(
      String(failure.err).includes(join(live, 'cert.pem')),
      `names the cert file: ${String(failure.err)}`,
    );
    assert.equal(await servedSerial(d), inUseNow.serial, 'the old certificate keeps serving');

    // SIGHUP reads the same bad pair and refuses it the same way.
    const mark2 = d.logs().length;
    process.kill(d.proc.pid, 'SIGHUP');
    await waitForLog(
      d,
      mark2,
      'the refused reload after SIGHUP',
      (l) => l.msg === 'TLS reload failed; keeping the certificate in use',
    );
    assert.equal(await servedSerial(d), inUseNow.serial);
    assert.equal(d.proc.child.exitCode, null, 'Docxy is still running');
  });
});

// ---------------------------------------------------------------------------------------------

/** Whether a TCP connection to 127.0.0.1:port is refused (rather than accepted). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve(true);
      else reject(err);
    });
  });
}

describe('SIGTERM during a pull', () => {
  let docxy: DocxyProcess | undefined;

  after(async () => {
    await docxy?.stop();
  });

  it('lets a running cold 200 MB download finish, refuses new connections, then exits 0', async (t) => {
    const cert = await theCa().issue({ name: 'sigterm' });
    const d = await spawnTlsDocxy('sigterm', cert.certFile, cert.keyFile);
    docxy = d;
    const httpPort = lastHttpPort;
    assert.equal(await refused(httpPort), false, 'the plain HTTP listener is up');
    // A client like docker keeps its connection open after the body: that idle connection must not
    // hold the exit back until the bound.
    const dl = await downloadBigLayer(d, true);
    t.after(() => {
      dl.destroy();
    });
    await dl.readUntil(PART);

    const mark = d.logs().length;
    const signalledAt = Date.now();
    process.kill(d.proc.pid, 'SIGTERM');
    await waitForLog(d, mark, 'the shutdown to begin', (l) => String(l.msg).startsWith('shutting down'));
    await waitFor('the HTTPS listener to close', () => refused(d.port), 5000);
    await waitFor('the plain HTTP listener to close', () => refused(httpPort), 5000);
    assert.ok(dl.received() < bigLayer().size, 'the download was still running when SIGTERM came');
    assert.equal(d.proc.child.exitCode, null, 'the process waits for the running download');

    const done = await dl.finish();
    assert.equal(done.bytes, bigLayer().size);
    assert.equal(done.digest, bigLayer().digest);
    const code = await d.proc.exited;
    const exitedAt = Date.now();
    t.diagnostic(
      `download finished ${done.endedAt - signalledAt} ms after SIGTERM; exit ${exitedAt - done.endedAt} ms after that`,
    );
    assert.equal(code, 0, `exit status:\n${d.proc.log().slice(-3000)}`);
    assert.ok(
      !d.logs().some((l) => l.msg === 'shutdown bound reached; closing what is left'),
      'it exited because the transfer ended, not because the bound ran out',
    );
  });
});
