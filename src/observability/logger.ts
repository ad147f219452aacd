/**
 * The process logger: pino JSON lines. Request logging never includes headers, so no credential or
 * token can reach a log line; the redact list is a second line of defence for fields that might.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'docxy' },
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'headers.authorization',
        'password',
        '*.password',
        'token',
        '*.token',
      ],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(opts) : pino(opts, destination);
}
