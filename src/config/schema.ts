/**
 * The one configuration schema: types, defaults and validation for every key. Error messages name
 * the key path (zod's issue path), e.g. `upstream.url: must be an http(s) URL`.
 */
import { z } from 'zod';
import { parseImage } from '../warm/image-ref.ts';
import { parsePlatform } from '../warm/warm-plan.ts';
import { clusterSchema } from './cluster-schema.ts';
import { duration, hostPort, httpUrl, size } from './zod-units.ts';
import { storageSchema } from './storage-schema.ts';

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

/** Registries a user enables by name (`preset: ghcr.io`): URL and Docker Hub's library/ convention. */
export const presets = {
  'docker.io': { url: 'https://registry-1.docker.io', library_prefix: true },
  'ghcr.io': { url: 'https://ghcr.io', library_prefix: false },
  'quay.io': { url: 'https://quay.io', library_prefix: false },
  'gcr.io': { url: 'https://gcr.io', library_prefix: false },
  'registry.k8s.io': { url: 'https://registry.k8s.io', library_prefix: false },
  'mcr.microsoft.com': { url: 'https://mcr.microsoft.com', library_prefix: false },
  'public.ecr.aws': { url: 'https://public.ecr.aws', library_prefix: false },
  'nvcr.io': { url: 'https://nvcr.io', library_prefix: false },
  'docker.elastic.co': { url: 'https://docker.elastic.co', library_prefix: false },
} as const;
export type PresetName = keyof typeof presets;

const egressProxyUrl = z.string().refine((s) => {
  try {
    return ['http:', 'https:', 'socks5:'].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}, 'must be an http://, https:// or socks5:// URL');

const registryName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/,
    'must be a registry host name such as ghcr.io (lower case)',
  );

export const credentialsSchema = z
  .object({
    username: z.string().min(1),
    password: z.string().optional().describe('the password or token itself'),
    password_file: z.string().optional().describe('a file holding the password or token'),
    password_env: z.string().optional().describe('an environment variable holding the password or token'),
  })
  .strict()
  .refine(
    (c) => [c.password, c.password_file, c.password_env].filter((v) => v !== undefined).length === 1,
    'give exactly one of password, password_file, password_env',
  );

/** One upstream registry; every key but `name` may come from a preset or a default. */
export const upstreamEntrySchema = z
  .object({
    name: registryName.describe(
      'the registry as clients name it (matched by containerd ns= and path prefix)',
    ),
    preset: z.enum(Object.keys(presets) as [PresetName, ...PresetName[]]).optional(),
    url: httpUrl.optional().describe('the registry API base URL (default: from the preset)'),
    hosts: z.array(z.string().min(1)).default([]).describe('virtual host names whose requests route here'),
    prefix: z
      .string()
      .min(1)
      .optional()
      .describe('path prefix routing here: /v2/<prefix>/<name>/… (default: name)'),
    library_prefix: z
      .boolean()
      .optional()
      .describe('map one-component names to library/<name> (default: on for docker.io)'),
    credentials: credentialsSchema.optional().describe("Docxy's own account at this registry"),
    mirrors: z.array(httpUrl).default([]).describe('alternate URLs tried in order when the primary fails'),
    auth_hosts: z
      .array(z.string().min(1))
      .default([])
      .describe('token-service hosts outside the registry domain that may receive credentials'),
    timeouts: timeoutsSchema.optional(),
    tag_ttl: duration
      .optional()
      .describe(
        'a cached tag, tag list or referrers answer is served without asking the upstream for this long (default 5m)',
      ),
    tls: z
      .object({
        ca_file: z.string().optional().describe('PEM file of CAs to trust for this upstream'),
        insecure: z.boolean().default(false).describe('skip certificate verification (tests only)'),
      })
      .strict()
      .optional(),
    proxy: egressProxyUrl
      .optional()
      .describe('egress proxy for this upstream: http://, https:// or socks5://'),
  })
  .strict();

/** The seed's single upstream (`upstream:` / `--upstream`): overrides for the default upstream. */
export const upstreamSchema = upstreamEntrySchema.omit({ name: true }).partial();

