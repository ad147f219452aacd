/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core): while a cold pull
 * of a 12 MiB blob runs through a throttled upstream, the page shows the fill's progress bar with
 * the digest `/-/api/stats` reports, its totals match the read model once the pull is done, the
 * page logs no console error, and a screenshot is saved to test-artifacts/dashboard.png.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { chromium, type Browser } from 'playwright-core';
import type { StatsSnapshot } from '../../src/dashboard/stats.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { deterministicBytes } from '../helpers/images.ts';
import { waitFor } from '../helpers/process.ts';

const blob = deterministicBytes('dashboard-blob', 12 * 1024 * 1024);
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;

/** A registry that serves one blob at about 2 MiB/s, so the fill is visible for several seconds. */
function startSlowRegistry(): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    if (req.url !== `/v2/library/big/blobs/${digest}`) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    let pos = 0;
    const step = 128 * 1024;
    const timer = setInterval(() => {
      if (pos >= blob.length || res.destroyed) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(blob.subarray(pos, pos + step));
      pos += step;
    }, 60);
    res.on('close', () => {
      clearInterval(timer);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve(server);
    }),
  );
}

let upstream: Server | undefined;
let docxy: TestDocxy | undefined;
let browser: Browser | undefined;

before(async () => {
  upstream = await startSlowRegistry();
  const port = (upstream.address() as AddressInfo).port;
  docxy = await startDocxy({ upstream: { url: `http://127.0.0.1:${port}` } });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});
after(async () => {
  await browser?.close();
  await docxy?.stop();
  const u = upstream;
  if (u !== undefined) await new Promise((resolve) => u.close(resolve));
});

async function stats(d: TestDocxy): Promise<StatsSnapshot> {
  const res = await fetch(`${d.url}/-/api/stats`);
  assert.equal(res.status, 200);
  return (await res.json()) as StatsSnapshot;
}

describe('dashboard', () => {
  it('shows a running fill with its progress and totals that match /-/api/stats', async () => {
    const d = docxy;
    const b = browser;
    assert.ok(d !== undefined && b !== undefined);
    const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    try {
      const pull = fetch(`${d.url}/v2/library/big/blobs/${digest}`).then(async (r) => {
        const body = Buffer.from(await r.arrayBuffer());
        return createHash('sha256').update(body).digest('hex');
      });
      await page.goto(`${d.url}/-/dashboard`);
      const bar = page.locator(`[data-digest="${digest}"] [role=progressbar]`);
      await bar.waitFor({ state: 'visible', timeout: 10_000 });
      // Progress moves while the upstream sends.
      // Read through the locator (Playwright's own world): the page's CSP forbids the eval that
      // page.waitForFunction with a string needs.
      await waitFor(
        'the progress bar to pass 20 %',
        async () => Number(await bar.getAttribute('aria-valuenow')) >= 20,
        15_000,
      );
      const during = await stats(d);
      const fill = during.fills.find((f) => f.digest === digest);
      assert.ok(fill !== undefined, 'the read model lists the running fill');
      assert.equal(fill.size, blob.length);
      assert.equal(fill.followers, 1);
      const shown = await page.locator(`[data-digest="${digest}"] code`).textContent();
      assert.equal(shown, digest.slice(0, 19));
      mkdirSync('test-artifacts', { recursive: true });
      await page.screenshot({ path: 'test-artifacts/dashboard-fill.png', fullPage: true });

      assert.equal(`sha256:${await pull}`, digest);
      // The client has its last byte once it is verified; the commit follows. After it, a warm
      // pull is a hit, served from the cache.
      await page.locator('.fill').waitFor({ state: 'detached', timeout: 10_000 });
      const warm = await fetch(`${d.url}/v2/library/big/blobs/${digest}`);
      assert.equal(Buffer.from(await warm.arrayBuffer()).length, blob.length);
      await sleep(2500); // one more poll after the warm pull
      const done = await stats(d);
      assert.equal(done.fills.length, 0);
      assert.equal(done.requests.hits, 1, JSON.stringify(done.requests));
      assert.equal(done.requests.misses, 1);
      assert.equal(done.bytes.fromCache, blob.length);
      assert.equal(done.bytes.fromUpstream, blob.length);
      assert.equal(
        await page.locator('#hit').textContent(),
        `${(done.requests.hitRatio * 100).toFixed(1)} %`,
      );
      assert.equal(await page.locator('#saved').textContent(), '12.0 MiB');
      assert.match((await page.locator('#repos').textContent()) ?? '', /library\/big/);
      await page.screenshot({ path: 'test-artifacts/dashboard.png', fullPage: true });
      assert.deepEqual(problems, [], 'the page logged no console errors');
    } finally {
      await page.close();
    }
  });

  it('is refused with 403 in OCI JSON outside dashboard.allow', async () => {
    const port = (upstream?.address() as AddressInfo).port;
    const d = await startDocxy({
      upstream: { url: `http://127.0.0.1:${port}` },
      dashboard: { allow: ['10.0.0.0/8'] },
    });
    try {
      for (const path of ['/-/dashboard', '/-/api/stats']) {
        const res = await fetch(`${d.url}${path}`);
        assert.equal(res.status, 403, path);
        const body = (await res.json()) as { errors: { code: string }[] };
        assert.equal(body.errors[0]?.code, 'DENIED');
      }
    } finally {
      await d.stop();
    }
  });

  it('with dashboard.users, asks for HTTP Basic and lets only those users in', async () => {
    const port = (upstream?.address() as AddressInfo).port;
    const hash = bcrypt.hashSync('secret', 4);
    const d = await startDocxy({
      upstream: { url: `http://127.0.0.1:${port}` },
      auth: {
        users: [
          { name: 'ops', password_hash: hash },
          { name: 'dev', password_hash: hash },
        ],
      },
      dashboard: { users: ['ops'] },
    });
    const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    try {
      const none = await fetch(`${d.url}/-/api/stats`);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Basic /);
      assert.equal(((await none.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED');
      const wrong = await fetch(`${d.url}/-/api/stats`, { headers: { authorization: basic('ops', 'nope') } });
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
      const other = await fetch(`${d.url}/-/api/stats`, {
        headers: { authorization: basic('dev', 'secret') },
      });
      assert.equal(other.status, 403);
      await other.body?.cancel();
      const ok = await fetch(`${d.url}/-/dashboard`, { headers: { authorization: basic('ops', 'secret') } });
      assert.equal(ok.status, 200);
      assert.match(await ok.text(), /<title>Docxy dashboard<\/title>/);
    } finally {
      await d.stop();
    }
  });
});
