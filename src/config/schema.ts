/**
 * The one configuration schema: types, defaults and validation for every key. Error messages name
 * the key path (zod's issue path), e.g. `upstream.url: must be an http(s) URL`.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 500ms, 30s, 5m or 1h' });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseSize(v);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be a size such as 1048576, 512MiB or 50GiB' });
    return z.NEVER;
  }
  return bytes;
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
    tag_ttl: duration
      .default(300_000)
      .describe('a cached tag is answered without asking the upstream for this long'),
    credentials: z
      .object({ username: z.string().min(1), password: z.string() })
      .strict()
      .optional()
      .describe("Docxy's own upstream account for filling the cache (default: anonymous)"),
  })
  .strict();

export const cacheSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false: relay only, store nothing'),
    max_size: size
      .default(50 * 1024 ** 3)
      .describe('evict least recently used objects above this many bytes'),
    max_stale: duration
      .default(0)
      .describe('serve a cached tag this long past its TTL when the upstream fails (0 = without limit)'),
    fill_timeout: duration
      .default(1_800_000)
      .describe('one upstream download into the cache must end within this'),
    resume_retries: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(3)
      .describe('upstream Range resumes of a broken blob download'),
    resume_backoff: duration.default(500).describe('first wait before a resume; doubles each time'),
  })
  .strict();

export const configSchema = z
  .object({
    listen: hostPort.default('0.0.0.0:5000').describe('address and port of the plain HTTP listener'),
    public_url: httpUrl
      .optional()
      .describe('the URL clients reach Docxy at; every URL Docxy emits (token realm) is built from it'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    data: z.string().min(1).default('./data').describe('the data directory: the filesystem cache lives here'),
    upstream: upstreamSchema.default({
      url: 'https://registry-1.docker.io',
      library_prefix: true,
      timeouts: { connect: 10_000, headers: 30_000, idle: 60_000 },
      tag_ttl: 300_000,
    }),
    cache: cacheSchema.default({
      enabled: true,
      max_size: 50 * 1024 ** 3,
      max_stale: 0,
      fill_timeout: 1_800_000,
      resume_retries: 3,
      resume_backoff: 500,
    }),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = Config['upstream'];
export type CacheConfig = Config['cache'];
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
