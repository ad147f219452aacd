import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createWritableProbe } from './writable-probe.ts';

describe('writable probe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'docxy-probe-'));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes, syncs and removes its file; the answer is kept for cacheMs; concurrent checks share one probe', async () => {
    let t = 1_000_000;
    const probe = createWritableProbe({ dir, cacheMs: 1000, now: () => t });
    const [a, b] = await Promise.all([probe.check(), probe.check()]);
    assert.equal(a.writable, true);
    assert.equal(a, b, 'one probe for both callers');
    assert.deepEqual(readdirSync(join(dir, 'tmp')), [], 'no probe file left');
    t += 999;
    assert.equal(await probe.check(), a, 'inside the window: the kept answer');
    t += 1;
    const c = await probe.check();
    assert.notEqual(c, a, 'past the window: probed again');
    assert.equal(c.checkedAt, new Date(t).toISOString());
  });

  it('a data directory where tmp cannot be created is not writable, with the error code only', async () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    const r = await createWritableProbe({ dir: file }).check();
    assert.equal(r.writable, false);
    assert.equal(r.error, 'ENOTDIR');
  });
});