export const cacheSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false: relay only, store nothing'),
    max_size: size
      .default(50 * 1024 ** 3)
      .describe('evict least recently used objects above this many bytes'),
    max_stale: duration
      .default(0)
      .describe(
        'serve a cached tag, tag list or referrers answer this long past its TTL when the upstream fails (0 = without limit)',
      ),
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
    memory: z
      .object({
        manifest_bytes: size
          .default(16 * 1024 ** 2)
          .describe('hot manifests kept in memory by digest, at most this many bytes (0 = none)'),
      })
      .strict()
      .default({ manifest_bytes: 16 * 1024 ** 2 })
      .describe('what the cache keeps in memory besides storage'),
  })
  .strict();

export const authSchema = z
  .object({
    anonymous: z
      .boolean()
      .default(true)
      .describe(
        'true: the open mirror (no client authentication); false: Docxy issues and checks its own tokens',
      ),
    htpasswd: z
      .string()
      .optional()
      .describe('an htpasswd file with bcrypt entries (htpasswd -B, docxy htpasswd add)'),
    users: z
      .array(
        z
          .object({
            name: z.string().min(1),
            password_hash: z.string().regex(/^\$2[aby]\$/, 'must be a bcrypt hash'),
          })
          .strict(),
      )
      .default([])
      .describe('users in the config, with bcrypt password hashes'),
    groups: z
      .record(z.string(), z.array(z.string()))
      .default({})
      .describe('group name -> user names, for policy `group:<name>`'),
    service: z
      .string()
      .min(1)
      .default('docxy')
      .describe('the token service name (the `aud` of Docxy tokens)'),
    token: z
      .object({
        key_file: z
          .string()
          .optional()
          .describe(
            'PEM EC P-256 private key for signing tokens (default: generated once in <data>/token.key)',
          ),
        ttl: duration.default(300_000).describe('lifetime of a Docxy token'),
      })
      .strict()
      .default({ ttl: 300_000 }),
  })
  .strict();

const whoSchema = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const policyRuleSchema = z
  .object({
    upstream: z.string().min(1).default('*').describe('upstream name, or * for all'),
    allow: z
      .array(z.string().min(1))
      .default([])
      .describe('repository globs: * within one path component, ** across'),
    deny: z.array(z.string().min(1)).default([]).describe('repository globs that win over allow'),
    who: whoSchema.default('*').describe('anonymous, authenticated, *, a user name or group:<name>'),
  })
  .strict();

const limitSchema = z
  .object({
    requests_per_minute: z.number().int().positive().optional(),
    bytes_per_hour: size.optional(),
    connections: z.number().int().positive().optional(),
  })
  .strict();

export const rateLimitSchema = z
  .object({
    per_ip: limitSchema.default({}).describe('limits per client address'),
    per_user: limitSchema.omit({ connections: true }).default({}).describe('limits per authenticated user'),
    failed_login_delay: duration
      .default(1000)
      .describe(
        'added delay per recent failed login of an address, or of a user from that address (max 10x)',
      ),
  })
  .strict();

export const limitsSchema = z
  .object({
    url_length: z.number().int().min(256).default(4096).describe('longest request URL accepted (-> 414)'),
    header_bytes: size.default(16 * 1024).describe('largest request header block (node answers 431)'),
    headers_count: z.number().int().min(10).default(100).describe('most request headers read'),
    request_timeout: duration
      .default(0)
      .describe('whole-request receive timeout; 0 = none (pulls may be long)'),
    headers_timeout: duration
      .default(30_000)
      .describe('a client must send its request headers within this (slow-loris)'),
    allow_private_redirects: z
      .boolean()
      .optional()
      .describe(
        'follow upstream redirects to loopback/private addresses (default: only when the upstream itself is on one)',
      ),
  })
  .strict();

