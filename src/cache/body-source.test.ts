import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { PositionalReader } from '../storage/driver.ts';
import { ClientGoneError, createBufferPool, positionalBody, type ByteSink } from './body-source.ts';

function bytes(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >>> 9)) & 0xff;
  return b;
}

function readerOf(data: Buffer): PositionalReader & { closed: number } {
  const r = {
    closed: 0,
    readInto(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
      const n = Math.max(0, Math.min(length, data.length - position));
      data.copy(buf, offset, position, position + n);
      return new Promise((resolve) =>
        setImmediate(() => {
          resolve(n);
        }),
      );
    },
    close(): Promise<void> {
      r.closed++;
      return Promise.resolve();
    },
  };
  return r;
}

/**
 * A slow connection: it keeps every buffer for a while and only "sends" it (copies it out) when it
 * releases it, so a buffer reused before its release shows up as wrong bytes.
 */
function slowSink(opts: { holdMs: number; closeAfter?: number }): ByteSink & {
  sent(): Buffer;
  maxHeld: number;
  close(): void;
} {
  const out: Buffer[] = [];
  let held = 0;
  let closed = false;
  let total = 0;
  let drainWaiter: (() => void) | undefined;
  const pending: (() => void)[] = [];
  const sink = {
    maxHeld: 0,
    get closed() {
      return closed;
    },
    sent: () => Buffer.concat(out),
    close() {
      closed = true;
      for (const p of pending.splice(0)) p();
    },
    write(buf: Buffer, release?: () => void): boolean {
      if (closed) {
        release?.();
        return false;
      }
      total += buf.length;
      held++;
      sink.maxHeld = Math.max(sink.maxHeld, held);
      const slot = out.length;
      out.push(Buffer.alloc(0));
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        if (!closed) out[slot] = Buffer.from(buf); // what the wire carries is what is there now
        held--;
        release?.();
        const w = drainWaiter;
        drainWaiter = undefined;
        w?.();
      };
      pending.push(finish);
      setTimeout(finish, opts.holdMs);
      if (opts.closeAfter !== undefined && total >= opts.closeAfter)
        setImmediate(() => {
          sink.close();
        });
      return held < 2;
    },
    writeAll(bufs: readonly Buffer[]): boolean {
      let ok = true;
      for (const b of bufs) ok = sink.write(b);
      return ok;
    },
    drained(): Promise<void> {
      if (closed) return Promise.reject(new ClientGoneError());
      if (held < 2) return Promise.resolve();
      return new Promise<void>((resolve) => (drainWaiter = resolve));
    },
  };
  return sink;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('positionalBody', () => {
  it('sends exactly [start, end) through reused buffers, never reusing one the sink still holds', async () => {
    const data = bytes(1_000_003);
    const pool = createBufferPool(64 * 1024, 4);
    // Two transfers at once share the pool: a buffer released by one must not clobber the other.
    const a = slowSink({ holdMs: 3 });
    const b = slowSink({ holdMs: 1 });
    let endedA = 0;
    await Promise.all([
      positionalBody(readerOf(data), 0, data.length, pool, () => endedA++).pipeTo(a),
      positionalBody(readerOf(data), 12_345, 987_654, pool).pipeTo(b),
    ]);
    await new Promise((r) => setTimeout(r, 20)); // the last releases
    assert.equal(sha(a.sent()), sha(data));
    assert.equal(sha(b.sent()), sha(data.subarray(12_345, 987_654)));
    assert.ok(a.maxHeld <= 2, `held ${a.maxHeld} buffers at once`);
    assert.equal(endedA, 1);
  });

  it('stops when the client goes, closes the reader, and runs onEnd once', async () => {
    const data = bytes(3_000_000);
    const pool = createBufferPool(64 * 1024, 4);
    const reader = readerOf(data);
    let ended = 0;
    const sink = slowSink({ holdMs: 1, closeAfter: 500_000 });
    const body = positionalBody(reader, 0, data.length, pool, () => ended++);
    await assert.rejects(body.pipeTo(sink), ClientGoneError);
    body.cancel();
    assert.equal(ended, 1);
    assert.equal(reader.closed, 1);
  });

  it('a short object (the file shrank) is an error, not a short success', async () => {
    const data = bytes(100_000);
    const body = positionalBody(readerOf(data), 0, 200_000, createBufferPool(64 * 1024, 2));
    await assert.rejects(body.pipeTo(slowSink({ holdMs: 0 })), /unexpected end of object at 100000/);
  });

  it('cancel without sending releases the reader once', () => {
    const reader = readerOf(bytes(10));
    let ended = 0;
    const body = positionalBody(reader, 0, 10, createBufferPool(1024, 1), () => ended++);
    body.cancel();
    body.cancel();
    assert.equal(ended, 1);
    assert.equal(reader.closed, 1);
  });
});

describe('createBufferPool', () => {
  it('hands back kept buffers and keeps at most `keep` idle ones of its own size', () => {
    const pool = createBufferPool(1024, 2);
    const a = pool.take();
    const b = pool.take();
    const c = pool.take();
    assert.equal(a.length, 1024);
    pool.give(a);
    pool.give(b);
    pool.give(c); // beyond keep: dropped
    pool.give(Buffer.alloc(10)); // not its size: dropped
    const got = new Set([pool.take(), pool.take()]);
    assert.ok(got.has(a) && got.has(b));
    assert.ok(!new Set([pool.take()]).has(c));
  });

  it('with large buffers: hands out at most `max` of them at once, then its own size, reusing both', () => {
    const pool = createBufferPool(1024, 4, { size: 4096, max: 2 });
    const l1 = pool.take();
    const l2 = pool.take();
    const s1 = pool.take();
    assert.deepEqual([l1.length, l2.length, s1.length], [4096, 4096, 1024]);
    pool.give(l1);
    const again = pool.take();
    assert.equal(again, l1, 'a large buffer given back is handed out again');
    assert.equal(pool.take().length, 1024, 'two large ones are out again');
    pool.give(again);
    pool.give(l2);
    pool.give(s1);
    const next = [pool.take(), pool.take(), pool.take()];
    assert.deepEqual(
      next.map((b) => b.length),
      [4096, 4096, 1024],
    );
    assert.ok(next.includes(l1) && next.includes(l2) && next.includes(s1));
  });

  it('refuses large buffers that are not larger than its chunk size', () => {
    assert.throws(() => createBufferPool(1024, 1, { size: 1024, max: 1 }), /must be larger/);
  });

  it('a transfer through large buffers sends the same bytes', async () => {
    const data = bytes(1_000_003);
    const pool = createBufferPool(64 * 1024, 4, { size: 256 * 1024, max: 1 });
    const a = slowSink({ holdMs: 1 });
    const b = slowSink({ holdMs: 1 });
    await Promise.all([
      positionalBody(readerOf(data), 0, data.length, pool).pipeTo(a),
      positionalBody(readerOf(data), 7, 900_000, pool).pipeTo(b),
    ]);
    await new Promise((r) => setTimeout(r, 20)); // the last releases
    assert.equal(sha(a.sent()), sha(data));
    assert.equal(sha(b.sent()), sha(data.subarray(7, 900_000)));
  });
});
