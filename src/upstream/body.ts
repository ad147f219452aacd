/** Reads a small upstream body (manifests, token JSON) into memory with a hard cap. */
import { Readable } from 'node:stream';
import { RegistryError } from '../registry/errors.ts';

/**
 * Throws away a response body we will not read. Destroying an undici body makes it emit an
 * AbortError; the listener keeps that from becoming an uncaught exception.
 */
export function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

/**
 * Reads a body whole if it has at most `max` bytes. A longer one comes back as a stream of the
 * whole body (what was read, then the rest), so a caller that caches only small answers can still
 * pass a large one through untouched.
 */
export async function readUpTo(body: Readable, max: number): Promise<Buffer | Readable> {
  const chunks: Buffer[] = [];
  let size = 0;
  // The iterator is driven by hand: `break` out of a for-await would destroy the body.
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  for (;;) {
    const next = await it.next();
    if (next.done === true) return Buffer.concat(chunks, size);
    chunks.push(next.value);
    size += next.value.length;
    if (size > max) break;
  }
  async function* whole(): AsyncGenerator<Buffer> {
    let done = false;
    try {
      yield* chunks;
      for (;;) {
        const next = await it.next();
        if (next.done === true) break;
        yield next.value;
      }
      done = true;
    } finally {
      if (!done) discard(body);
    }
  }
  return Readable.from(whole(), { objectMode: false });
}

export async function readCapped(body: Readable, max: number, what: string): Promise<Buffer> {
  const got = await readUpTo(body, max);
  if (Buffer.isBuffer(got)) return got;
  // Both: destroying a stream whose generator never started does not reach its `finally`.
  discard(got);
  discard(body);
  throw new RegistryError('UNAVAILABLE', {
    status: 502,
    message: `upstream ${what} is larger than ${max} bytes`,
  });
}
