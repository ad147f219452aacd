/**
 * A blob download over HTTPS that the test reads at its own pace: it can stop reading (TCP
 * backpressure reaches the server) while it replaces certificates or signals the server, then read
 * the rest. The body is hashed as it arrives, never held in memory.
 */
import { createHash } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { TLSSocket } from 'node:tls';

import { waitFor } from './process.ts';

export interface SlowDownload {
  readonly status: number;
  /** Serial (upper-case hex) of the certificate this download's connection was set up with. */
  readonly serial: string;
  received(): number;
  /** Reads until at least `bytes` have arrived, then stops reading. */
  readUntil(bytes: number, timeoutMs?: number): Promise<void>;
  /** Reads everything that is left; resolves with the body's sha256 digest and length. */
  finish(): Promise<{ digest: string; bytes: number; endedAt: number }>;
  /** Drops the connection (cleanup after a failed test). */
  destroy(): void;
}

export function startSlowDownload(
  url: string,
  opts: { ca: string; headers?: Record<string, string>; keepAlive?: boolean },
): Promise<SlowDownload> {
  // keepAlive: like a real client, the connection stays open (idle) after the body; without it the
  // client asks the server to close it.
  const agent = new Agent({ keepAlive: opts.keepAlive ?? false, maxSockets: 1 });
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca: opts.ca, headers: opts.headers, agent, servername: 'localhost' },
      (res) => {
        const hash = createHash('sha256');
        let received = 0;
        let limit = 0;
        let ended: { digest: string; bytes: number; endedAt: number } | undefined;
        let failed: Error | undefined;
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          received += chunk.length;
          if (received >= limit) res.pause();
        });
        res.once('end', () => {
          ended = { digest: `sha256:${hash.digest('hex')}`, bytes: received, endedAt: Date.now() };
          agent.destroy();
        });
        res.once('error', (err) => {
          failed = err;
        });
        res.once('aborted', () => {
          failed ??= new Error('the server aborted the response');
        });
        res.pause();
        const socket = res.socket;
        if (!(socket instanceof TLSSocket)) {
          reject(new Error(`${url}: not a TLS connection`));
          return;
        }
        const check = (): boolean => {
          if (failed !== undefined) throw failed;
          return ended !== undefined;
        };
        resolve({
          status: res.statusCode ?? 0,
          serial: socket.getPeerCertificate().serialNumber.toUpperCase(),
          received: () => received,
          async readUntil(bytes, timeoutMs = 60_000) {
            limit = bytes;
            res.resume();
            await waitFor(`${bytes} bytes of ${url}`, () => check() || received >= bytes, timeoutMs);
          },
          async finish() {
            limit = Number.POSITIVE_INFINITY;
            res.resume();
            await waitFor(`the end of ${url}`, check, 120_000);
            if (ended === undefined) throw new Error('no end');
            return ended;
          },
          destroy() {
            req.destroy();
            agent.destroy();
          },
        });
      },
    );
    req.once('error', reject);
    req.end();
  });
}
