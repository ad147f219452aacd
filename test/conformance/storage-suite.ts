/**
 * The StorageDriver conformance suite: every behaviour the interface in src/storage/driver.ts
 * promises, and nothing a particular backend happens to do. Each driver's test file calls
 * `runStorageConformance` with a factory that builds a fresh, empty store per test and a cleanup
 * that removes it (run in an afterEach hook, so also when the test fails).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ListEntry, ObjectWriter, StorageDriver } from '../../src/storage/driver.ts';

export interface DriverUnderTest {
  readonly driver: StorageDriver;
  readonly cleanup: () => Promise<void>;
}

const MiB = 1024 * 1024;

/** Deterministic bytes that differ by seed and by position, so swapped or shifted chunks show. */
export function pattern(seed: number, size: number, offset = 0): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = ((offset + i) * 31 + seed * 97 + ((offset + i) >>> 8)) & 0xff;
  return buf;
}

/** Every chunk of a stream, checked to be a Buffer. */
async function* chunksOf(stream: Readable): AsyncGenerator<Buffer> {
  const it: AsyncIterable<unknown> = stream;
  for await (const chunk of it) {
    assert.ok(Buffer.isBuffer(chunk), 'streams must yield Buffers');
    yield chunk;
  }
}

/** Reads a small stream whole (never used for the large object). */
async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunksOf(stream)) parts.push(chunk);
  return Buffer.concat(parts);
}

async function readAll(stream: Readable | undefined): Promise<Buffer> {
  assert.ok(stream !== undefined, 'expected a stream, got undefined (object absent)');
  return collect(stream);
}

/** Compares bytes without assert's diff (slow and unreadable on large buffers). */
export function assertBytes(actual: Buffer | undefined, expected: Buffer, what = 'bytes'): void {
  assert.ok(actual !== undefined, `${what}: got undefined (object absent)`);
  if (actual.equals(expected)) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  assert.fail(
    `${what}: got ${actual.length} bytes, expected ${expected.length}; first difference at offset ${i}`,
  );
}

