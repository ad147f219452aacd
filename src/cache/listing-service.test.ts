import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { readCapped, readUpTo } from '../upstream/body.ts';
import { paths } from '../storage/paths.ts';
import { canonicalQuery, decodeListing, encodeListing } from './listing-service.ts';

test('the query key does not depend on parameter order', () => {
  assert.equal(canonicalQuery('n=2&last=b'), canonicalQuery('last=b&n=2'));
  assert.equal(canonicalQuery('last=b&n=2'), 'last=b&n=2');
  assert.equal(canonicalQuery(''), '');
  assert.notEqual(canonicalQuery('n=2'), canonicalQuery('n=3'));
});

test('listing keys: one per repository, subject and query, each a safe path', () => {
  const subject = `sha256:${'a'.repeat(64)}`;
  const k1 = paths.tagList('docker.io', 'library/x', 'n=1');
  assert.match(k1, /^listings\/docker\.io\/library\/x\/_tags\/[0-9a-f]{64}$/);
  assert.notEqual(k1, paths.tagList('docker.io', 'library/x', 'n=2'));
  assert.notEqual(k1, paths.tagList('docker.io', 'library/y', 'n=1'));
  const r = paths.referrers('docker.io', 'library/x', subject, 'artifactType=a%2Fb');
  assert.match(
    r,
    new RegExp(`^listings/docker\\.io/library/x/_referrers/sha256/${'a'.repeat(64)}/[0-9a-f]{64}$`),
  );
  assert.notEqual(r, paths.referrers('docker.io', 'library/x', subject, ''));
  // A hostile `last` cannot escape the folder: it is hashed.
  assert.match(paths.tagList('u', 'n', 'last=../../etc'), /\/_tags\/[0-9a-f]{64}$/);
});

test('a stored listing round-trips its exact bytes and headers', () => {
  const body = Buffer.from('{"name":"x","tags":["a\\nb"]}\n\u00e9');
  const l = {
    checkedAt: 1234,
    headers: { 'content-type': 'application/json', link: '</v2/x>; rel="next"' },
    body,
  };
  const back = decodeListing(encodeListing(l));
  assert.ok(back !== undefined);
  assert.equal(back.checkedAt, 1234);
  assert.deepEqual(back.headers, l.headers);
  assert.deepEqual(back.body, body);
  assert.equal(decodeListing(Buffer.from('no header line')), undefined);
  assert.equal(decodeListing(Buffer.from('{"headers":{}}\nbody')), undefined);
});

test('readUpTo: a small body whole, a large one as a stream of all its bytes', async () => {
  const chunks = [Buffer.alloc(3, 1), Buffer.alloc(3, 2), Buffer.alloc(3, 3)];
  const small = await readUpTo(Readable.from(chunks), 9);
  assert.ok(Buffer.isBuffer(small));
  assert.equal(small.length, 9);
  const large = await readUpTo(Readable.from(chunks), 4);
  assert.ok(!Buffer.isBuffer(large));
  const out: Buffer[] = [];
  for await (const c of large) out.push(c as Buffer);
  assert.deepEqual(Buffer.concat(out), Buffer.concat(chunks));
  await assert.rejects(readCapped(Readable.from(chunks), 4, 'manifest'), /larger than 4 bytes/);
});