export const tlsSchema = z
  .object({
    cert: z.string().optional().describe('PEM certificate chain (leaf first); env DOCXY_CERT_PATH'),
    key: z
      .string()
      .optional()
      .describe('PEM private key: PKCS#1 RSA, SEC1 EC (P-256, P-384) or PKCS#8; env DOCXY_KEY_PATH'),
    acme: z
      .object({
        domains: z
          .array(z.string().min(1))
          .min(1)
          .describe('names the certificate is for (the first is its subject)'),
        email: z.string().optional().describe('the ACME account contact'),
        directory_url: httpUrl
          .default('https://acme-v02.api.letsencrypt.org/directory')
          .describe(
            "the ACME directory (Let's Encrypt; staging: https://acme-staging-v02.api.letsencrypt.org/directory)",
          ),
        directory_ca_file: z
          .string()
          .optional()
          .describe('extra CA to trust for the directory itself (test CAs such as pebble)'),
        renew_before: duration
          .default(30 * 86_400_000)
          .describe('renew when the certificate expires within this'),
        check_interval: duration
          .default(12 * 3_600_000)
          .describe('how often to check whether renewal is due'),
      })
      .strict()
      .optional()
      .describe('obtain and renew the certificate with ACME (HTTP-01 on http_listen) instead of cert/key'),
  })
  .strict()
  .refine((t) => (t.cert === undefined) === (t.key === undefined), 'give both cert and key, or neither')
  .refine((t) => !(t.acme !== undefined && t.cert !== undefined), 'give cert/key or acme, not both');

const loopback = ['127.0.0.0/8', '::1'];
const cidrList = z.array(z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'must be an IP address or CIDR'));

export const metricsSchema = z
  .object({
    enabled: z.boolean().default(true).describe('export Prometheus metrics at GET /metrics'),
    allow: cidrList
      .default(loopback)
      .describe('client addresses or CIDRs that may scrape /metrics on the main listener (others: 403)'),
    listen: hostPort
      .optional()
      .describe('serve /metrics on this address instead of the main listener (no allow check there)'),
  })
  .strict();

export const dashboardSchema = z
  .object({
    enabled: z.boolean().default(true).describe('serve the live dashboard at /-/dashboard and /-/api/stats'),
    allow: cidrList
      .default(loopback)
      .describe('with anonymous auth and no dashboard.users: client addresses or CIDRs that may see it'),
    users: z
      .array(z.string().min(1))
      .default([])
      .describe('only these users (HTTP Basic, auth.users/htpasswd) see it; empty: any user when auth is on'),
  })
  .strict();

/**
 * A list that may also come as one string, `a, b` or `[a, b]`: DOCXY_* values containing `:` or `/`
 * stay strings (load.ts), so `DOCXY_WARM__IMAGES='[alpine:3.20, ghcr.io/o/a:1]'` arrives as text.
 */
function listOf<T extends z.ZodType>(item: T) {
  return z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .replace(/^\s*\[|\]\s*$/g, '')
            .split(/[\s,]+/)
            .filter((x) => x !== '')
        : v,
    z.array(item),
  );
}

export const warmSchema = z
  .object({
    interval: duration
      .default(0)
      .describe('refresh the images this often, first shortly after start (0 = never)'),
    images: listOf(
      z
        .string()
        .refine(
          (s) => parseImage(s, false) !== undefined,
          'not an image reference (name[:tag] or name@sha256:…)',
        ),
    )
      .default([])
      .describe('images to keep in the cache, as docker names them: alpine:3.20, ghcr.io/owner/app:1'),
    platforms: z
      .union([
        z.literal('all'),
        listOf(z.string().refine((s) => parsePlatform(s) !== undefined, 'not os/arch[/variant]')),
      ])
      .default(['linux/amd64'])
      .describe('platforms of multi-arch images to warm (os/arch[/variant]), or all'),
    concurrency: z.number().int().min(1).max(64).default(2).describe('images warmed at the same time'),
  })
  .strict();

