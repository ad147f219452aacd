import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from '../registry/errors.ts';
import { createMemoryCounters } from '../coordination/memory/memory-coordination.ts';
import { createRateLimiter } from './rate-limit.ts';

test('the 101st request in a minute with a limit of 100 is refused with Retry-After', () => {
  let t = 1_000_000;
  const rl = createRateLimiter(
    { per_ip: { requests_per_minute: 100 }, per_user: {}, failed_login_delay: 1000 },
    () => t,
  );
  for (let i = 0; i < 100; i++) rl.request('1.2.3.4', undefined);
  assert.throws(
    () => {
      rl.request('1.2.3.4', undefined);
    },
    (err: unknown) =>
      err instanceof RegistryError && err.status === 429 && err.headers['retry-after'] === '60',
  );
  rl.request('5.6.7.8', undefined);
  t += 60_000;
  rl.request('1.2.3.4', undefined);
});

test('a byte budget cuts a transfer and refuses the next request', () => {
  const rl = createRateLimiter({ per_ip: { bytes_per_hour: 1000 }, per_user: {}, failed_login_delay: 1000 });
  assert.ok(rl.bytes('a', undefined, 600));
  assert.ok(!rl.bytes('a', undefined, 600));
  assert.throws(() => {
    rl.request('a', undefined);
  }, RegistryError);
});

test('connections per address are capped; failed logins add growing delays', () => {
  const rl = createRateLimiter({ per_ip: { connections: 2 }, per_user: {}, failed_login_delay: 100 });
  assert.ok(rl.opened('a') && rl.opened('a'));
  assert.ok(!rl.opened('a'));
  rl.closed('a');
  rl.closed('a');
  assert.ok(rl.opened('a'));
  assert.equal(rl.loginDelay('a', 'bob'), 0);
  rl.loginFailed('a', 'bob');
  rl.loginFailed('a', 'bob');
  rl.loginFailed('b', 'bob');
  assert.equal(rl.loginDelay('a', 'bob'), 200);
  assert.equal(rl.loginDelay('a', undefined), 200);
  assert.equal(rl.loginDelay('b', 'bob'), 100);
});

test("failed logins slow the attacking address, never the user's logins from elsewhere", () => {
  const rl = createRateLimiter({ per_ip: {}, per_user: {}, failed_login_delay: 100 });
  for (let i = 0; i < 5; i++) rl.loginFailed('6.6.6.6', 'alice');
  assert.equal(rl.loginDelay('6.6.6.6', 'alice'), 500);
  assert.equal(rl.loginDelay('6.6.6.6', 'bob'), 500, 'the address itself is slowed for every user');
  assert.equal(rl.loginDelay('10.0.0.7', 'alice'), 0, 'alice from her own address is not');
});

test('the failure table is bounded: the least recently failing entries are forgotten first', () => {
  const rl = createRateLimiter({ per_ip: {}, per_user: {}, failed_login_delay: 100 }, Date.now, 4);
  rl.loginFailed('a', undefined);
  rl.loginFailed('b', undefined);
  rl.loginFailed('c', undefined);
  rl.loginFailed('d', undefined);
  rl.loginFailed('a', undefined); // a is now the most recent
  rl.loginFailed('e', undefined); // evicts b
  assert.equal(rl.loginDelay('b', undefined), 0);
  assert.equal(rl.loginDelay('a', undefined), 200);
  assert.equal(rl.loginDelay('e', undefined), 100);
});

test('with shared counters, requests and failed logins counted on another replica count here', () => {
  const fleet = createMemoryCounters();
  const cfg = { per_ip: { requests_per_minute: 10 }, per_user: {}, failed_login_delay: 100 };
  const a = createRateLimiter(cfg, Date.now, undefined, undefined, fleet);
  const b = createRateLimiter(cfg, Date.now, undefined, undefined, fleet);
  for (let i = 0; i < 10; i++) (i % 2 === 0 ? a : b).request('1.2.3.4', undefined);
  assert.throws(() => {
    b.request('1.2.3.4', undefined);
  }, RegistryError);
  a.loginFailed('6.6.6.6', 'alice');
  a.loginFailed('6.6.6.6', 'alice');
  assert.equal(b.loginDelay('6.6.6.6', 'alice'), 200);
  assert.equal(b.loginDelay('10.0.0.7', 'alice'), 0);
});
