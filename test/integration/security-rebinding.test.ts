/**
 * DNS rebinding against the redirect guard. A hostile upstream (on 127.0.0.1, Docxy configured
 * with `limits.allow_private_redirects: false`) redirects a blob GET to `cdn.rebind.test`, whose
 * DNS answers the guard's check with a public address (203.0.113.10) and every later question with
 * 127.0.0.1, where a canary serves the blob's exact bytes. The resolver is the test's (Docxy's
 * `resolve` override, used by the guard and by the connections alike): if Docxy re-resolved the
 * name when dialling, the canary would see the connection and the client would get the canary's
 * bytes. It must instead answer 502 JSON and the canary must see nothing. A control with a name
 * that always answers 127.0.0.1 shows the early check, and one that always answers the public
 * address shows that the pinned lookup still dials what it checked.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';

import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { httpGet } from '../helpers/http.ts';
import { assertOciError, need, startCanary, startStubServer, type Canary } from '../helpers/security.ts';

const BODY = Buffer.from('bytes a private service would hand out');
const DIGEST = `sha256:${createHash('sha256').update(BODY).digest('hex')}`;

/** A registry stand-in whose blob GETs redirect to `http://<host>:<port>/blob`. */
function startRedirectingUpstream(
  target: (host: string) => string,
): Promise<{ url: string; stop: () => Promise<void> }> {
  return startStubServer((req: IncomingMessage, res: ServerResponse) => {
    const m = /^\/v2\/rebind\/([a-z0-9.-]+)\/blobs\//.exec(req.url ?? '');
    if (m?.[1] !== undefined) {
      res.writeHead(307, { location: target(m[1]), 'content-length': 0 });
      res.end();
      return;
    }
    res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{}');
  });
}

const v4 = (address: string): LookupAddress[] => [{ address, family: 4 }];

describe('DNS rebinding: the address the guard checked is the address dialled', () => {
  let canary: Canary | undefined;
  let upstream: { url: string; stop: () => Promise<void> } | undefined;
  let d: TestDocxy | undefined;
  /** Every name the test resolver was asked, in order. */
  const asked: string[] = [];
  const can = (): Canary => need(canary, 'the canary');

  before(async () => {
    canary = await startCanary('127.0.0.1', BODY);
    const port = canary.port;
    upstream = await startRedirectingUpstream((host) => `http://${host}:${port}/blob`);
    const resolve = (hostname: string): Promise<readonly LookupAddress[]> => {
      asked.push(hostname);
      const times = asked.filter((h) => h === hostname).length;
      if (hostname === 'cdn.rebind.test')
        return Promise.resolve(v4(times === 1 ? '203.0.113.10' : '127.0.0.1'));
      if (hostname === 'loopback.rebind.test') return Promise.resolve(v4('127.0.0.1'));
      // A public name whose only address is the canary, reached through the pinned lookup only
      // when the check passed: shows the lookup still dials what it resolved.
      if (hostname === 'public.rebind.test')
        return Promise.resolve(v4(times === 1 ? '203.0.113.10' : '203.0.113.11'));
      return Promise.reject(Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
    };
    d = await startDocxy(
      {
        upstream: { url: upstream.url, timeouts: { connect: '1s' } },
        limits: { allow_private_redirects: false },
        cache: { resume_retries: 0 },
      },
      { resolve },
    );
  });

  after(async () => {
    await d?.stop();
    await Promise.allSettled([upstream?.stop(), canary?.stop()]);
  });

  it('a name that answers a public address to the check and 127.0.0.1 to the connection reaches nothing', async () => {
    const before = can().connections();
    asked.length = 0;
    const res = await httpGet(`${need(d, 'docxy').url}/v2/rebind/cdn.rebind.test/blobs/${DIGEST}`);
    assert.ok(!res.body.equals(BODY), 'the client got the bytes from 127.0.0.1');
    assert.equal(can().connections(), before, 'the canary on 127.0.0.1 saw a connection');
    assertOciError(res, 502, 'UNAVAILABLE', 'rebinding redirect');
    assert.match(String((res.json() as { errors: { message: string }[] }).errors[0]?.message), /refused/);
    assert.ok(
      asked.filter((h) => h === 'cdn.rebind.test').length >= 2,
      `the name was resolved for the check and for the connection: ${asked.join(', ')}`,
    );
  });

  it('control: a name that always answers 127.0.0.1 is refused before any connection', async () => {
    const before = can().connections();
    const res = await httpGet(`${need(d, 'docxy').url}/v2/rebind/loopback.rebind.test/blobs/${DIGEST}`);
    assertOciError(res, 502, 'UNAVAILABLE', 'loopback redirect');
    assert.equal(can().connections(), before);
  });

  it('control: a public name is dialled at the address the lookup checked (no connection to 127.0.0.1)', async () => {
    const before = can().connections();
    const res = await httpGet(`${need(d, 'docxy').url}/v2/rebind/public.rebind.test/blobs/${DIGEST}`);
    // 203.0.113.11 (TEST-NET-3) does not answer: a 502 after the connect timeout, never the canary.
    assertOciError(res, 502, 'UNAVAILABLE', 'public redirect');
    assert.doesNotMatch(
      String((res.json() as { errors: { message: string }[] }).errors[0]?.message),
      /refused/,
    );
    assert.equal(can().connections(), before);
  });
});
