import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { configCheck } from '../cli/config-check.ts';
import { loadConfig } from './load.ts';

test('warm: defaults to never, with linux/amd64 and two at a time', () => {
  assert.deepEqual(loadConfig({}, {}).warm, {
    interval: 0,
    images: [],
    platforms: ['linux/amd64'],
    concurrency: 2,
  });
});

test('warm: lists come from DOCXY_* as YAML lists or comma-separated text', () => {
  const c = loadConfig(
    {},
    {
      DOCXY_WARM__INTERVAL: '6h',
      DOCXY_WARM__IMAGES: '[alpine:3.20, ghcr.io/owner/app:1]',
      DOCXY_WARM__PLATFORMS: 'linux/amd64,linux/arm64/v8',
      DOCXY_WARM__CONCURRENCY: '4',
    },
  );
  assert.deepEqual(c.warm, {
    interval: 6 * 3600_000,
    images: ['alpine:3.20', 'ghcr.io/owner/app:1'],
    platforms: ['linux/amd64', 'linux/arm64/v8'],
    concurrency: 4,
  });
  assert.equal(loadConfig({}, { DOCXY_WARM__PLATFORMS: 'all' }).warm.platforms, 'all');
});

test('config check names the key path of a bad image reference or platform', () => {
  const dir = makeTmpDir('warm-cfg');
  try {
    const file = join(dir.path, 'c.yaml');
    writeFileSync(
      file,
      stringify({ warm: { interval: '1h', images: ['alpine:3.20', 'Bad/Name:1'], platforms: ['linux'] } }),
    );
    let out = '';
    const code = configCheck(file, (s) => (out += s));
    assert.equal(code, 1, out);
    assert.match(out, /warm\.images\[1\]: not an image reference/);
    assert.match(out, /warm\.platforms\[0\]: not os\/arch/);
  } finally {
    dir.remove();
  }
});
