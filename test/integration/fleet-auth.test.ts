/**
 * Two Docxy replicas as one service for authentication (issue 12): with the same
 * `auth.token.key_file`, a token issued by replica A is accepted by replica B (and one signed with
 * another key is not); with the same Redis, failed logins counted on A slow the next wrong
 * password on B. Real Redis, in-process replicas, no upstream needed.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { httpGet } from '../helpers/http.ts';
import { basicAuthorization } from '../helpers/images.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

const user = { username: 'fleet', password: 'fleet-right-pw' };
const delayMs = 300;
let redis: RedisServer;
let keys: ReturnType<typeof makeTmpDir>;
const replicas: TestDocxy[] = [];

function replicaConfig(keyFile: string): ConfigInput {
  return {
    // Never asked here: /v2/ and /auth/token are answered by Docxy itself.
    upstream: { url: 'http://127.0.0.1:9' },
    auth: {
      anonymous: false,
      users: [{ name: user.username, password_hash: bcrypt.hashSync(user.password, 4) }],
      token: { key_file: keyFile },
    },
    coordination: { redis: { url: redis.url } },
    rate_limit: { failed_login_delay: `${String(delayMs)}ms` },
  };
}

before(async () => {
  redis = await startRedis();
  keys = makeTmpDir('fleet-keys');
  const shared = join(keys.path, 'token.key');
  // A creates the key file; B, started after it, reads the same one. C has a key of its own.
  replicas.push(await startDocxy(replicaConfig(shared)));
  replicas.push(await startDocxy(replicaConfig(shared)));
  replicas.push(await startDocxy(replicaConfig(join(keys.path, 'other.key'))));
});

after(async () => {
  await Promise.allSettled(replicas.map((r) => r.stop()));
  await redis.close();
  keys.remove();
});

const tokenUrl = (d: TestDocxy): string => `${d.url}/auth/token?service=docxy&scope=repository:tiny:pull`;

async function login(
  d: TestDocxy,
  password: string,
): Promise<{ status: number; ms: number; token?: string }> {
  const t0 = performance.now();
  const res = await httpGet(tokenUrl(d), {
    headers: { authorization: basicAuthorization({ username: user.username, password }) },
  });
  const ms = performance.now() - t0;
  if (res.status !== 200) return { status: res.status, ms };
  return { status: res.status, ms, token: (JSON.parse(res.body.toString()) as { token: string }).token };
}

describe('replicas share the token key and the failed-login count', () => {
  it('a token from replica A is accepted by replica B (same key_file), not by C (another key)', async () => {
    const [a, b, c] = replicas;
    assert.ok(a !== undefined && b !== undefined && c !== undefined);
    const { token } = await login(a, user.password);
    assert.ok(token !== undefined);
    const headers = { authorization: `Bearer ${token}` };
    assert.equal((await httpGet(`${a.url}/v2/`, { headers })).status, 200, 'A accepts its own token');
    assert.equal((await httpGet(`${b.url}/v2/`, { headers })).status, 200, "B accepts A's token");
    assert.equal((await httpGet(`${c.url}/v2/`, { headers })).status, 401, 'C, with another key, refuses it');
  });

  it('failed logins on A delay the next wrong password on B', async (t) => {
    const [a, b] = replicas;
    assert.ok(a !== undefined && b !== undefined);
    // The fleet counts failures in clock-aligned 10-minute windows: do not start next to a window's
    // end, where the fleet's count starts again.
    const left = 600_000 - (Date.now() % 600_000);
    if (left < 10_000) await sleep(left + 100);
    for (let i = 0; i < 3; i++) assert.equal((await login(a, `wrong-a-${String(i)}`)).status, 401);
    // B learns the fleet's count of a key with the flush after its first use of it (250 ms).
    const first = await login(b, 'wrong-b-0');
    await sleep(600);
    const second = await login(b, 'wrong-b-1');
    t.diagnostic(
      `on B after 3 failures on A: ${String(first.status)} in ${String(Math.round(first.ms))} ms, then ${String(second.status)} in ${String(Math.round(second.ms))} ms`,
    );
    assert.equal(first.status, 401);
    assert.equal(second.status, 401);
    // Alone, B would wait 1 x 300 ms (its one own failure); with A's three it waits 4 x 300 ms.
    // (3.5 x leaves room for timer granularity; alone it would be 1 x, 2 x at most.)
    assert.ok(
      second.ms >= 3.5 * delayMs,
      `B waited for the fleet's 4 failures (${String(Math.round(second.ms))} ms)`,
    );
    const right = await login(b, user.password);
    assert.equal(right.status, 200, 'the right password still works on B');
  });
});
