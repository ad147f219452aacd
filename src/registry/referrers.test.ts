import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest } from './reference.ts';
import { emptyReferrers, referrersFromIndex, referrersTag } from './referrers.ts';

const hex64 = 'a'.repeat(32) + 'b'.repeat(32);

test('the Referrers Tag is <alg>-<hex>, the hex cut to 64 characters (spec table)', () => {
  const sha256 = parseDigest(`sha256:${hex64}`);
  const sha512 = parseDigest(`sha512:${'c'.repeat(128)}`);
  assert.ok(sha256 !== undefined && sha512 !== undefined);
  assert.equal(referrersTag(sha256), `sha256-${hex64}`);
  assert.equal(referrersTag(sha512), `sha512-${'c'.repeat(64)}`);
});

test('the empty answer is an OCI image index with no manifests', () => {
  assert.deepEqual(JSON.parse(emptyReferrers().toString('utf8')), {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [],
  });
});

const sbom = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${'1'.repeat(64)}`,
  size: 10,
  artifactType: 'application/vnd.example.sbom.v1',
};
const sig = { ...sbom, digest: `sha256:${'2'.repeat(64)}`, artifactType: 'application/vnd.example.sig.v1' };
const index = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [sbom, sig],
  }),
);

test('unfiltered, the index bytes are answered unchanged', () => {
  const got = referrersFromIndex(index, undefined);
  assert.equal(got.filtered, false);
  assert.equal(got.bytes, index);
});

test('artifactType keeps only descriptors of that type and says it filtered', () => {
  const got = referrersFromIndex(index, 'application/vnd.example.sig.v1');
  assert.equal(got.filtered, true);
  assert.deepEqual((JSON.parse(got.bytes.toString('utf8')) as { manifests: unknown[] }).manifests, [sig]);
  const none = referrersFromIndex(index, 'application/vnd.other');
  assert.deepEqual((JSON.parse(none.bytes.toString('utf8')) as { manifests: unknown[] }).manifests, []);
});

test('bytes that are no index (a foreign tag of that name) mean no referrers', () => {
  for (const bytes of [
    Buffer.from('not json'),
    Buffer.from('{"schemaVersion":2,"layers":[]}'),
    Buffer.from('[]'),
  ]) {
    const got = referrersFromIndex(bytes, undefined);
    assert.deepEqual(got.bytes, emptyReferrers());
    assert.equal(got.filtered, false);
  }
});
