import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatChallenge, parseChallenge, rewriteRealm } from './auth-challenge.ts';

test('parses a Docker Hub style Bearer challenge', () => {
  const c = parseChallenge(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
  );
  assert.deepEqual(c, {
    scheme: 'bearer',
    params: {
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: 'repository:library/alpine:pull',
    },
  });
});

test('parses quoted commas, escapes, unquoted values and Basic', () => {
  const c = parseChallenge(
    'Bearer realm="http://x/t",scope="repository:a:pull,push",error="insufficient_scope"',
  );
  assert.equal(c?.params.scope, 'repository:a:pull,push');
  assert.equal(parseChallenge('Bearer realm="a\\"b"')?.params.realm, 'a"b');
  assert.equal(parseChallenge('Basic realm=Registry')?.params.realm, 'Registry');
  assert.equal(parseChallenge('Basic')?.scheme, 'basic');
  assert.equal(parseChallenge(''), undefined);
});

test('rewrites the realm and keeps service and scope', () => {
  const out = rewriteRealm(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull"',
    'http://mirror:5000/auth/token',
  );
  assert.equal(
    out,
    'Bearer realm="http://mirror:5000/auth/token",service="registry.docker.io",scope="repository:library/a:pull"',
  );
  assert.equal(
    rewriteRealm('Basic realm="Registry Realm"', 'http://m/auth/token'),
    'Basic realm="Registry Realm"',
  );
});

test('formats and parses back the same challenge', () => {
  const c = { scheme: 'bearer', params: { realm: 'http://a/"q"', service: 's' } };
  assert.deepEqual(parseChallenge(formatChallenge(c)), c);
});