async function listAll(driver: StorageDriver, prefix: string): Promise<ListEntry[]> {
  const out: ListEntry[] = [];
  for await (const e of driver.list(prefix)) out.push(e);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

async function put(
  driver: StorageDriver,
  key: string,
  chunks: readonly Buffer[],
  metadata?: Record<string, string>,
): Promise<void> {
  const w = await driver.createWriter(key, metadata === undefined ? undefined : { metadata });
  try {
    for (const c of chunks) await w.write(c);
    await w.commit();
  } catch (err) {
    await w.cancel();
    throw err;
  }
}

async function assertAbsent(driver: StorageDriver, key: string): Promise<void> {
  assert.equal(await driver.get(key), undefined, `get(${key}) should be undefined`);
  assert.equal(
    await driver.get(key, { start: 0, end: 1 }),
    undefined,
    `ranged get(${key}) should be undefined`,
  );
  assert.equal(await driver.getBytes(key), undefined, `getBytes(${key}) should be undefined`);
  assert.equal(await driver.stat(key), undefined, `stat(${key}) should be undefined`);
  assert.equal(await driver.open(key), undefined, `open(${key}) should be undefined`);
  assert.deepEqual(
    (await listAll(driver, key)).map((e) => e.key),
    [],
    `list(${key}) should be empty`,
  );
}

export function runStorageConformance(name: string, makeDriver: () => Promise<DriverUnderTest>): void {
  describe(`StorageDriver conformance: ${name}`, () => {
    let current: DriverUnderTest | undefined;
    /** Writers a test leaves open; cancelled after it, so a failing test releases them too. */
    let openWriters: ObjectWriter[] = [];

    beforeEach(async () => {
      current = await makeDriver();
    });

    afterEach(async () => {
      const writers = openWriters;
      openWriters = [];
      await Promise.allSettled(writers.map((w) => w.cancel()));
      const c = current;
      current = undefined;
      if (c !== undefined) await c.cleanup();
    });

    const drv = (): StorageDriver => {
      assert.ok(current !== undefined, 'driver not created');
      return current.driver;
    };
    const track = (w: ObjectWriter): ObjectWriter => {
      openWriters.push(w);
      return w;
    };

    it('has a non-empty name', () => {
      assert.equal(typeof drv().name, 'string');
      assert.ok(drv().name.length > 0);
    });

    it('write + commit: get, getBytes and stat return the exact bytes, size and metadata', async () => {
      const driver = drv();
      const key = 'manifests/sha256/ab/ab01';
      const chunks = [pattern(1, 10), pattern(2, 70_000), pattern(3, 1), pattern(4, 3000)];
      const data = Buffer.concat(chunks);
      const metadata = { mediaType: 'application/vnd.oci.image.manifest.v1+json', note: 'x y=z' };
      const before = Date.now();
      const w = track(await driver.createWriter(key, { metadata }));
      assert.equal(w.written, 0);
      let expected = 0;
      for (const c of chunks) {
        await w.write(c);
        expected += c.length;
        assert.equal(w.written, expected);
      }
      await w.commit();

      assertBytes(await readAll(await driver.get(key)), data);
      assertBytes(await driver.getBytes(key), data);
      const info = await driver.stat(key);
      assert.ok(info !== undefined);
      assert.equal(info.key, key);
      assert.equal(info.size, data.length);
      assert.deepEqual({ ...info.metadata }, metadata);
      assert.ok(info.lastAccess instanceof Date);
      assert.ok(!Number.isNaN(info.lastAccess.getTime()));
      assert.ok(
        Math.abs(info.lastAccess.getTime() - before) < 60_000,
        `lastAccess ${info.lastAccess.toISOString()} is not recent`,
      );
    });

    it('an object written without metadata has empty metadata', async () => {
      const driver = drv();
      await put(driver, 'blobs/sha256/cd/cd01', [pattern(5, 100)]);
      const info = await driver.stat('blobs/sha256/cd/cd01');
      assert.ok(info !== undefined);
      assert.deepEqual({ ...info.metadata }, {});
    });

    it('an empty object can be written and read back', async () => {
      const driver = drv();
      const key = 'tags/up/empty/_tag/none';
      await put(driver, key, []);
      assertBytes(await readAll(await driver.get(key)), Buffer.alloc(0));
      assertBytes(await driver.getBytes(key), Buffer.alloc(0));
      assert.equal((await driver.stat(key))?.size, 0);
      assert.deepEqual(
        (await listAll(driver, key)).map((e) => [e.key, e.size]),
        [[key, 0]],
      );
    });

    it('several buffers in one write land in order, as if written one by one', async () => {
      const driver = drv();
      const key = 'blobs/sha256/ab/several';
      const parts = [
        pattern(3, 70_000),
        pattern(5, 1),
        pattern(7, 300_000),
        Buffer.alloc(0),
        pattern(9, 12_345),
      ];
      const w = await driver.createWriter(key);
      await w.write(parts.slice(0, 2));
      await w.write(parts.slice(2));
      assert.equal(
        w.written,
        parts.reduce((n, b) => n + b.length, 0),
      );
      await w.commit();
      assertBytes(await driver.getBytes(key), Buffer.concat(parts));
    });

    it('a write of several parts of odd sizes round-trips (past the S3 minimum part size)', async () => {
      const driver = drv();
      const key = 'blobs/sha256/ab/parts';
      // 17 MiB + 13 in chunks of 3 MiB + 7: parts of an object store never align with the chunks.
      const size = 17 * MiB + 13;
      const data = pattern(33, size);
      const w = track(await driver.createWriter(key, { metadata: { mediaType: 'big' } }));
      for (let off = 0; off < size; off += 3 * MiB + 7) await w.write(data.subarray(off, off + 3 * MiB + 7));
      assert.equal(w.written, size);
      await w.commit();
      assertBytes(await driver.getBytes(key), data);
      assertBytes(
        await readAll(await driver.get(key, { start: 8 * MiB - 2, end: 8 * MiB + 2 })),
        data.subarray(8 * MiB - 2, 8 * MiB + 2),
      );
      assert.equal((await driver.stat(key))?.size, size);
      assert.deepEqual({ ...(await driver.stat(key))?.metadata }, { mediaType: 'big' });
      assert.deepEqual(
        (await listAll(driver, 'blobs/')).map((e) => [e.key, e.size]),
        [[key, size]],
      );
    });

    it('absent keys: get, getBytes and stat return undefined, list is empty', async () => {
      const driver = drv();
      await put(driver, 'blobs/sha256/ef/ef01', [pattern(6, 10)]);
      await assertAbsent(driver, 'blobs/sha256/ef/ef02');
      await assertAbsent(driver, 'nothing/here');
    });

    it('nothing is visible through get, getBytes, stat or list before commit', async () => {
      const driver = drv();
      const key = 'blobs/sha256/12/1201';
      const w = track(await driver.createWriter(key, { metadata: { mediaType: 'x' } }));
      await w.write(pattern(7, 50_000));
      await assertAbsent(driver, key);
      assert.deepEqual(await listAll(driver, ''), []);
      await w.commit();
      assert.equal((await driver.stat(key))?.size, 50_000);
    });

    it('cancel leaves nothing visible', async () => {
      const driver = drv();
      const key = 'blobs/sha256/34/3401';
      const w = track(await driver.createWriter(key, { metadata: { mediaType: 'x' } }));
      await w.write(pattern(8, 20_000));
      await w.cancel();
      await assertAbsent(driver, key);
      assert.deepEqual(await listAll(driver, ''), []);
    });

    it('cancel can be called twice', async () => {
      const driver = drv();
      const key = 'blobs/sha256/34/3402';
      const w = track(await driver.createWriter(key));
      await w.write(pattern(9, 1000));
      await w.cancel();
      await w.cancel();
      await assertAbsent(driver, key);
    });

    it('cancel of a replacing write leaves the previous object untouched', async () => {
      const driver = drv();
      const key = 'tags/up/name/_tag/latest';
      const old = pattern(10, 4000);
      await put(driver, key, [old], { mediaType: 'old' });
      const w = track(await driver.createWriter(key, { metadata: { mediaType: 'new' } }));
      await w.write(pattern(11, 9000));
      await w.cancel();
      assertBytes(await driver.getBytes(key), old);
      const info = await driver.stat(key);
      assert.ok(info !== undefined);
      assert.equal(info.size, old.length);
      assert.deepEqual({ ...info.metadata }, { mediaType: 'old' });
    });

    it('commit replaces an existing object atomically: readers see the old or the new bytes, never a mix', async () => {
      const driver = drv();
      const key = 'blobs/sha256/56/5601';
      const oldData = pattern(12, 3 * MiB + 5);
      const newData = pattern(13, 2 * MiB + 11);
      await put(driver, key, [oldData]);

      const w = track(await driver.createWriter(key));
      for (let off = 0; off < newData.length; off += MiB) await w.write(newData.subarray(off, off + MiB));

      let committed = false;
      const seen: ('old' | 'new')[] = [];
      const check = (b: Buffer | undefined, via: string): void => {
        assert.ok(b !== undefined, `${via}: the object must never be absent while it is replaced`);
        if (b.equals(oldData)) seen.push('old');
        else if (b.equals(newData)) seen.push('new');
        else assert.fail(`${via}: read ${b.length} bytes that are neither the old nor the new object`);
      };
      const readerLoop = async (i: number): Promise<void> => {
        do {
          if (i % 2 === 0) check(await driver.getBytes(key), 'getBytes');
          else {
            const s = await driver.get(key);
            check(s === undefined ? undefined : await collect(s), 'get');
          }
          await delay(0);
        } while (!committed);
      };
      // A stream opened before the commit and only read after it.
      const early = await driver.get(key);
      const loops = [0, 1, 2, 3].map(readerLoop);
      await delay(5);
      await w.commit();
      committed = true;
      await Promise.all(loops);
      check(early === undefined ? undefined : await collect(early), 'stream opened before commit');

      assert.ok(seen.length >= 5, `only ${seen.length} reads happened`);
      assertBytes(await driver.getBytes(key), newData);
      assert.equal((await driver.stat(key))?.size, newData.length);
      assert.deepEqual(
        (await listAll(driver, key)).map((e) => [e.key, e.size]),
        [[key, newData.length]],
      );
    });

    it('commit replaces the metadata along with the bytes', async () => {
      const driver = drv();
      const key = 'manifests/sha256/78/7801';
      await put(driver, key, [pattern(14, 10)], { mediaType: 'first', extra: 'only-in-first' });
      await put(driver, key, [pattern(15, 20)], { mediaType: 'second' });
      assert.deepEqual({ ...(await driver.stat(key))?.metadata }, { mediaType: 'second' });
      await put(driver, key, [pattern(16, 30)]);
      const info = await driver.stat(key);
      assert.ok(info !== undefined);
      assert.equal(info.size, 30);
      assert.deepEqual({ ...info.metadata }, {});
    });

    it('ranged get returns exactly [start, end), including empty, first-byte and last-byte ranges', async () => {
      const driver = drv();
      const key = 'blobs/sha256/9a/9a01';
      const size = 2 * MiB + MiB / 2 + 3;
      const data = pattern(17, size);
      await put(driver, key, [data]);
      const ranges: [number, number][] = [
        [0, size],
        [0, 1],
        [size - 1, size],
        [0, 0],
        [12345, 12345],
        [size, size],
        [1, size - 1],
        [MiB - 3, MiB + 5],
        [MiB, 2 * MiB],
        [777, 778],
        [100, 200_000],
      ];
      for (const [start, end] of ranges) {
        const got = await readAll(await driver.get(key, { start, end }));
        assertBytes(got, data.subarray(start, end), `range [${start}, ${end})`);
      }
    });

    it('a 20 MiB object streams chunk by chunk with flat memory', async () => {
      const driver = drv();
      const key = 'blobs/sha256/bc/bc01';
      const chunkSize = MiB;
      const chunkCount = 20;
      const size = chunkSize * chunkCount;
      const expected = createHash('sha256');
      const w = track(await driver.createWriter(key));
      for (let i = 0; i < chunkCount; i++) {
        const c = pattern(18 + i, chunkSize, i * chunkSize);
        expected.update(c);
        await w.write(c);
      }
      await w.commit();
      const want = expected.digest('hex');

      const stream = await driver.get(key);
      assert.ok(stream !== undefined);
      const got = createHash('sha256');
      let total = 0;
      let chunks = 0;
      // What the stream holds at once: the chunk in hand plus what it has read ahead. (Measured on
      // the stream, not as process RSS, which also counts garbage awaiting a collection and made
      // this test fail at random under parallel test files.)
      let held = 0;
      for await (const chunk of chunksOf(stream)) {
        held = Math.max(held, chunk.length + stream.readableLength);
        got.update(chunk);
        total += chunk.length;
        chunks++;
      }
      assert.equal(total, size);
      assert.equal(got.digest('hex'), want);
      assert.ok(chunks > 1, 'the object must arrive in several chunks, not as one buffer');
      // Buffering the whole object would hold 20 MiB.
      assert.ok(
        held < 15 * MiB,
        `the stream held ${(held / MiB).toFixed(1)} MiB at once while streaming 20 MiB`,
      );
    });

    it("open: size, metadata and positional reads into the caller's buffer; absent keys give undefined", async () => {
      const driver = drv();
      const key = 'blobs/sha256/d0/d001';
      const data = pattern(45, 300_000);
      await put(driver, key, [data], { visibility: 'shared' });
      assert.equal(await driver.open('blobs/sha256/d0/d0ff'), undefined);
      const h = await driver.open(key);
      assert.ok(h !== undefined);
      try {
        assert.equal(h.size, data.length);
        assert.deepEqual({ ...h.metadata }, { visibility: 'shared' });
        // The same buffer reused for every read, as a server's pool does.
        const buf = Buffer.alloc(64 * 1024);
        const got: Buffer[] = [];
        for (let pos = 0; pos < h.size;) {
          const n = await h.readInto(buf, 0, Math.min(buf.length, h.size - pos), pos);
          assert.ok(n > 0, `read at ${pos} returned 0 before the end`);
          got.push(Buffer.from(buf.subarray(0, n)));
          pos += n;
        }
        assertBytes(Buffer.concat(got), data);
        // At an offset inside the buffer, from the middle of the object; past the end reads 0.
        const n = await h.readInto(buf, 10, 100, 1234);
        assert.equal(n, 100);
        assertBytes(buf.subarray(10, 110), data.subarray(1234, 1334));
        assert.equal(await h.readInto(buf, 0, 10, data.length), 0);
      } finally {
        await h.close();
        await h.close();
      }
    });

    it('an open handle keeps reading the object it opened after a delete or a replacing commit', async () => {
      const driver = drv();
      const key = 'blobs/sha256/d0/d002';
      const data = pattern(46, 100_000);
      await put(driver, key, [data]);
      const h = await driver.open(key);
      assert.ok(h !== undefined);
      try {
        await put(driver, key, [pattern(47, 100_000)]);
        const buf = Buffer.alloc(data.length);
        assert.equal(await h.readInto(buf, 0, buf.length, 0), data.length);
        assertBytes(buf, data);
        await driver.delete(key);
        assert.equal(await h.readInto(buf, 0, 10, 5), 10);
        assertBytes(buf.subarray(0, 10), data.subarray(5, 15));
      } finally {
        await h.close();
      }
    });

    it("a partial reader reads positionally into the caller's buffer while the writer appends", async () => {
      const driver = drv();
      const w = track(await driver.createWriter('blobs/sha256/de/de05'));
      const a = pattern(48, 5000);
      const b = pattern(49, 7000);
      await w.write(a);
      const r = await w.openPartialReader();
      try {
        const buf = Buffer.alloc(a.length + b.length);
        assert.equal(await r.readInto(buf, 0, a.length, 0), a.length);
        await w.write(b);
        let pos = a.length;
        while (pos < buf.length) pos += await r.readInto(buf, pos, buf.length - pos, pos);
        assertBytes(buf, Buffer.concat([a, b]));
      } finally {
        await r.close();
        await w.cancel();
      }
    });

    it('openPartialReader reads bytes already written while the writer is still open', async () => {
      const driver = drv();
      const key = 'blobs/sha256/de/de01';
      const a = pattern(40, 1000);
      const b = pattern(41, MiB + 77);
      const w = track(await driver.createWriter(key));
      await w.write(a);
      const r = await w.openPartialReader();
      try {
        assertBytes(await collect(r.read(0, a.length)), a);
        assertBytes(await collect(r.read(10, 11)), a.subarray(10, 11));
        assertBytes(await collect(r.read(5, 5)), Buffer.alloc(0));
        // Bytes written after the reader was opened are readable through it too.
        await w.write(b);
        assert.equal(w.written, a.length + b.length);
        const all = Buffer.concat([a, b]);
        assertBytes(await collect(r.read(0, w.written)), all);
        assertBytes(await collect(r.read(500, w.written)), all.subarray(500));
        assertBytes(await collect(r.read(w.written - 1, w.written)), all.subarray(all.length - 1));
        await assertAbsent(driver, key);
      } finally {
        await r.close();
      }
    });

    it('a partial reader opened before commit keeps working after the commit', async () => {
      const driver = drv();
      const key = 'blobs/sha256/de/de02';
      const data = pattern(42, 300_000);
      const w = track(await driver.createWriter(key));
      await w.write(data.subarray(0, 100_000));
      const r = await w.openPartialReader();
      try {
        await w.write(data.subarray(100_000));
        await w.commit();
        assertBytes(await collect(r.read(0, data.length)), data);
        assertBytes(await collect(r.read(123, 100_456)), data.subarray(123, 100_456));
        assertBytes(await driver.getBytes(key), data);
      } finally {
        await r.close();
      }
    });

    it('a partial reader opened before cancel keeps working after the cancel', async () => {
      const driver = drv();
      const key = 'blobs/sha256/de/de03';
      const data = pattern(43, 200_000);
      const w = track(await driver.createWriter(key));
      await w.write(data);
      const r = await w.openPartialReader();
      try {
        await w.cancel();
        assertBytes(await collect(r.read(0, data.length)), data);
        assertBytes(await collect(r.read(199_999, 200_000)), data.subarray(199_999));
        await assertAbsent(driver, key);
      } finally {
        await r.close();
      }
    });

    it('partial reader close can be called twice', async () => {
      const driver = drv();
      const w = track(await driver.createWriter('blobs/sha256/de/de04'));
      await w.write(pattern(44, 10));
      const r = await w.openPartialReader();
      await r.close();
      await r.close();
      await w.cancel();
    });

    it('delete removes a committed object', async () => {
      const driver = drv();
      const key = 'manifests/sha256/f0/f001';
      const other = 'manifests/sha256/f0/f002';
      await put(driver, key, [pattern(50, 100)], { mediaType: 'x' });
      await put(driver, other, [pattern(51, 100)]);
      await driver.delete(key);
      await assertAbsent(driver, key);
      assert.deepEqual(
        (await listAll(driver, 'manifests/')).map((e) => e.key),
        [other],
      );
      assertBytes(await driver.getBytes(other), pattern(51, 100));
    });

    it('delete of an absent key resolves', async () => {
      const driver = drv();
      await driver.delete('blobs/sha256/f1/f101');
      await driver.delete('never/existed/at/all');
      const key = 'blobs/sha256/f1/f102';
      await put(driver, key, [pattern(52, 10)]);
      await driver.delete(key);
      await driver.delete(key);
      await assertAbsent(driver, key);
    });

    it('a deleted key can be written again', async () => {
      const driver = drv();
      const key = 'tags/up/name/_tag/again';
      await put(driver, key, [pattern(53, 10)], { mediaType: 'a' });
      await driver.delete(key);
      await put(driver, key, [pattern(54, 20)]);
      assertBytes(await driver.getBytes(key), pattern(54, 20));
      assert.deepEqual({ ...(await driver.stat(key))?.metadata }, {});
    });

    it('list(prefix) returns exactly the committed objects under the prefix, with sizes', async () => {
      const driver = drv();
      const objects: Record<string, number> = {
        'tags/up/name/_tag/latest': 11,
        'tags/up/name/_tag/v1.0': 12,
        'tags/up/name/sub/_tag/v2': 13,
        'tags/up/nameless/_tag/x': 14,
        'tags/up/other/_tag/y': 15,
        'tags/up2/name/_tag/z': 16,
        'tags/u/name/_tag/w': 17,
        'blobs/sha256/ab/abcdef': 18,
        'upstreams/up/challenge': 19,
      };
      let seed = 60;
      for (const [key, size] of Object.entries(objects)) await put(driver, key, [pattern(seed++, size)]);
      // Neither uncommitted, cancelled nor deleted objects are listed.
      const pending = track(await driver.createWriter('tags/up/name/_tag/pending'));
      await pending.write(pattern(70, 5));
      const cancelled = track(await driver.createWriter('tags/up/name/_tag/cancelled'));
      await cancelled.write(pattern(71, 5));
      await cancelled.cancel();
      await put(driver, 'tags/up/name/_tag/deleted', [pattern(72, 5)]);
      await driver.delete('tags/up/name/_tag/deleted');

      const expect = (prefix: string): [string, number][] =>
        Object.entries(objects)
          .filter(([k]) => k.startsWith(prefix))
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const got = async (prefix: string): Promise<[string, number][]> =>
        (await listAll(driver, prefix)).map((e) => [e.key, e.size]);

      for (const prefix of [
        '',
        't',
        'tags/',
        'tags/up',
        'tags/up/',
        'tags/up/na',
        'tags/up/name',
        'tags/up/name/',
        'tags/up/name/_tag/',
        'tags/up/name/_tag/v',
        'tags/up/name/_tag/latest',
        'blobs/sha256/',
        'upstreams/up/challenge',
        'tags/none/',
        'zzz',
      ]) {
        assert.deepEqual(await got(prefix), expect(prefix), `list(${JSON.stringify(prefix)})`);
      }
      assert.deepEqual(
        (await got('tags/up/na')).map(([k]) => k),
        [
          'tags/up/name/_tag/latest',
          'tags/up/name/_tag/v1.0',
          'tags/up/name/sub/_tag/v2',
          'tags/up/nameless/_tag/x',
        ],
      );
      for (const e of await listAll(driver, '')) {
        assert.ok(
          e.lastAccess instanceof Date && !Number.isNaN(e.lastAccess.getTime()),
          `${e.key} lastAccess`,
        );
      }
      await pending.cancel();
    });

    it('touch never moves lastAccess backward', async () => {
      const driver = drv();
      const key = 'manifests/sha256/a1/a101';
      await put(driver, key, [pattern(80, 10)]);
      const before = (await driver.stat(key))?.lastAccess;
      assert.ok(before !== undefined);
      await delay(20);
      const t = Date.now();
      await driver.touch(key);
      const after = (await driver.stat(key))?.lastAccess;
      assert.ok(after !== undefined);
      assert.ok(
        after.getTime() >= before.getTime(),
        `lastAccess went from ${before.toISOString()} back to ${after.toISOString()}`,
      );
      assert.ok(after.getTime() <= t + 60_000);
      const listed = (await listAll(driver, key))[0];
      assert.ok(listed !== undefined);
      assert.ok(listed.lastAccess.getTime() >= before.getTime());
    });

    it('touch leaves the bytes and metadata alone and is harmless on absent keys', async () => {
      const driver = drv();
      const key = 'manifests/sha256/a1/a102';
      const data = pattern(81, 1000);
      await put(driver, key, [data], { mediaType: 'm' });
      await driver.touch(key);
      await driver.touch(key);
      assertBytes(await driver.getBytes(key), data);
      const info = await driver.stat(key);
      assert.ok(info !== undefined);
      assert.equal(info.size, data.length);
      assert.deepEqual({ ...info.metadata }, { mediaType: 'm' });
      await driver.touch('manifests/sha256/a1/absent');
      await assertAbsent(driver, 'manifests/sha256/a1/absent');
    });

    it('many concurrent writers to the same key leave exactly one object equal to one of the payloads', async () => {
      const driver = drv();
      const key = 'blobs/sha256/c0/c001';
      const count = 16;
      const payloads = Array.from({ length: count }, (_, i) => pattern(90 + i, 150_000 + i * 4099));
      const writers = await Promise.all(
        payloads.map(() => driver.createWriter(key)).map(async (p) => track(await p)),
      );
      // Interleave the writes: every writer writes its first third, then its second, then the rest.
      for (const part of [0, 1, 2]) {
        await Promise.all(
          writers.map((w, i) => {
            const p = payloads[i]!;
            const third = Math.ceil(p.length / 3);
            return w.write(p.subarray(part * third, Math.min(p.length, (part + 1) * third)));
          }),
        );
      }
      await Promise.all(writers.map((w) => w.commit()));

      const final = await driver.getBytes(key);
      assert.ok(final !== undefined);
      assert.ok(
        payloads.some((p) => p.equals(final)),
        `the final object (${final.length} bytes) is none of the written payloads`,
      );
      assert.equal((await driver.stat(key))?.size, final.length);
      assertBytes(await readAll(await driver.get(key)), final);
      assert.deepEqual(
        (await listAll(driver, '')).map((e) => [e.key, e.size]),
        [[key, final.length]],
      );
    });

    it('cleanupTemporary returns a count and leaves committed objects alone', async () => {
      const driver = drv();
      const committed: Record<string, Buffer> = {
        'blobs/sha256/d0/d001': pattern(110, 5000),
        'manifests/sha256/d0/d002': pattern(111, 300),
        'tags/up/name/_tag/latest': pattern(112, 40),
      };
      for (const [key, data] of Object.entries(committed)) await put(driver, key, [data], { k: key });
      // Leftovers: a writer that is abandoned (neither committed nor cancelled) and a cancelled one.
      const abandoned = track(await driver.createWriter('blobs/sha256/d0/d003'));
      await abandoned.write(pattern(113, 7000));
      const cancelled = track(await driver.createWriter('blobs/sha256/d0/d004'));
      await cancelled.write(pattern(114, 10));
      await cancelled.cancel();

      const n = await driver.cleanupTemporary();
      assert.equal(typeof n, 'number');
      assert.ok(Number.isInteger(n) && n >= 0, `count ${n}`);

      for (const [key, data] of Object.entries(committed)) {
        assertBytes(await driver.getBytes(key), data, `${key} bytes`);
        const info = await driver.stat(key);
        assert.ok(info !== undefined);
        assert.equal(info.size, data.length);
        assert.deepEqual({ ...info.metadata }, { k: key });
      }
      assert.deepEqual(
        (await listAll(driver, '')).map((e) => e.key),
        Object.keys(committed).sort(),
      );
      await assertAbsent(driver, 'blobs/sha256/d0/d003');
      await assertAbsent(driver, 'blobs/sha256/d0/d004');
      // A second run finds nothing left, and the store still takes new objects.
      assert.equal(await driver.cleanupTemporary(), 0);
      await put(driver, 'blobs/sha256/d0/d005', [pattern(115, 10)]);
      assert.equal((await driver.stat('blobs/sha256/d0/d005'))?.size, 10);
    });
  });
}
