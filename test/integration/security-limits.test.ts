/**
 * Rate limits and request limits, each on a Docxy of its own (a limit's counters must not be
 * touched by other tests), all in front of one fake hub:
 *
 *   - rate_limit.per_ip.requests_per_minute: 100 -> the 101st request is 429 TOOMANYREQUESTS with
 *     Retry-After, and does not reach the upstream;
 *   - rate_limit.per_ip.bytes_per_hour: 20MiB -> a 64 MiB blob transfer is cut mid-body, and the
 *     next request is 429;
 *   - rate_limit.per_ip.connections: 4 -> a 5th concurrent connection is closed, the others serve;
 *   - rate_limit.failed_login_delay: 200ms -> the 3rd wrong password waits for the 2 before it;
 *   - limits.url_length -> 414 OCI JSON; limits.header_bytes -> refused by node (431);
 *     limits.headers_count -> never more headers read than that; Docxy keeps serving after each.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent, request } from 'undici';

import type { ConfigInput } from '../../src/config/schema.ts';
import { streamGet } from '../helpers/cache-probe.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet } from '../helpers/http.ts';
import { waitFor } from '../helpers/process.ts';
import {
  basicAuthorization,
  buildImage,
  pushImage,
  seedImages,
  type ImageDescriptor,
} from '../helpers/images.ts';
import { assertOciError, need } from '../helpers/security.ts';

let hub: FakeHub | undefined;
const theHub = (): FakeHub => need(hub, 'the fake hub');
/** Every Docxy started here, stopped by the file's `after` hook. */
const docxies = new Set<TestDocxy>();

async function docxyWith(config: ConfigInput): Promise<TestDocxy> {
  const d = await startDocxy({ upstream: { url: theHub().registryUrl }, ...config });
  docxies.add(d);
  return d;
}

before(async () => {
  hub = await startFakeHub();
  await seedImages(hub, ['tiny']);
});

after(async () => {
  const results = await Promise.allSettled([...docxies].map((d) => d.stop()));
  docxies.clear();
  await hub?.stop();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

// ---------------------------------------------------------------------------------------------
// Raw HTTP over one socket (for what a well-behaved client cannot send)

interface RawAnswer {
  /** Status of the first response, 0 when none arrived. */
  status: number;
  text: string;
  /** The server closed the connection. */
  closed: boolean;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => {
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Writes `request` on `socket` and collects what comes back until a full response, close or timeout. */
function exchange(socket: Socket, request: string, timeoutMs = 2000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    let text = '';
    let closed = socket.destroyed;
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m?.[1] === undefined ? 0 : Number(m[1]), text, closed });
    };
    const onData = (b: Buffer): void => {
      text += b.toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: (\d+)/i.exec(text);
      if (head >= 0 && len?.[1] !== undefined && text.length >= head + 4 + Number(len[1])) done();
    };
    const onClose = (): void => {
      closed = true;
      done();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('end', onClose);
    socket.on('error', () => undefined);
    if (closed) {
      done();
      return;
    }
    socket.write(request);
  });
}

async function rawRequest(port: number, request: string): Promise<RawAnswer> {
  const s = await openSocket(port);
  try {
    return await exchange(s, request);
  } finally {
    s.destroy();
  }
}

/** Docxy still answers an ordinary request. */
async function assertServing(d: TestDocxy): Promise<void> {
  const res = await httpGet(`${d.url}/health`);
  assert.equal(res.status, 200, 'docxy keeps serving');
}

// ---------------------------------------------------------------------------------------------

