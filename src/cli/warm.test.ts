import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePlatform } from '../warm/warm-plan.ts';
import { createProgress } from './warm-progress.ts';
import { parseImage } from '../warm/image-ref.ts';

describe('parseImage', () => {
  it('resolves references the way docker does', () => {
    assert.deepEqual(parseImage('alpine:3.20', true), { name: 'library/alpine', reference: '3.20' });
    assert.deepEqual(parseImage('alpine', true), { name: 'library/alpine', reference: 'latest' });
    assert.deepEqual(parseImage('alpine', false), { name: 'alpine', reference: 'latest' });
    assert.deepEqual(parseImage('docker.io/alpine:1', true), { name: 'library/alpine', reference: '1' });
    assert.deepEqual(parseImage('someuser/app:2', true), { name: 'someuser/app', reference: '2' });
    assert.deepEqual(parseImage('ghcr.io/owner/app:1', true), { name: 'ghcr.io/owner/app', reference: '1' });
    assert.deepEqual(parseImage('localhost:5000/x/y', true), {
      name: 'localhost:5000/x/y',
      reference: 'latest',
    });
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseImage(`alpine@${digest}`, true), { name: 'library/alpine', reference: digest });
  });

  it('refuses what is not a reference', () => {
    for (const bad of ['UPPER:1', 'alpine@sha256:short', 'a:b:c', 'alpine:', '']) {
      assert.equal(parseImage(bad, true), undefined, bad);
    }
  });
});

describe('parsePlatform', () => {
  it('reads os/arch[/variant]', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), {
      os: 'linux',
      architecture: 'amd64',
      variant: undefined,
    });
    assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    for (const bad of ['linux', 'linux/', 'linux/arm/', 'a/b/c/d'])
      assert.equal(parsePlatform(bad), undefined, bad);
  });
});

describe('createProgress', () => {
  it('writes plain lines without escapes when not a TTY', () => {
    let out = '';
    const p = createProgress((s) => (out += s), false);
    const img = p.add('library/alpine:3.20');
    p.tick();
    p.finished(img, 'warm library/alpine:3.20: 2 blobs, 1 KiB, 0.1 s');
    p.end('warmed 1/1 images');
    assert.equal(out, 'warm library/alpine:3.20: 2 blobs, 1 KiB, 0.1 s\nwarmed 1/1 images\n');
  });

  it('redraws every line in place on a TTY, with a total, rate and ETA', () => {
    let out = '';
    let t = 0;
    const p = createProgress(
      (s) => (out += s),
      true,
      () => t,
    );
    const img = p.add('library/alpine:3.20');
    img.state = 'pulling';
    img.total = 2048;
    t = 1000;
    img.done = 1024;
    p.tick();
    assert.ok(
      out.endsWith(
        '\u001b[2A\r\u001b[2Klibrary/alpine:3.20  [############------------]  50% 1.0 KiB/2.0 KiB\n\r\u001b[2Ktotal  [############------------]  50% 1.0 KiB/2.0 KiB  1.0 KiB/s  ETA 1s\n',
      ),
      JSON.stringify(out),
    );
  });
});
