import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from '../registry/errors.ts';
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
  rl.loginFailed('b', 'bob');
  assert.equal(rl.loginDelay('c', 'bob'), 200);
  assert.equal(rl.loginDelay('a', undefined), 100);
});
