/**
 * The fastify instance and what every request shares: a request context, exactly one JSON log
 * line per request (written when the response closes, so streamed and aborted responses are logged
 * too), OCI JSON errors for everything including unknown routes, and the read-only guard that
 * answers push methods before any body is read.
 */
import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { TlsMaterial } from './tls.ts';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { RegistryError } from '../registry/errors.ts';
import { sendError } from './error-reply.ts';
import { flatLineRedact } from '../observability/logger.ts';
import { lazyChildLogger } from './lazy-child-logger.ts';

/** What a handler tells the request log line. */
export interface RequestContext {
  upstream?: string;
  /** Body bytes sent to the client, when the handler counted them. */
  bytes?: number;
  /** Cache outcome (hit, miss, coalesced, revalidated, stale) once there is a cache. */
  cache?: string;
  /** Why a streamed response ended early. */
  error?: string;
  /** The authenticated user, if any. */
  user?: string;
  /** A bounded route name for metrics (manifest, blob, tags, …); the fastify route otherwise. */
  route?: string;
  /** The repository asked for (the dashboard's top list; never a metric label). */
  repository?: string;
  /** Charges body bytes to the client's byte budget; false when it ran out. */
  budget?: (bytes: number) => boolean;
  /** The client's Authorization is Docxy's own token and must never go upstream. */
  stripAuthorization?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}

export interface ServerLimits {
  readonly urlLength: number;
  readonly headerBytes: number;
  readonly headersCount: number;
  /** Whole-request receive timeout in ms; 0 = none. */
  readonly requestTimeout: number;
  /** Request headers must arrive within this (slow-loris). */
  readonly headersTimeout: number;
}

export interface ServerOptions {
  readonly limits?: ServerLimits;
  /**
   * Serve HTTPS with HTTP/2 (ALPN) and HTTP/1.1 instead of plain HTTP: with this certificate, or
   * 'pending' until `setTls` gives one (ACME).
   */
  readonly tls?: TlsMaterial | 'pending';
  /** Addresses or CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed. */
  readonly trustProxy?: readonly string[];
  /** The process logger (pino), typed as fastify's base so the instance keeps its default generics. */
  readonly log: FastifyBaseLogger;
  /** Largest request body accepted (token POSTs); registry bodies are never read. */
  readonly bodyLimit?: number;
  /** Sees every request once its response has closed (metrics, the dashboard). */
  readonly onResponse?: (done: FinishedRequest) => void;
}

/** A request whose response has closed. */
export interface FinishedRequest {
  readonly method: string;
  readonly status: number;
  readonly ctx: RequestContext;
  /** Body bytes sent (0 for HEAD). */
  readonly bytes: number;
  readonly seconds: number;
  /** The fastify route pattern, when one matched. */
  readonly routeUrl: string | undefined;
}

const readOnlyMethods = new Set(['GET', 'HEAD']);

export interface DocxyServer {
  readonly app: FastifyInstance;
  /** Replaces the certificate for new connections; open ones keep theirs. */
  setTls(m: TlsMaterial): void;
}

export function createServer(opts: ServerOptions): FastifyInstance {
  return createDocxyServer(opts).app;
}

