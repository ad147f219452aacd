import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createByteLru } from './byte-lru.ts';

const lru = (maxBytes: number) => createByteLru<Buffer>({ maxBytes, sizeOf: (b) => b.length });
const bytes = (n: number): Buffer => Buffer.alloc(n);

test('keeps values until their bytes pass the bound, then drops the least recently used', () => {
  const m = lru(100);
  m.set('a', bytes(25));
  m.set('b', bytes(25));
  m.set('c', bytes(25));
  m.set('d', bytes(25));
  assert.equal(m.bytes, 100);
  m.get('a'); // now b is the least recently used
  m.set('e', bytes(10));
  assert.equal(m.get('b'), undefined);
  assert.deepEqual(
    ['a', 'c', 'd', 'e'].map((k) => m.get(k)?.length),
    [25, 25, 25, 10],
  );
  assert.equal(m.bytes, 85);
  assert.equal(m.size, 4);
});

test('evicts as many entries as it takes to fit a new one', () => {
  const m = lru(100);
  for (const k of ['a', 'b', 'c', 'd', 'e']) m.set(k, bytes(20));
  m.set('big', bytes(25));
  assert.equal(m.get('a'), undefined);
  assert.equal(m.get('b'), undefined);
  assert.equal(m.bytes, 85);
});

test('a value over a quarter of the bound is not kept, and replaces nothing else', () => {
  const m = lru(100);
  m.set('a', bytes(20));
  m.set('huge', bytes(26));
  assert.equal(m.get('huge'), undefined);
  assert.equal(m.get('a')?.length, 20);
  assert.equal(m.bytes, 20);
});

test('replacing a key counts only the new value', () => {
  const m = lru(100);
  m.set('a', bytes(20));
  m.set('a', bytes(5));
  assert.equal(m.bytes, 5);
  assert.equal(m.size, 1);
});

test('delete frees the bytes; deleting an absent key is fine', () => {
  const m = lru(100);
  m.set('a', bytes(20));
  m.delete('a');
  m.delete('nope');
  assert.equal(m.get('a'), undefined);
  assert.equal(m.bytes, 0);
});

test('a bound of 0 keeps nothing', () => {
  const m = lru(0);
  m.set('a', bytes(1));
  assert.equal(m.get('a'), undefined);
  assert.equal(m.size, 0);
});
