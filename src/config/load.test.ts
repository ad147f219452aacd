import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { ConfigError, loadConfig, readConfigFile, validateConfig } from './load.ts';

test('defaults: Docker Hub upstream on 0.0.0.0:5000 with library prefix', () => {
  const c = loadConfig({}, {});
  assert.equal(c.listen, '0.0.0.0:5000');
  assert.equal(c.defaultUpstream, 'docker.io');
  const hub = c.upstreams[0]!;
  assert.equal(hub.name, 'docker.io');
  assert.equal(hub.url, 'https://registry-1.docker.io');
  assert.equal(hub.libraryPrefix, true);
  assert.equal(hub.timeouts.connect, 10_000);
  assert.equal(hub.tagTtlMs, 300_000);
  assert.equal(c.public_url, undefined);
});

test('config.example.yaml loads and documents real values', () => {
  const c = validateConfig(readConfigFile('config.example.yaml'), 'config.example.yaml');
  assert.equal(c.public_url, 'http://mirror.example:5000');
  assert.equal(c.upstreams[0]!.timeouts.idle, 60_000);
});

test('flags override environment, which overrides the file', () => {
  const dir = makeTmpDir('cfg');
  try {
    const file = join(dir.path, 'c.yaml');
    writeFileSync(
      file,
      'listen: 127.0.0.1:1\nupstream:\n  url: http://file.example\n  library_prefix: true\n  timeouts: { connect: 1s }\n',
    );
    const env = {
      DOCXY_LISTEN: '127.0.0.1:2',
      DOCXY_UPSTREAM__LIBRARY_PREFIX: 'false',
      DOCXY_UPSTREAM__TIMEOUTS__IDLE: '2m',
    };
    const c = loadConfig({ config: file, listen: '127.0.0.1:3' }, env);
    assert.equal(c.listen, '127.0.0.1:3');
    const up = c.upstreams[0]!;
    assert.equal(up.url, 'http://file.example');
    assert.equal(up.libraryPrefix, false);
    assert.equal(up.timeouts.connect, 1000);
    assert.equal(up.timeouts.idle, 120_000);
    const c2 = loadConfig({ config: file }, { DOCXY_UPSTREAM: 'http://env.example/' });
    assert.equal(c2.upstreams[0]!.url, 'http://env.example');
  } finally {
    dir.remove();
  }
});

test('errors name the key path', () => {
  assert.throws(
    () =>
      validateConfig(
        { upstream: { url: 'ftp://x', timeouts: { connect: 'soon' } }, listen: 'nope', extra: 1 },
        't',
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      assert.match(text, /upstream\.url: must be an http\(s\) URL/);
      assert.match(text, /upstream\.timeouts\.connect: must be a duration/);
      assert.match(text, /listen: must be HOST:PORT/);
      assert.match(text, /extra/);
      return true;
    },
  );
});

test('an unreadable or non-YAML file is a ConfigError naming the file', () => {
  assert.throws(() => readConfigFile('/nonexistent/docxy.yaml'), /nonexistent\/docxy\.yaml/);
  const dir = makeTmpDir('cfg');
  try {
    const file = join(dir.path, 'bad.yaml');
    writeFileSync(file, 'a: [1, 2\n');
    assert.throws(() => readConfigFile(file), /not valid YAML/);
  } finally {
    dir.remove();
  }
});

test('upstreams: presets fill url and library_prefix; --upstream overrides the default one', () => {
  const c = validateConfig(
    {
      default_upstream: 'docker.io',
      upstreams: [
        { name: 'docker.io' },
        { name: 'ghcr.io', hosts: ['GHCR.mirror.example'] },
        { name: 'my.reg', url: 'http://10.0.0.1:5000' },
      ],
      upstream: { url: 'http://127.0.0.1:9' },
    },
    't',
    {},
  );
  assert.deepEqual(
    c.upstreams.map((u) => [u.name, u.url, u.libraryPrefix, u.prefix, u.hosts]),
    [
      ['docker.io', 'http://127.0.0.1:9', true, 'docker.io', []],
      ['ghcr.io', 'https://ghcr.io', false, 'ghcr.io', ['ghcr.mirror.example']],
      ['my.reg', 'http://10.0.0.1:5000', false, 'my.reg', []],
    ],
  );
});

