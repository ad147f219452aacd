/** Reads a small upstream body (manifests, token JSON) into memory with a hard cap. */
import type { Readable } from 'node:stream';
import { RegistryError } from '../registry/errors.ts';

/**
 * Throws away a response body we will not read. Destroying an undici body makes it emit an
 * AbortError; the listener keeps that from becoming an uncaught exception.
 */
export function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

export async function readCapped(body: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > max) {
      discard(body);
      throw new RegistryError('UNAVAILABLE', {
        status: 502,
        message: `upstream ${what} is larger than ${max} bytes`,
      });
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, size);
}