export const configSchema = z
  .object({
    listen: hostPort
      .optional()
      .describe('address and port of the main listener (default 0.0.0.0:443 with TLS, 0.0.0.0:5000 without)'),
    http_listen: z
      .union([hostPort, z.literal(false)])
      .optional()
      .describe(
        'with TLS: the plain HTTP listener that redirects to HTTPS and answers ACME challenges (default 0.0.0.0:80; false = none)',
      ),
    trust_proxy: z
      .array(z.string().min(1))
      .default([])
      .describe('addresses or CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed'),
    tls: tlsSchema.optional(),
    shutdown_timeout: duration
      .default(30_000)
      .describe('on SIGTERM/SIGINT, let running transfers finish this long, then exit'),
    public_url: httpUrl
      .optional()
      .describe('the URL clients reach Docxy at; every URL Docxy emits (token realm) is built from it'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    log: z
      .object({
        summary_interval: duration
          .default(60_000)
          .describe('log one info line with the cache counters since the last one this often; 0 = never'),
      })
      .strict()
      .default({ summary_interval: 60_000 })
      .describe('logging beyond the one line per request'),
    memory: z
      .object({
        heap_target: size
          .default(64 * 1024 ** 2)
          .describe(
            'soft cap of the JavaScript heap: past it a full garbage collection runs (at most once a second); 0 = leave it to V8',
          ),
        semi_space: size
          .default(6 * 1024 ** 2)
          .describe(
            "V8's young-generation semi-space (node --max-semi-space-size), applied by `docxy serve` re-executing itself once; 0 = V8's default",
          ),
        malloc_arenas: z
          .number()
          .int()
          .min(0)
          .max(64)
          .default(1)
          .describe(
            "glibc malloc arenas (MALLOC_ARENA_MAX), applied like semi_space; 0 = glibc's default; an environment's own MALLOC_ARENA_MAX wins",
          ),
      })
      .strict()
      .default({ heap_target: 64 * 1024 ** 2, semi_space: 6 * 1024 ** 2, malloc_arenas: 1 })
      .describe('process memory'),
    data: z
      .string()
      .min(1)
      .default('./data')
      .describe(
        'the data directory: the filesystem cache, and what is local to one replica (ACME state, spools)',
      ),
    default_upstream: z
      .string()
      .optional()
      .describe('the upstream for requests no host, ns or prefix routes (default: the first)'),
    upstreams: z
      .array(upstreamEntrySchema)
      .min(1)
      .optional()
      .describe('the registries behind Docxy (default: docker.io)'),
    upstream: upstreamSchema
      .optional()
      .describe('shorthand: settings for the default upstream (flag --upstream sets its url)'),
    auth: authSchema.default({
      anonymous: true,
      users: [],
      groups: {},
      service: 'docxy',
      token: { ttl: 300_000 },
    }),
    policy: z.array(policyRuleSchema).default([]).describe('who may pull what (empty: everyone everything)'),
    coordination: z
      .object({
        redis: z
          .object({
            url: z
              .string()
              .regex(/^rediss?:\/\/[^/]/, 'must be a redis:// or rediss:// URL')
              .describe('the Redis every replica shares (leases, rate-limit counts, access proofs)'),
          })
          .strict()
          .optional()
          .describe('omitted: in-process coordination (one replica)'),
      })
      .strict()
      .default({})
      .describe('what several replicas share besides storage'),
    cluster: clusterSchema
      .optional()
      .describe('the internal endpoint replicas stream in-flight blobs from (needs coordination.redis)'),
    rate_limit: rateLimitSchema.default({ per_ip: {}, per_user: {}, failed_login_delay: 1000 }),
    limits: limitsSchema.default({
      url_length: 4096,
      header_bytes: 16 * 1024,
      headers_count: 100,
      request_timeout: 0,
      headers_timeout: 30_000,
    }),
    metrics: metricsSchema.default({ enabled: true, allow: loopback }),
    dashboard: dashboardSchema.default({ enabled: true, allow: loopback, users: [] }),
    warm: warmSchema
      .default({ interval: 0, images: [], platforms: ['linux/amd64'], concurrency: 2 })
      .describe('images the server keeps warm on a schedule (docxy warm, run by the server)'),
    storage: storageSchema
      .default({ driver: 'filesystem' })
      .describe('where cached objects live: filesystem (under data:) or one S3 bucket shared by replicas'),
    cache: cacheSchema.default({
      enabled: true,
      max_size: 50 * 1024 ** 3,
      max_stale: 0,
      fill_timeout: 1_800_000,
      resume_retries: 3,
      resume_backoff: 500,
      memory: { manifest_bytes: 16 * 1024 ** 2 },
    }),
  })
  .strict();

export type ConfigFile = z.output<typeof configSchema>;
export type CacheConfig = ConfigFile['cache'];
export type UpstreamEntry = z.output<typeof upstreamEntrySchema>;
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
