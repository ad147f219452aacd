/**
 * The process logger: pino JSON lines. Request logging never includes headers, so no credential or
 * token can reach a log line; the redact list is a second line of defence for fields that might.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Log lines waiting to be written are bounded. pino's default stdout writer is asynchronous and
 * buffers without limit; its writes share libuv's thread pool with the cache's file reads, so under
 * load they queue (measured: 8.7 MiB of pending lines after 15 s at 1000 connections) and memory
 * grows with the backlog. Past this, lines are dropped and the count is reported once the writer
 * has caught up.
 */
const maxPendingLogBytes = 4 * 1024 * 1024;

function boundedStdout(): DestinationStream & { on(event: 'drop', fn: (data: string) => void): void } {
  return pino.destination({ dest: 1, sync: false, maxLength: maxPendingLogBytes });
}

/** Field names whose values never reach a log line. */
const secretKeys = ['authorization', 'password', 'token'] as const;
const censor = '[redacted]';

/**
 * The redaction for a line of flat fields (the request line: every value a string, number or
 * boolean built by the server), where only top-level keys can hold a secret. The process logger's
 * wildcard paths (`*.token`) make pino pass every field of every line through the redactor, which
 * was ~3 % of a warm manifest request's CPU (issue 14); this keeps the same protection for such
 * lines without that.
 */
export const flatLineRedact = { paths: [...secretKeys], censor };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'docxy' },
    redact: {
      paths: [...secretKeys, ...secretKeys.map((k) => `*.${k}`), 'headers.authorization'],
      censor,
    },
  };
  if (destination !== undefined) return pino(opts, destination);
  const out = boundedStdout();
  const log = pino(opts, out);
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  out.on('drop', (data: string) => {
    // `data` may hold several lines.
    for (let i = data.indexOf('\n'); i !== -1; i = data.indexOf('\n', i + 1)) dropped++;
    timer ??= setTimeout(() => {
      timer = undefined;
      log.warn({ droppedLines: dropped }, 'log output could not keep up: lines were dropped');
      dropped = 0;
    }, 10_000).unref();
  });
  return log;
}
