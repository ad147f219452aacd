import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from './errors.ts';
import { isValidName, isValidTag, parseDigest, parseV2Path } from './reference.ts';

const hex64 = 'a'.repeat(64);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof RegistryError) return err.code;
    throw err;
  }
  return 'none';
}

test('names follow the distribution-spec grammar', () => {
  for (const ok of ['alpine', 'library/alpine', 'a/b/c', 'my-org/my_app', 'a__b', 'a.b-c', 'x1/y--z'])
    assert.ok(isValidName(ok), ok);
  for (const bad of [
    'Alpine',
    '-a',
    'a-',
    'a//b',
    '/a',
    'a/',
    'a..b',
    'a___b',
    '../etc',
    'a%2Fb',
    '',
    'a'.repeat(256),
  ]) {
    assert.ok(!isValidName(bad), bad);
  }
});

test('tags follow the grammar and are at most 128 characters', () => {
  assert.ok(isValidTag('1.0'));
  assert.ok(isValidTag('_x'));
  assert.ok(isValidTag('a'.repeat(128)));
  assert.ok(!isValidTag('a'.repeat(129)));
  assert.ok(!isValidTag('.x'));
  assert.ok(!isValidTag('-x'));
  assert.ok(!isValidTag('a/b'));
});

test('digests: sha256 with 64 and sha512 with 128 lower-case hex; others rejected', () => {
  assert.equal(parseDigest(`sha256:${hex64}`)?.algorithm, 'sha256');
  assert.equal(parseDigest(`sha512:${'b'.repeat(128)}`)?.algorithm, 'sha512');
  assert.equal(parseDigest(`sha256:${'A'.repeat(64)}`), undefined);
  assert.equal(parseDigest('sha256:abc'), undefined);
  assert.equal(parseDigest(`md5:${hex64}`), undefined);
  assert.equal(parseDigest(hex64), undefined);
});

test('v2 paths map to endpoints, names may contain slashes', () => {
  assert.deepEqual(parseV2Path('/v2/'), { kind: 'base' });
  assert.deepEqual(parseV2Path('/v2'), { kind: 'base' });
  assert.deepEqual(parseV2Path('/v2/a/b/manifests/1.0'), {
    kind: 'manifest',
    name: 'a/b',
    reference: '1.0',
    referenceIsDigest: false,
  });
  assert.deepEqual(parseV2Path(`/v2/a/manifests/sha256:${hex64}`), {
    kind: 'manifest',
    name: 'a',
    reference: `sha256:${hex64}`,
    referenceIsDigest: true,
  });
  assert.deepEqual(parseV2Path(`/v2/a/blobs/sha256:${hex64}`), {
    kind: 'blob',
    name: 'a',
    digest: `sha256:${hex64}`,
  });
  assert.deepEqual(parseV2Path('/v2/a/tags/list'), { kind: 'tags', name: 'a' });
  assert.deepEqual(parseV2Path(`/v2/a/referrers/sha256:${hex64}`), {
    kind: 'referrers',
    name: 'a',
    digest: `sha256:${hex64}`,
  });
  assert.deepEqual(parseV2Path('/v2/a/blobs/uploads/'), { kind: 'upload', name: 'a' });
});

test('invalid path parts map to their OCI error codes', () => {
  assert.equal(
    codeOf(() => parseV2Path('/v2/UPPER/manifests/1')),
    'NAME_INVALID',
  );
  assert.equal(
    codeOf(() => parseV2Path('/v2/../../etc/manifests/1')),
    'NAME_INVALID',
  );
  assert.equal(
    codeOf(() => parseV2Path('/v2/a/manifests/.bad')),
    'TAG_INVALID',
  );
  assert.equal(
    codeOf(() => parseV2Path('/v2/a/manifests/sha256:zz')),
    'DIGEST_INVALID',
  );
  assert.equal(
    codeOf(() => parseV2Path('/v2/a/blobs/notadigest')),
    'DIGEST_INVALID',
  );
  assert.equal(
    codeOf(() => parseV2Path('/v2/a/whatever')),
    'NOT_FOUND',
  );
});
