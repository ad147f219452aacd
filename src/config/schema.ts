/**
 * The one configuration schema: types, defaults and validation for every key. Error messages name
 * the key path (zod's issue path), e.g. `upstream.url: must be an http(s) URL`.
 */
import { z } from 'zod';
import { parseDuration } from './units.ts';

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 500ms, 30s, 5m or 1h' });
    return z.NEVER;
  }
  return ms;
});

const httpUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  .transform((s) => s.replace(/\/+$/, ''));

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be HOST:PORT, e.g. 0.0.0.0:5000 or [::]:5000');

export const timeoutsSchema = z
  .object({
    connect: duration.default(10_000).describe('give up connecting to the upstream after this long (-> 502)'),
    headers: duration
      .default(30_000)
      .describe('give up waiting for the upstream response headers after this long (-> 504)'),
    idle: duration
      .default(60_000)
      .describe('close the client connection when the upstream body stalls this long'),
  })
  .strict();

export const upstreamSchema = z
  .object({
    url: httpUrl.default('https://registry-1.docker.io').describe('the registry Docxy pulls from'),
    library_prefix: z
      .boolean()
      .default(true)
      .describe('map one-component names to library/<name>, as Docker Hub names official images'),
    timeouts: timeoutsSchema.default({ connect: 10_000, headers: 30_000, idle: 60_000 }),
  })
  .strict();

export const configSchema = z
  .object({
    listen: hostPort.default('0.0.0.0:5000').describe('address and port of the plain HTTP listener'),
    public_url: httpUrl
      .optional()
      .describe('the URL clients reach Docxy at; every URL Docxy emits (token realm) is built from it'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    upstream: upstreamSchema.default({
      url: 'https://registry-1.docker.io',
      library_prefix: true,
      timeouts: { connect: 10_000, headers: 30_000, idle: 60_000 },
    }),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = Config['upstream'];
export type ConfigInput = z.input<typeof configSchema>;

/** Turns zod issues into `path: message` lines. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = i.path
      .map((p, idx) => (typeof p === 'number' ? `[${p}]` : `${idx === 0 ? '' : '.'}${String(p)}`))
      .join('');
    return `${path === '' ? '(root)' : path}: ${i.message}`;
  });
}
