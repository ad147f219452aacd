import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manifestRefs } from './manifest.ts';

test('an image manifest refers to its config and layers', () => {
  const m = {
    schemaVersion: 2,
    config: { digest: 'sha256:c' },
    layers: [{ digest: 'sha256:l1' }, { digest: 'sha256:l2' }],
  };
  assert.deepEqual(manifestRefs(Buffer.from(JSON.stringify(m))), {
    blobs: ['sha256:c', 'sha256:l1', 'sha256:l2'],
    manifests: [],
  });
});

test('an index refers to its child manifests', () => {
  const m = { schemaVersion: 2, manifests: [{ digest: 'sha256:a' }, { digest: 'sha256:b' }] };
  assert.deepEqual(manifestRefs(Buffer.from(JSON.stringify(m))), {
    blobs: [],
    manifests: ['sha256:a', 'sha256:b'],
  });
});

test('bytes that are not JSON refer to nothing', () => {
  assert.deepEqual(manifestRefs(Buffer.from('nope')), { blobs: [], manifests: [] });
});
