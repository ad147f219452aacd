/**
 * The internal endpoint of a fleet (`cluster.listen`): another replica that finds this one holding
 * a blob's fill lease streams the blob from here as it arrives, instead of downloading it again.
 * It is a listener of its own (never the public one), answers only `GET /cluster/v1/blobs/<digest>`
 * with the fleet's shared secret, and serves only fills running here. The bytes come from the
 * fill itself, so the last one is still held until this replica has verified the digest: a peer
 * never relays a complete body that turns out wrong.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { InFlightBlob } from '../cache/blob-service.ts';
import { sendRawError } from '../http/error-reply.ts';
import { responseSink } from '../http/response-sink.ts';
import { splitHostPort } from '../http/listen-address.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseDigest } from '../registry/reference.ts';

export interface ClusterServer {
  listen(): Promise<AddressInfo>;
  close(): Promise<void>;
}

const blobPath = /^\/cluster\/v1\/blobs\/([a-z0-9]+:[a-f0-9]+)$/;

/** The start of `bytes=N-` (all a peer sends), 0 without a Range; undefined when malformed. */
function rangeStart(header: string | undefined): number | undefined {
  if (header === undefined) return 0;
  const m = /^bytes=(\d+)-$/.exec(header.trim());
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

export function createClusterServer(opts: {
  readonly listen: string;
  readonly secret: string;
  /** The fill of `digest` running on this replica, followed from `start`; undefined when none. */
  readonly inFlight: (digest: string, start: number) => Promise<InFlightBlob | undefined>;
  readonly log: Logger;
}): ClusterServer {
  const expected = createHash('sha256').update(opts.secret).digest();
  const authorized = (header: string | undefined): boolean => {
    const m = /^Bearer (.+)$/.exec(header ?? '');
    if (m?.[1] === undefined) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]).digest(), expected);
  };
  const open = new Set<ServerResponse>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = blobPath.exec((req.url ?? '').split('?')[0] ?? '');
    if (req.method !== 'GET' || path?.[1] === undefined) {
      sendRawError(res, new RegistryError('NOT_FOUND'));
      return;
    }
    if (!authorized(req.headers.authorization)) {
      sendRawError(
        res,
        new RegistryError('UNAUTHORIZED', { message: 'the cluster secret is missing or wrong' }),
      );
      return;
    }
    const digest = parseDigest(path[1]);
    const start = rangeStart(req.headers.range);
    if (digest === undefined || start === undefined) {
      sendRawError(res, new RegistryError(digest === undefined ? 'DIGEST_INVALID' : 'RANGE_INVALID'));
      return;
    }
    const blob = await opts.inFlight(digest.value, start);
    if (blob === undefined) {
      sendRawError(res, new RegistryError('BLOB_UNKNOWN', { message: 'not being filled here' }));
      return;
    }
    res.writeHead(start > 0 ? 206 : 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(blob.size - start),
      ...(start > 0
        ? { 'content-range': `bytes ${String(start)}-${String(blob.size - 1)}/${String(blob.size)}` }
        : {}),
      'x-docxy-visibility': blob.visibility,
    });
    const sink = responseSink(res, {});
    try {
      await blob.body.pipeTo(sink);
      res.end();
    } catch (err) {
      // The fill failed (or the peer went): a short transfer, never a wrong one.
      opts.log.debug({ digest: digest.value, err: (err as Error).message }, 'peer transfer cut');
      res.destroy();
    } finally {
      sink.dispose();
    }
  }

  const server: Server = createServer((req, res) => {
    open.add(res);
    res.once('close', () => open.delete(res));
    handle(req, res).catch((err: unknown) => {
      opts.log.warn({ err: (err as Error).message }, 'cluster request failed');
      if (!res.headersSent) sendRawError(res, new RegistryError('UNKNOWN'));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 15_000;

  return {
    listen() {
      const { host, port } = splitHostPort(opts.listen);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    close() {
      for (const res of open) res.destroy();
      return new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
    },
  };
}
