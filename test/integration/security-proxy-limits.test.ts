/**
 * Rate limits and connection caps behind the real nginx of docs/deployment.md
 * (test/fixtures/deploy/nginx.conf, TLS from a test CA, `keepalive 16` to Docxy).
 *
 * Clients reach nginx from distinct loopback addresses (sockets bound to 127.0.0.2, .3, …; Linux
 * routes all of 127/8 to lo), so nginx's `$proxy_add_x_forwarded_for` names each one, as it would
 * name real clients. Two Docxies, each behind its own nginx, in front of one small registry
 * stand-in that answers `/v2/` at once and never answers `/v2/hang/…` (a request held in flight):
 *   trusted   -- `trust_proxy: [127.0.0.1]`: every client address has its own request budget and
 *                its own cap of concurrent connections, counted per forwarded request while nginx
 *                shares its few sockets; one client over its cap gets 429, another is served.
 *   untrusted -- no trust_proxy: nginx's address is the client, so all clients share one budget.
 * Everything is stopped in after hooks, pass or fail.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';

import { need } from '../helpers/client-steps.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { freePort, startProcess, waitFor, waitForPort, type Managed } from '../helpers/process.ts';
import { createTestCa, type TestCa } from '../helpers/test-ca.ts';
import { startStubServer } from '../helpers/security.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

type TmpDir = ReturnType<typeof makeTmpDir>;

const NGINX_CONF = join(import.meta.dirname, '..', 'fixtures', 'deploy', 'nginx.conf');
const RPM = 5;
const CONNECTIONS = 2;

interface Stand {
  readonly url: string;
  held(): number;
  stop(): Promise<void>;
}

/** `/v2/` -> 200 `{}` at once; `/v2/hang/…` -> never answered until stop. */
async function startStandIn(): Promise<Stand> {
  const held = new Set<ServerResponse>();
  const server = await startStubServer((req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? '').startsWith('/v2/hang/')) {
      held.add(res);
      res.once('close', () => held.delete(res));
      return;
    }
    res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{}');
  });
  return { ...server, held: () => held.size };
}

interface Nginx {
  readonly port: number;
  readonly proc: Managed;
  readonly dir: TmpDir;
}