describe('rate limits', () => {
  it('requests_per_minute 100: the 101st request in a minute is 429 TOOMANYREQUESTS with Retry-After', async (t) => {
    const d = await docxyWith({ rate_limit: { per_ip: { requests_per_minute: 100 } } });
    const t0 = Date.now();
    for (let i = 1; i <= 100; i++) {
      const res = await httpGet(`${d.url}/v2/`);
      assert.equal(res.status, 401, `request ${i} is answered normally`);
    }
    const mark = (await theHub().registryRequests()).length;
    const res = await httpGet(`${d.url}/v2/`);
    t.diagnostic(
      `100 requests in ${Date.now() - t0} ms; the 101st: ${res.status} retry-after ${String(res.header('retry-after'))}`,
    );
    assertOciError(res, 429, 'TOOMANYREQUESTS');
    const retryAfter = Number(res.header('retry-after'));
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
      `Retry-After ${retryAfter}`,
    );
    const manifest = await httpGet(`${d.url}/v2/tiny/manifests/1`);
    assertOciError(manifest, 429, 'TOOMANYREQUESTS');
    assert.equal(
      (await theHub().registryRequests()).length,
      mark,
      'refused requests never reach the upstream',
    );
  });

  describe('bytes_per_hour 20MiB', () => {
    let big: ImageDescriptor | undefined;
    before(async () => {
      big = await pushImage(
        theHub(),
        await buildImage({ repo: 'library/big64', tag: '1', layerSize: 64 * 1024 * 1024 }),
      );
    });

    it('a 64 MiB blob is cut during the transfer, and the next request is 429', async (t) => {
      const d = await docxyWith({ rate_limit: { per_ip: { bytes_per_hour: '20MiB' } } });
      const layer = need(big, 'the 64 MiB image').layers[0];
      assert.ok(layer !== undefined && layer.size > 64 * 1024 * 1024);
      const t0 = Date.now();
      const res = await streamGet(`${d.url}/v2/big64/blobs/${layer.digest}`);
      t.diagnostic(
        `status ${res.status}, ${res.bytes} of ${layer.size} bytes in ${Date.now() - t0} ms, error: ${String(res.error?.message)}`,
      );
      assert.equal(res.status, 200);
      assert.ok(res.bytes < layer.size, 'the client did not receive the whole blob');
      assert.ok(res.bytes <= 21 * 1024 * 1024, `no more than about the budget was sent (${res.bytes})`);
      assert.ok(res.error !== undefined, 'the transfer ended with an error (connection closed)');
      // The request's log line is written when the server side of the response has closed.
      const logLine = (): Record<string, unknown> | undefined =>
        d.requestLogs().find((l) => l.path === `/v2/big64/blobs/${layer.digest}`);
      await waitFor('the blob request log line', () => logLine() !== undefined, 5000);
      assert.equal(logLine()?.error, 'byte rate limit reached');
      const next = await httpGet(`${d.url}/v2/`);
      assertOciError(next, 429, 'TOOMANYREQUESTS');
      assert.ok(Number(next.header('retry-after')) >= 1, 'Retry-After');
    });
  });

  it('connections 4: a 5th concurrent connection is closed; the four keep serving', async (t) => {
    const d = await docxyWith({ rate_limit: { per_ip: { connections: 4 } } });
    const health = 'GET /health HTTP/1.1\r\nHost: docxy\r\n\r\n';
    const four: Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const s = await openSocket(d.port);
        four.push(s);
        assert.equal((await exchange(s, health)).status, 200, `connection ${i + 1} serves`);
      }
      const fifth = await openSocket(d.port);
      const t0 = Date.now();
      const answer = await exchange(fifth, health);
      fifth.destroy();
      t.diagnostic(
        `5th connection: status ${answer.status}, closed ${String(answer.closed)} after ${Date.now() - t0} ms`,
      );
      assert.equal(answer.status, 0, 'the 5th connection got no response');
      assert.ok(answer.closed, 'the 5th connection was closed');
      for (const [i, s] of four.entries())
        assert.equal((await exchange(s, health)).status, 200, `connection ${i + 1} still serves`);
      assert.ok(
        d.logs().some((l) => l.msg === 'audit' && l.event === 'connection_refused'),
        'the refusal is audited',
      );
    } finally {
      for (const s of four) s.destroy();
    }
    // Once they are gone, new connections are welcome again.
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 25));
      status = (await rawRequest(d.port, health)).status;
    }
    assert.equal(status, 200, 'a new connection serves after the four closed');
  });

  it('failed_login_delay 200ms: the 3rd wrong password waits for the two failures before it', async (t) => {
    const user = { username: 'eve', password: 'eve-right-pw' };
    const d = await docxyWith({
      auth: {
        anonymous: false,
        users: [{ name: user.username, password_hash: bcrypt.hashSync(user.password, 4) }],
      },
      rate_limit: { failed_login_delay: '200ms' },
    });
    const attempt = async (password: string): Promise<{ status: number; ms: number }> => {
      const t0 = performance.now();
      const res = await httpGet(`${d.url}/auth/token?service=docxy&scope=repository:tiny:pull`, {
        headers: { authorization: basicAuthorization({ username: user.username, password }) },
      });
      return { status: res.status, ms: performance.now() - t0 };
    };
    const wrong = [await attempt('wrong-1'), await attempt('wrong-2'), await attempt('wrong-3')];
    const right = await attempt(user.password);
    t.diagnostic(
      `wrong passwords: ${wrong.map((w) => `${w.status} in ${Math.round(w.ms)} ms`).join(', ')}; then the right one: ${right.status} in ${Math.round(right.ms)} ms`,
    );
    for (const w of wrong) assert.equal(w.status, 401);
    const [first, second, third] = wrong;
    assert.ok(first !== undefined && second !== undefined && third !== undefined);
    assert.ok(first.ms < 200, `the 1st failure is not delayed (${Math.round(first.ms)} ms)`);
    assert.ok(second.ms >= 200, `the 2nd waits 200 ms (${Math.round(second.ms)} ms)`);
    assert.ok(third.ms >= 400, `the 3rd waits 2 x 200 ms (${Math.round(third.ms)} ms)`);
    assert.equal(right.status, 200, 'the right password still works');
  });

  it("failed_login_delay is per (user, address): an attack from 127.0.0.1 does not slow alice's login from 127.0.0.2", async (t) => {
    const user = { username: 'alice', password: 'alice-right-pw' };
    const d = await docxyWith({
      auth: {
        anonymous: false,
        users: [{ name: user.username, password_hash: bcrypt.hashSync(user.password, 4) }],
      },
      rate_limit: { failed_login_delay: '300ms' },
    });
    // Linux routes all of 127/8 to loopback: a socket bound to 127.0.0.2 is another client address.
    const from = (localAddress: string): Agent => new Agent({ localAddress });
    const attacker = from('127.0.0.1');
    const victim = from('127.0.0.2');
    const attempt = async (agent: Agent, password: string): Promise<{ status: number; ms: number }> => {
      const t0 = performance.now();
      const res = await request(`${d.url}/auth/token?service=docxy&scope=repository:tiny:pull`, {
        dispatcher: agent,
        headers: { authorization: basicAuthorization({ username: user.username, password }) },
      });
      await res.body.arrayBuffer();
      return { status: res.statusCode, ms: performance.now() - t0 };
    };
    try {
      for (let i = 0; i < 3; i++) assert.equal((await attempt(attacker, `wrong-${i}`)).status, 401);
      const attacked = await attempt(attacker, user.password);
      const own = await attempt(victim, user.password);
      t.diagnostic(
        `after 3 failures from 127.0.0.1: the right password from 127.0.0.1 took ${Math.round(attacked.ms)} ms, from 127.0.0.2 ${Math.round(own.ms)} ms`,
      );
      assert.equal(attacked.status, 200);
      assert.ok(
        attacked.ms >= 900,
        `the attacking address still waits 3 x 300 ms (${Math.round(attacked.ms)} ms)`,
      );
      assert.equal(own.status, 200);
      assert.ok(own.ms < 300, `alice from another address is not delayed (${Math.round(own.ms)} ms)`);
    } finally {
      await Promise.allSettled([attacker.close(), victim.close()]);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('request limits', () => {
  const user = { username: 'lim', password: 'lim-pw' };
  let d: TestDocxy | undefined;
  const theDocxy = (): TestDocxy => need(d, 'docxy');

  before(async () => {
    d = await docxyWith({
      auth: {
        anonymous: false,
        users: [{ name: user.username, password_hash: bcrypt.hashSync(user.password, 4) }],
      },
      limits: { url_length: 1024, header_bytes: '8KiB', headers_count: 20 },
      rate_limit: { failed_login_delay: 0 },
    });
  });

  it('a URL longer than limits.url_length is 414 with an OCI JSON error', async () => {
    const res = await httpGet(`${theDocxy().url}/v2/${'a'.repeat(1100)}/manifests/1`);
    assertOciError(res, 414);
    await assertServing(theDocxy());
  });

  it('a URL longer than limits.header_bytes is refused (431) and docxy keeps serving', async () => {
    const answer = await rawRequest(
      theDocxy().port,
      `GET /v2/${'a'.repeat(9000)}/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.equal(answer.status, 431, answer.text.slice(0, 200));
    await assertServing(theDocxy());
  });

  it('a header block larger than limits.header_bytes is refused (431) and docxy keeps serving', async () => {
    const headers = Array.from({ length: 12 }, (_, i) => `x-pad-${i}: ${'p'.repeat(1000)}\r\n`).join('');
    const answer = await rawRequest(theDocxy().port, `GET /v2/ HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    assert.equal(answer.status, 431, answer.text.slice(0, 200));
    await assertServing(theDocxy());
  });

  it('more headers than limits.headers_count: never read past the limit, and docxy keeps serving', async (t) => {
    const tok = await httpGet(`${theDocxy().url}/auth/token?service=docxy&scope=repository:tiny:pull`, {
      headers: { authorization: basicAuthorization(user) },
    });
    const token = (tok.json() as { token: string }).token;
    const request = (junk: number): string =>
      `GET /v2/tiny/manifests/1 HTTP/1.1\r\nHost: x\r\n${Array.from({ length: junk }, (_, i) => `x-junk-${i}: j\r\n`).join('')}` +
      `Authorization: Bearer ${token}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n\r\n`;
    // Control: within the limit, the token is read and the manifest served.
    const within = await rawRequest(theDocxy().port, request(5));
    assert.equal(within.status, 200, within.text.slice(0, 300));
    // 40 headers, the Authorization among the last: refused outright, or the headers past the 20th
    // never read (the token is not seen: 401). Never served.
    const over = await rawRequest(theDocxy().port, request(40));
    t.diagnostic(`42 headers with headers_count 20: ${over.text.split('\r\n')[0] ?? ''}`);
    assert.ok([431, 401].includes(over.status), `refused or not read: ${over.text.slice(0, 300)}`);
    await assertServing(theDocxy());
  });
});
