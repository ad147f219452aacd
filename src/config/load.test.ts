import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { ConfigError, loadConfig, readConfigFile, validateConfig } from './load.ts';

test('defaults: Docker Hub upstream on 0.0.0.0:5000 with library prefix', () => {
  const c = loadConfig({}, {});
  assert.equal(c.listen, '0.0.0.0:5000');
  assert.equal(c.upstream.url, 'https://registry-1.docker.io');
  assert.equal(c.upstream.library_prefix, true);
  assert.equal(c.upstream.timeouts.connect, 10_000);
  assert.equal(c.public_url, undefined);
});

test('config.example.yaml loads and documents real values', () => {
  const c = validateConfig(readConfigFile('config.example.yaml'), 'config.example.yaml');
  assert.equal(c.public_url, 'http://mirror.example:5000');
  assert.equal(c.upstream.timeouts.idle, 60_000);
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
    assert.equal(c.upstream.url, 'http://file.example');
    assert.equal(c.upstream.library_prefix, false);
    assert.equal(c.upstream.timeouts.connect, 1000);
    assert.equal(c.upstream.timeouts.idle, 120_000);
    const c2 = loadConfig({ config: file }, { DOCXY_UPSTREAM: 'http://env.example/' });
    assert.equal(c2.upstream.url, 'http://env.example');
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