test('upstream credentials come from the value, a file or an environment variable', () => {
  const dir = makeTmpDir('cfg');
  try {
    const file = join(dir.path, 'pw');
    writeFileSync(file, 'from-file\n');
    const c = validateConfig(
      {
        upstreams: [
          { name: 'a.io', url: 'http://a', credentials: { username: 'u', password: 'inline' } },
          { name: 'b.io', url: 'http://b', credentials: { username: 'u', password_file: file } },
          { name: 'c.io', url: 'http://c', credentials: { username: 'u', password_env: 'PW' } },
        ],
      },
      't',
      { PW: 'from-env' },
    );
    assert.deepEqual(
      c.upstreams.map((u) => u.credentials?.password),
      ['inline', 'from-file', 'from-env'],
    );
  } finally {
    dir.remove();
  }
});

test('upstream problems name their key path', () => {
  assert.throws(
    () =>
      validateConfig(
        {
          default_upstream: 'nope.io',
          upstreams: [
            { name: 'a.io' },
            { name: 'a.io', url: 'http://x', credentials: { username: 'u', password_env: 'MISSING' } },
            { name: 'b.io', url: 'http://y', proxy: 'ftp://p' },
          ],
        },
        't',
        {},
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      assert.match(text, /upstreams\[2\]\.proxy: must be an http/);
      return true;
    },
  );
  assert.throws(
    () =>
      validateConfig(
        {
          default_upstream: 'nope.io',
          upstreams: [
            { name: 'a.io' },
            { name: 'a.io', url: 'http://x', credentials: { username: 'u', password_env: 'MISSING' } },
          ],
        },
        't',
        {},
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      assert.match(text, /default_upstream: names no configured upstream/);
      assert.match(text, /upstreams\[0\]\.url: required/);
      assert.match(text, /upstreams\[1\]\.credentials\.password_env: MISSING is not set/);
      return true;
    },
  );
});

test('coordination.redis.url: omitted is in-process, DOCXY_* sets it, a non-redis URL names the key', () => {
  assert.equal(validateConfig({}, 'x').coordination.redis, undefined);
  const env = { DOCXY_COORDINATION__REDIS__URL: 'redis://127.0.0.1:6379/0' };
  assert.equal(loadConfig({}, env).coordination.redis?.url, 'redis://127.0.0.1:6379/0');
  assert.throws(
    () => validateConfig({ coordination: { redis: { url: 'http://x' } } }, 'x'),
    (err: unknown) =>
      err instanceof ConfigError && err.problems.some((p) => p.startsWith('coordination.redis.url')),
  );
});

test('cache.memory.manifest_bytes: 16 MiB by default, a size from the file or DOCXY_*, key path on errors', () => {
  assert.equal(loadConfig({}, {}).cache.memory.manifest_bytes, 16 * 1024 * 1024);
  const example = validateConfig(readConfigFile('config.example.yaml'), 'config.example.yaml');
  assert.equal(example.cache.memory.manifest_bytes, 16 * 1024 * 1024);
  const env = loadConfig({}, { DOCXY_CACHE__MEMORY__MANIFEST_BYTES: '0' });
  assert.equal(env.cache.memory.manifest_bytes, 0);
  assert.equal(
    validateConfig({ cache: { memory: { manifest_bytes: '2MiB' } } }, 'x').cache.memory.manifest_bytes,
    2 * 1024 * 1024,
  );
  assert.throws(
    () => validateConfig({ cache: { memory: { manifest_bytes: 'lots' } } }, 'x'),
    (err: unknown) => err instanceof ConfigError && err.message.includes('cache.memory.manifest_bytes'),
  );
});