async function startNginx(ca: TestCa, docxyPort: number): Promise<Nginx> {
  const dir = makeTmpDir('nginx-limits');
  const cert = await ca.issue({ name: 'nginx', sans: ['IP:127.0.0.1'] });
  const port = await freePort();
  const conf = readFileSync(NGINX_CONF, 'utf8')
    .replaceAll('{{PREFIX}}', dir.path)
    .replaceAll('{{LISTEN}}', `127.0.0.1:${port}`)
    .replaceAll('{{LISTEN6}}', `[::1]:${port}`)
    .replaceAll('{{SERVER_NAME}}', 'localhost')
    .replaceAll('{{CERT}}', cert.certFile)
    .replaceAll('{{KEY}}', cert.keyFile)
    .replaceAll('{{DOCXY}}', `127.0.0.1:${docxyPort}`);
  writeFileSync(join(dir.path, 'nginx.conf'), conf);
  const proc = startProcess(
    'nginx',
    '/usr/sbin/nginx',
    ['-p', dir.path, '-c', join(dir.path, 'nginx.conf'), '-e', 'stderr', '-g', 'daemon off;'],
    { logFile: join(dir.path, 'nginx.out') },
  );
  await waitForPort(port, '127.0.0.1', 10_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${proc.log()}`);
  });
  return { port, proc, dir };
}

let ca: TestCa | undefined;
let stand: Stand | undefined;
const agents = new Map<string, Agent>();
const docxies: TestDocxy[] = [];
const nginxes: Nginx[] = [];

/** An HTTPS client of nginx whose sockets come from `address`. */
function client(address: string): Agent {
  let a = agents.get(address);
  if (a === undefined) {
    a = new Agent({ localAddress: address, connect: { ca: need(ca, 'the CA').certPem } });
    agents.set(address, a);
  }
  return a;
}

async function get(n: Nginx, from: string, path: string, signal?: AbortSignal): Promise<number> {
  const res = await request(`https://127.0.0.1:${n.port}${path}`, { dispatcher: client(from), signal });
  await res.body.arrayBuffer();
  return res.statusCode;
}

async function behindNginx(trustProxy: string[]): Promise<{ d: TestDocxy; n: Nginx }> {
  const docxyPort = await freePort();
  const d = await startDocxy({
    listen: `127.0.0.1:${docxyPort}`,
    upstream: { url: need(stand, 'the stand-in').url, timeouts: { headers: '60s' } },
    trust_proxy: trustProxy,
    rate_limit: { per_ip: { requests_per_minute: RPM, connections: CONNECTIONS } },
  });
  docxies.push(d);
  const n = await startNginx(need(ca, 'the CA'), docxyPort);
  nginxes.push(n);
  return { d, n };
}

let trusted: { d: TestDocxy; n: Nginx } | undefined;
let untrusted: { d: TestDocxy; n: Nginx } | undefined;

before(async () => {
  ca = await createTestCa();
  stand = await startStandIn();
  trusted = await behindNginx(['127.0.0.1']);
  untrusted = await behindNginx([]);
});

after(async () => {
  await Promise.allSettled([...agents.values()].map((a) => a.close()));
  await Promise.allSettled(nginxes.map((n) => n.proc.stop()));
  await Promise.allSettled(docxies.map((d) => d.stop()));
  await stand?.stop();
  for (const n of nginxes) n.dir.remove();
  ca?.remove();
});

describe('behind nginx with trust_proxy: limits per forwarded client address', () => {
  it(`requests_per_minute ${RPM}: 127.0.0.2 is refused after ${RPM}, 127.0.0.3 keeps its own budget`, async () => {
    const n = need(trusted, 'trusted').n;
    for (let i = 0; i < RPM; i++) assert.equal(await get(n, '127.0.0.2', '/v2/'), 200, `request ${i + 1}`);
    assert.equal(await get(n, '127.0.0.2', '/v2/'), 429, `request ${RPM + 1} of 127.0.0.2`);
    assert.equal(await get(n, '127.0.0.3', '/v2/'), 200, 'the other client through the same nginx');
    const ips = new Set(
      need(trusted, 'trusted')
        .d.requestLogs()
        .map((l) => l.ip),
    );
    assert.ok(
      ips.has('127.0.0.2') && ips.has('127.0.0.3'),
      `Docxy saw the client addresses: ${[...ips].join(', ')}`,
    );
  });

  it(`connections ${CONNECTIONS}: 127.0.0.4 with ${CONNECTIONS} requests in flight gets 429, 127.0.0.5 is served, and 127.0.0.4 again once they end`, async (t) => {
    const { n, d } = need(trusted, 'trusted');
    const abort = new AbortController();
    const hung = Array.from({ length: CONNECTIONS }, (_, i) =>
      get(n, '127.0.0.4', `/v2/hang/r${i}/manifests/1`, abort.signal).catch(() => 0),
    );
    try {
      await waitFor(
        'both requests held upstream',
        () => need(stand, 'stand-in').held() >= CONNECTIONS,
        10_000,
      );
      const over = await get(n, '127.0.0.4', '/v2/');
      const other = await get(n, '127.0.0.5', '/v2/');
      t.diagnostic(`with ${CONNECTIONS} in flight: 127.0.0.4 -> ${over}, 127.0.0.5 -> ${other}`);
      assert.equal(over, 429, 'the client over its cap');
      assert.equal(other, 200, 'another client behind the same nginx');
      assert.ok(
        d
          .logs()
          .some((l) => l.event === 'connection_refused' && l.ip === '127.0.0.4' && l.via === '127.0.0.1'),
        'the refusal is audited with the client address and the proxy',
      );
    } finally {
      abort.abort();
      await Promise.all(hung);
    }
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = await get(n, '127.0.0.4', '/v2/');
    }
    assert.equal(status, 200, '127.0.0.4 is served again once its requests ended');
  });
});

describe('behind nginx without trust_proxy: the proxy is the client', () => {
  it(`requests_per_minute ${RPM}: once ${RPM} requests came through nginx, every client behind it is refused`, async () => {
    const n = need(untrusted, 'untrusted').n;
    for (let i = 0; i < RPM; i++) assert.equal(await get(n, '127.0.0.2', '/v2/'), 200, `request ${i + 1}`);
    assert.equal(await get(n, '127.0.0.3', '/v2/'), 429, 'another client shares the proxy budget');
    const ips = new Set(
      need(untrusted, 'untrusted')
        .d.requestLogs()
        .map((l) => l.ip),
    );
    assert.deepEqual([...ips], ['127.0.0.1'], 'Docxy saw only nginx');
  });
});