export function createDocxyServer(opts: ServerOptions): DocxyServer {
  const limits = opts.limits;
  let secureServer: Http2SecureServer | undefined;
  const app = Fastify({
    // Node enforces header size (431), header count and the slow-loris timeouts itself.
    serverFactory: (handler) => {
      const tls = opts.tls;
      if (tls !== undefined) {
        // HTTP/1.1 clients get Node's http request/response objects; HTTP/2 streams get the
        // compatibility API, which offers the same surface Docxy uses (headers, writeHead, pipe).
        const material = tls === 'pending' ? {} : { key: tls.key, cert: tls.cert };
        const secure = createSecureServer({ allowHTTP1: true, ...material }, (req, res) => {
          handler(req as unknown as IncomingMessage, res as unknown as ServerResponse);
        });
        secureServer = secure;
        // fastify's types expect an http.Server here; an HTTP/2 server with allowHTTP1 serves the
        // same request/response API to HTTP/1.1 clients and the compatibility API to HTTP/2 ones.
        return secure as unknown as Server;
      }
      const server = createHttpServer(
        limits === undefined
          ? {}
          : {
              maxHeaderSize: limits.headerBytes,
              requestTimeout: limits.requestTimeout,
              headersTimeout: limits.headersTimeout,
            },
        handler,
      );
      // One more than the limit is read, so a request over it can be told apart and refused.
      if (limits !== undefined) server.maxHeadersCount = limits.headersCount + 1;
      return server;
    },
    loggerInstance: opts.log,
    // Docxy writes its own single line per request (below) instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is rarely written (audit, internal errors): built on first use (lazy-child-logger.ts).
    childLoggerFactory: lazyChildLogger,
    genReqId: () => randomUUID(),
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    return503OnClosing: true,
    // Errors fastify raises before routing (a malformed URL, an over-long parameter) are OCI JSON too.
    frameworkErrors: (err, request, reply) => {
      request.ctx = {};
      void sendError(request, reply, err);
    },
    // Node's own refusals (a header block over the limit) get an OCI body on the raw socket.
    clientErrorHandler: (err, socket) => {
      const code = (err as { code?: string }).code;
      const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify(
        new RegistryError('UNSUPPORTED', {
          status,
          message: status === 431 ? 'request headers too large' : 'bad request',
        }).toBody(),
      );
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
      } else socket.destroy();
    },
    // Docxy never builds a URL from the Host header; forwarded client addresses are believed only
    // from the configured proxies.
    trustProxy: opts.trustProxy !== undefined && opts.trustProxy.length > 0 ? [...opts.trustProxy] : false,
  });

  app.decorateRequest('ctx', null as unknown as RequestContext);
  // The request line's fields are all flat values set below, none of them a credential.
  const lineLog = opts.log.child({}, { redact: flatLineRedact });

  // Bodies of registry requests are never read: a GET body is ignored, and push bodies are refused
  // below before any byte of them is parsed. Only the token endpoint's form body is read.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, body);
  });
  app.addContentTypeParser('*', (_req, _payload, done) => {
    done(null, undefined);
  });

  app.addHook('onRequest', async (request, reply) => {
    request.ctx = {};
    if (limits !== undefined && request.raw.rawHeaders.length / 2 > limits.headersCount) {
      throw new RegistryError('UNSUPPORTED', {
        status: 431,
        message: `more than ${limits.headersCount} request headers`,
      });
    }
    if (limits !== undefined && request.url.length > limits.urlLength) {
      throw new RegistryError('UNSUPPORTED', {
        status: 414,
        message: `request URL longer than ${limits.urlLength} characters`,
      });
    }
    const start = process.hrtime.bigint();
    reply.raw.once('close', () => {
      const res = reply.raw;
      const bytes = request.method === 'HEAD' ? 0 : (request.ctx.bytes ?? 0);
      const elapsed = process.hrtime.bigint() - start;
      opts.onResponse?.({
        method: request.method,
        status: res.statusCode,
        ctx: request.ctx,
        bytes,
        seconds: Number(elapsed) / 1e9,
        routeUrl: request.routeOptions.url,
      });
      lineLog.info(
        {
          reqId: request.id,
          method: request.method,
          path: request.url.split('?')[0],
          upstream: request.ctx.upstream,
          user: request.ctx.user,
          ip: request.ip,
          status: res.statusCode,
          bytes,
          cache: request.ctx.cache,
          durationMs: Number(elapsed / 1000n) / 1000,
          completed: res.writableFinished,
          error: request.ctx.error,
        },
        'request',
      );
    });
    // Docxy is a read-only mirror (spec.md: registries may refuse push with 405 UNSUPPORTED).
    if ((request.url === '/v2' || request.url.startsWith('/v2/')) && !readOnlyMethods.has(request.method)) {
      throw new RegistryError('UNSUPPORTED', {
        message: 'Docxy is a read-only pull-through mirror; push is not supported',
      });
    }
  });

  // Replies fastify sends itself (JSON, errors) are counted here; streamed relays count their own.
  app.addHook('onSend', async (request, _reply, payload) => {
    if (typeof payload === 'string' || Buffer.isBuffer(payload))
      request.ctx.bytes = Buffer.byteLength(payload);
    return payload;
  });

  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new RegistryError('NOT_FOUND')));
  return {
    app,
    setTls(m) {
      secureServer?.setSecureContext({ key: m.key, cert: m.cert });
    },
  };
}
