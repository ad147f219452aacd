import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { createMemoryRecords } from '../coordination/memory/memory-coordination.ts';
import type { UpstreamResponse } from '../upstream/registry-client.ts';
import { createAccessProofs } from './access-proofs.ts';

test('a proof made on one replica is reused by another sharing the records (one upstream HEAD)', async () => {
  const records = createMemoryRecords();
  const a = createAccessProofs(60_000, Date.now, records);
  const b = createAccessProofs(60_000, Date.now, records);
  let heads = 0;
  const check = (): Promise<UpstreamResponse> => {
    heads++;
    return Promise.resolve({
      status: 200,
      headers: {},
      body: Readable.from([]),
      url: 'http://hub/',
    });
  };
  const ask = {
    credential: 'alice:secret',
    upstream: 'hub',
    name: 'org/private',
    digest: 'sha256:aa',
    check,
  };
  assert.equal(await a.prove(ask), true);
  assert.equal(await b.prove(ask), true);
  assert.equal(heads, 1);
  assert.equal(await b.prove({ ...ask, credential: 'mallory:x' }), true);
  assert.equal(heads, 2, 'another credential proves for itself');
});
