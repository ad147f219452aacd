/**
 * A client's response as a ByteSink (cache/body-source.ts): counts the bytes for the request log,
 * charges the byte rate limit, and hands each buffer back to its owner once the connection is done
 * with it. Works for HTTP/1.1 responses and HTTP/2 compatibility responses alike: both call a
 * write's callback once the data has left Node's hands (or with an error when the stream dies).
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { ClientGoneError, isBodySource, type BodySource, type ByteSink } from '../cache/body-source.ts';
import { chargeBytes } from './relay.ts';
import type { RequestContext } from './server.ts';

export interface ResponseSink extends ByteSink {
  /** Stops waiting for 'drain' (the body has been sent or has failed). */
  dispose(): void;
}

/** `raw` is typed as fastify types it; under HTTPS it is an Http2ServerResponse, which behaves the same here. */
export function responseSink(raw: ServerResponse, ctx: RequestContext): ResponseSink {
  ctx.bytes = 0;
  let closed = false;
  /**
   * The last write was refused (returned false) and no 'drain' came yet. Tracked here because
   * HTTP/2 compatibility responses have no `writableNeedDrain`.
   */
  let needDrain = false;
  /** Release callbacks of buffers the connection still holds. */
  const pending = new Set<() => void>();
  let waiter: { resolve: () => void; reject: (err: Error) => void } | undefined;

  const wakeWaiter = (err?: Error): void => {
    const w = waiter;
    waiter = undefined;
    if (w === undefined) return;
    if (err === undefined) w.resolve();
    else w.reject(err);
  };
  const onDrain = (): void => {
    needDrain = false;
    wakeWaiter();
  };
  const onClose = (): void => {
    // 'close' also follows a normal end; only an unfinished response means the client went away.
    if (!raw.writableFinished) closed = true;
    for (const release of [...pending]) release();
    wakeWaiter(closed ? new ClientGoneError() : undefined);
  };
  raw.on('drain', onDrain);
  raw.once('close', onClose);

  return {
    get closed() {
      return closed || raw.destroyed;
    },
    write(buf, release) {
      if (closed || raw.destroyed) {
        release?.();
        return false;
      }
      if (!chargeBytes(ctx, buf.length)) {
        closed = true;
        release?.();
        raw.destroy();
        return false;
      }
      let ok: boolean;
      if (release === undefined) ok = raw.write(buf);
      else {
        let done = false;
        const cb = (): void => {
          if (done) return;
          done = true;
          pending.delete(cb);
          release();
        };
        pending.add(cb);
        ok = raw.write(buf, cb);
      }
      if (!ok) needDrain = true;
      return ok;
    },
    writeAll(bufs) {
      // Corked, the writes leave as one writev when uncorked (HTTP/1.1; HTTP/2 frames them anyway).
      raw.cork();
      let ok = true;
      try {
        for (const b of bufs) ok = this.write(b);
      } finally {
        raw.uncork();
      }
      return ok;
    },
    drained() {
      if (closed || raw.destroyed) return Promise.reject(new ClientGoneError());
      if (!needDrain) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    dispose() {
      // Buffers still pending are released by their write callbacks or by 'close', never here:
      // the connection may still be sending them.
      raw.off('drain', onDrain);
    },
  };
}

/** Releases a body that will not be sent (HEAD, an error before sending). */
export function discardBody(body: Readable | Buffer | BodySource | undefined): void {
  if (body === undefined || Buffer.isBuffer(body)) return;
  if (isBodySource(body)) body.cancel();
  else body.destroy();
}

/**
 * Sends a BodySource as the response body and ends the response; a failure (or `signal`, e.g.
 * shutdown) cuts the connection, so the client sees a short transfer, never a wrong one.
 */
export async function sendBody(
  request: FastifyRequest,
  raw: ServerResponse,
  body: BodySource,
  signal: AbortSignal,
): Promise<void> {
  const sink = responseSink(raw, request.ctx);
  const onAbort = (): void => {
    raw.destroy();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal.aborted) throw new ClientGoneError();
    await body.pipeTo(sink);
    raw.end();
  } catch (err) {
    // Keep the first reason (a cut by the byte limit shows up here as a closed client).
    request.ctx.error ??= err instanceof Error ? err.message : String(err);
    raw.destroy();
  } finally {
    signal.removeEventListener('abort', onAbort);
    sink.dispose();
  }
}
