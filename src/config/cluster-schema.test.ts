import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, validateConfig } from './load.ts';

const redis = { coordination: { redis: { url: 'redis://127.0.0.1:6379/0' } } };
const problems = (tree: unknown, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    validateConfig(tree, 'x', env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
};

test('cluster: absent by default; listen + secret give the advertised address and a 10 s lease', () => {
  assert.equal(validateConfig({}, 'x').cluster, undefined);
  const c = validateConfig({ ...redis, cluster: { listen: '10.0.0.5:5100', secret: 's'.repeat(16) } }, 'x');
  assert.deepEqual(c.cluster, {
    listen: '10.0.0.5:5100',
    advertise: 'http://10.0.0.5:5100',
    secret: 's'.repeat(16),
    lease_ttl: 10_000,
  });
});

test('cluster: the secret from a file or a variable, the advertised address and lease_ttl as given, DOCXY_* works', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cluster-secret-'));
  try {
    const file = join(dir, 'secret');
    writeFileSync(file, 'from-a-file-0123456789\n');
    const c = validateConfig(
      {
        ...redis,
        cluster: {
          listen: '0.0.0.0:5100',
          advertise: 'http://a.internal:5100/',
          secret_file: file,
          lease_ttl: '3s',
        },
      },
      'x',
    );
    assert.equal(c.cluster?.secret, 'from-a-file-0123456789');
    assert.equal(c.cluster.advertise, 'http://a.internal:5100');
    assert.equal(c.cluster.lease_ttl, 3000);
    const env = {
      DOCXY_COORDINATION__REDIS__URL: 'redis://r:6379',
      DOCXY_CLUSTER__LISTEN: '127.0.0.1:5100',
      DOCXY_CLUSTER__SECRET_ENV: 'FLEET_SECRET',
      FLEET_SECRET: 'from-the-environment',
    };
    assert.equal(loadConfig({}, env).cluster?.secret, 'from-the-environment');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cluster: errors name the key (no secret, two secrets, short secret, unreadable file, no Redis, the public port)', () => {
  const listen = '127.0.0.1:5100';
  assert.ok(problems({ ...redis, cluster: { listen } }).some((p) => p.startsWith('cluster.secret:')));
  assert.ok(
    problems({ ...redis, cluster: { listen, secret: 's'.repeat(16), secret_env: 'X' } }).some((p) =>
      p.includes('exactly one of secret'),
    ),
  );
  assert.ok(
    problems({ ...redis, cluster: { listen, secret: 'short' } }).some((p) => p.startsWith('cluster.secret')),
  );
  assert.ok(
    problems({ ...redis, cluster: { listen, secret_file: '/nonexistent/secret' } }).some((p) =>
      p.startsWith('cluster.secret_file: cannot read'),
    ),
  );
  assert.ok(
    problems({ ...redis, cluster: { listen, secret_env: 'UNSET_VAR' } }).some((p) =>
      p.startsWith('cluster.secret_env: UNSET_VAR is not set'),
    ),
  );
  assert.ok(
    problems({ cluster: { listen, secret: 's'.repeat(16) } }).some((p) =>
      p.includes('needs coordination.redis.url'),
    ),
  );
  assert.ok(
    problems({ ...redis, listen, cluster: { listen, secret: 's'.repeat(16) } }).some((p) =>
      p.startsWith('cluster.listen: must not be the public listen address'),
    ),
  );
  assert.ok(
    problems({ ...redis, cluster: { listen: 'nope', secret: 's'.repeat(16) } }).some((p) =>
      p.startsWith('cluster.listen'),
    ),
  );
  assert.ok(
    problems({ ...redis, cluster: { listen, secret: 's'.repeat(16), lease_ttl: '100ms' } }).some((p) =>
      p.startsWith('cluster.lease_ttl'),
    ),
  );
});
