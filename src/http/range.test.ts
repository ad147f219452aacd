import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contentRange, parseRange } from './range.ts';

test('single ranges: closed, open-ended, suffix', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'partial', start: 0, end: 10 });
  assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'partial', start: 90, end: 100 });
  assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'partial', start: 90, end: 100 });
  assert.deepEqual(parseRange('bytes=-1000', 100), { kind: 'partial', start: 0, end: 100 });
  assert.deepEqual(parseRange('bytes=50-1000', 100), { kind: 'partial', start: 50, end: 100 });
});

test('unsatisfiable and ignored ranges', () => {
  assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=5-4', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=0-1,5-6', 100), { kind: 'full' });
  assert.deepEqual(parseRange('items=0-1', 100), { kind: 'full' });
  assert.deepEqual(parseRange(undefined, 100), { kind: 'full' });
});

test('Content-Range is inclusive', () => {
  assert.equal(contentRange(0, 10, 100), 'bytes 0-9/100');
});
