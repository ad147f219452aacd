/**
 * `storage:` — where the cache's objects live. `filesystem` (the default) keeps them under `data:`;
 * `s3` keeps them in one bucket of an S3-compatible store, shared by every replica. `data:` stays
 * for what is local to one replica (ACME state, spool files, the access index).
 */
import { z } from 'zod';
import { resolveSecret } from './secret.ts';
import { duration, httpUrl, size } from './zod-units.ts';

const MiB = 1024 * 1024;

export const s3Schema = z
  .object({
    endpoint: httpUrl
      .optional()
      .describe('the S3-compatible endpoint, e.g. http://127.0.0.1:7480 (omit for AWS)'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 of a-z 0-9 . -)')
      .describe('the bucket; it must exist (checked at start)'),
    prefix: z
      .string()
      .regex(/^([^/\s][^\s]*\/)?$/, 'must be empty or end with "/" (e.g. docxy/)')
      .default('')
      .describe('key prefix inside the bucket (empty or ending with /)'),
    region: z.string().min(1).default('us-east-1').describe('the signing region'),
    force_path_style: z
      .boolean()
      .default(false)
      .describe('path-style URLs (endpoint/bucket/key), needed by most non-AWS stores'),
    access_key_id: z.string().min(1).optional().describe('static key id (omit for the AWS default chain)'),
    secret_access_key: z.string().min(1).optional().describe('the secret itself'),
    secret_access_key_file: z.string().min(1).optional().describe('a file holding the secret'),
    secret_access_key_env: z
      .string()
      .min(1)
      .optional()
      .describe('an environment variable holding the secret'),
    part_size: size
      .default(8 * MiB)
      .refine((n) => n >= 5 * MiB && n <= 512 * MiB, 'must be between 5MiB and 512MiB')
      .describe(
        'bytes per multipart part (memory per running write is about part_size x upload_concurrency)',
      ),
    upload_concurrency: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(2)
      .describe('parts of one write uploading at once'),
    read_ahead: size
      .default(4 * MiB)
      .refine((n) => n >= 64 * 1024 && n <= 64 * MiB, 'must be between 64KiB and 64MiB')
      .describe('bytes one ranged GET fetches when serving a cached object'),
    connect_timeout: duration
      .default(5_000)
      .describe('give up connecting to the store after this long (-> 503)'),
    request_timeout: duration
      .default(30_000)
      .describe('a store request without progress this long fails (-> 503)'),
  })
  .strict()
  .superRefine((s, ctx) => {
    const secrets = [s.secret_access_key, s.secret_access_key_file, s.secret_access_key_env].filter(
      (v) => v !== undefined,
    ).length;
    if (s.access_key_id === undefined && secrets > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['access_key_id'],
        message: 'required with a secret_access_key*',
      });
    }
    if (s.access_key_id !== undefined && secrets !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['secret_access_key'],
        message: 'give exactly one of secret_access_key, secret_access_key_file, secret_access_key_env',
      });
    }
  });

export const storageSchema = z
  .object({
    driver: z.enum(['filesystem', 's3']).default('filesystem').describe('filesystem (under data:) | s3'),
    s3: s3Schema.optional().describe('the bucket, with driver: s3'),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.driver === 's3' && s.s3 === undefined) {
      ctx.addIssue({ code: 'custom', path: ['s3'], message: 'required with driver: s3 (at least bucket)' });
    }
  });

export type StorageConfig = z.output<typeof storageSchema>;
export type S3Config = z.output<typeof s3Schema>;

/** `storage:` with the S3 secret read from its file or variable (undefined: the AWS default chain). */
export type ResolvedStorage = StorageConfig & {
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
};

/** Reads the S3 secret where the config says it is; what fails goes to `problems` by key path. */
export function resolveStorage(
  cfg: StorageConfig,
  env: NodeJS.ProcessEnv,
  problems: string[],
): ResolvedStorage {
  const s3 = cfg.s3;
  if (cfg.driver !== 's3' || s3?.access_key_id === undefined) return { ...cfg, credentials: undefined };
  const secret = resolveSecret(
    'storage.s3.secret_access_key',
    { value: s3.secret_access_key, file: s3.secret_access_key_file, env: s3.secret_access_key_env },
    env,
    problems,
  );
  return {
    ...cfg,
    credentials:
      secret === undefined ? undefined : { accessKeyId: s3.access_key_id, secretAccessKey: secret },
  };
}
