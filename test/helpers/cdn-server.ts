/**
 * A CDN / object-store stand-in: the host Docker Hub's blob `307`s point at.
 *
 * It serves the files under `root` (GET and HEAD, one `Range` -> 206) and, like S3 or CloudFront
 * behind a signed URL, answers 400 to any request that carries an `Authorization` header. A proxy
 * that forwards the registry's bearer token across the redirect therefore fails loudly, and the
 * request log shows it.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve, sep } from 'node:path';
import { pipeline, Transform, type TransformCallback } from 'node:stream';

export interface CdnRequest {
  /** `Date.now()` when the request arrived. */
  time: number;
  method: string;
  /** Path part of the URL (the query string, if any, is ignored for lookup). */
  path: string;
  /** Raw `Authorization` header, when one was (wrongly) sent. */
  authorization?: string;
  /** Raw `Range` header, when sent. */
  range?: string;
  status: number;
}

/**
 * Lets a test take over a request (e.g. cut a body short to exercise resumes). Return true when
 * the interceptor answered; false to let the CDN serve normally. The request is already recorded.
 */
export type CdnInterceptor = (req: IncomingMessage, res: ServerResponse, record: CdnRequest) => boolean;

export interface CdnServer {
  /** Base URL, `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  readonly root: string;
  /** Every request, oldest first. */
  readonly requests: CdnRequest[];
  /** The requests refused because they carried `Authorization` (a subset of `requests`). */
  readonly rejected: CdnRequest[];
  /** Optional per-request hook; set to undefined to remove. */
  intercept: CdnInterceptor | undefined;
  /**
   * Bytes per second a file body to `path` is sent at (undefined: as fast as it goes), so a fill
   * lasts long enough for a test to act while it runs (kill a replica mid-fill). Read per request.
   */
  bodyRate: ((path: string) => number | undefined) | undefined;
  stop(): Promise<void>;
}

export interface CdnServerOptions {
  /** Directory whose files are served; URL path `/a/b` is file `root/a/b`. */
  root: string;
  /** Port on 127.0.0.1; a free one when omitted (fixed ports let a CDN restart keep its URL). */
  port?: number;
}

type ByteRange = { start: number; end: number } | 'unsatisfiable' | undefined;

/**
 * Parses a single-range `bytes=` header against a file size. Returns undefined when the header
 * should be ignored (absent, malformed, or a multi-range request: RFC 9110 lets a server answer
 * those with the full representation), `'unsatisfiable'` for a 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return undefined;
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    // Suffix range: the last N bytes.
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== '' && Number(b) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * Passes chunks on no faster than `bytesPerSecond` on average: each waits until the time its bytes
 * are due since the first one, so timer lateness is caught up instead of adding up.
 */
function paced(bytesPerSecond: number): Transform {
  let started: number | undefined;
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      started ??= Date.now();
      const due = started + (sent / bytesPerSecond) * 1000;
      sent += chunk.length;
      setTimeout(
        () => {
          cb(null, chunk);
        },
        Math.max(0, due - Date.now()),
      );
    },
  });
}

export async function startCdnServer(opts: CdnServerOptions): Promise<CdnServer> {
  const root = resolve(opts.root);
  const requests: CdnRequest[] = [];
  const rejected: CdnRequest[] = [];
  let bodyRate: ((path: string) => number | undefined) | undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse, record: CdnRequest): Promise<void> => {
    const end = (status: number, headers: Record<string, string | number> = {}, body = ''): void => {
      record.status = status;
      res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };

    if (record.authorization !== undefined) {
      // What S3 says when a presigned URL is also given an Authorization header.
      rejected.push(record);
      end(
        400,
        { 'content-type': 'application/xml' },
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>' +
          '<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, ' +
          'Signature query string parameter or the Authorization header should be specified</Message></Error>',
      );
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      end(405, { allow: 'GET, HEAD' });
      return;
    }

    // Map the URL path into root and refuse anything that escapes it (`..`, encoded or not).
    let decoded: string;
    try {
      decoded = decodeURIComponent(record.path);
    } catch {
      end(400);
      return;
    }
    const file = resolve(root, `.${decoded}`);
    if (file !== root && !file.startsWith(root + sep)) {
      end(404);
      return;
    }
    const stat = await fsp.stat(file).catch(() => undefined);
    if (!stat?.isFile()) {
      end(404);
      return;
    }

    const size = stat.size;
    // A strong validator so `If-Range` works; size+mtime is what nginx uses too.
    const etag = `"${size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
    const ifRange = req.headers['if-range'];
    const range = ifRange === undefined || ifRange === etag ? parseRange(record.range, size) : undefined;
    const common = {
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      etag,
      'last-modified': stat.mtime.toUTCString(),
    };
    if (range === 'unsatisfiable') {
      end(416, { ...common, 'content-range': `bytes */${size}` });
      return;
    }
    const start = range?.start ?? 0;
    const last = range?.end ?? size - 1;
    const status = range === undefined ? 200 : 206;
    record.status = status;
    res.writeHead(status, {
      ...common,
      'content-length': last - start + 1,
      ...(range === undefined ? {} : { 'content-range': `bytes ${start}-${last}/${size}` }),
    });
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    const rate = bodyRate?.(record.path);
    // Paced bodies go in 256 KiB chunks: a timer per 64 KiB would run late more than on time.
    const stream = createReadStream(file, {
      start,
      end: last,
      highWaterMark: rate === undefined ? undefined : 256 * 1024,
    });
    if (rate !== undefined) {
      // pipeline closes the file when the client goes away mid-body (a killed replica).
      pipeline(stream, paced(rate), res, () => undefined);
      return;
    }
    stream.on('error', (err) => {
      res.destroy(err);
    });
    stream.pipe(res);
  };

  let intercept: CdnInterceptor | undefined;

  const srv = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://cdn.invalid');
    const record: CdnRequest = { time: Date.now(), method: req.method ?? '', path: url.pathname, status: 0 };
    if (req.headers.authorization !== undefined) record.authorization = req.headers.authorization;
    if (req.headers.range !== undefined) record.range = req.headers.range;
    requests.push(record);
    if (intercept?.(req, res, record) === true) return;
    handle(req, res, record).catch((err: unknown) => {
      record.status = 500;
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolvePromise, reject) => {
    srv.once('error', reject);
    srv.listen(opts.port ?? 0, '127.0.0.1', () => {
      resolvePromise();
    });
  });
  const port = (srv.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    root,
    requests,
    rejected,
    get intercept() {
      return intercept;
    },
    set intercept(fn: CdnInterceptor | undefined) {
      intercept = fn;
    },
    get bodyRate() {
      return bodyRate;
    },
    set bodyRate(fn: ((path: string) => number | undefined) | undefined) {
      bodyRate = fn;
    },
    async stop() {
      srv.closeAllConnections();
      await new Promise<void>((resolvePromise) => {
        srv.close(() => {
          resolvePromise();
        });
      });
    },
  };
}
