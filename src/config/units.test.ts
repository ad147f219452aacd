import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSize } from './units.ts';

describe('formatSize', () => {
  it('prints bytes below 1 KiB, then one decimal of the largest unit that fits', () => {
    assert.equal(formatSize(0), '0 B');
    assert.equal(formatSize(1023), '1023 B');
    assert.equal(formatSize(1024), '1.0 KiB');
    assert.equal(formatSize(1536), '1.5 KiB');
    assert.equal(formatSize(5 * 1024 * 1024), '5.0 MiB');
    assert.equal(formatSize(50 * 1024 ** 3), '50.0 GiB');
    assert.equal(formatSize(3 * 1024 ** 5), '3072.0 TiB');
  });
});
