/**
 * `cluster:` — the internal endpoint through which replicas of one fleet stream each other's
 * in-flight blob fills (src/cluster/). It listens on a port of its own, never the public one, and
 * answers only requests carrying the fleet's shared secret.
 */
import { z } from 'zod';
import { resolveSecret } from './secret.ts';
import { duration, hostPort, httpUrl } from './zod-units.ts';

export const clusterSchema = z
  .object({
    listen: hostPort.describe('HOST:PORT of the internal endpoint (a port of its own, e.g. 10.0.0.5:5100)'),
    advertise: httpUrl
      .optional()
      .describe('how the other replicas reach this one (default: http://<listen>)'),
    secret: z.string().min(16).optional().describe('the fleet-wide shared secret itself (16+ characters)'),
    secret_file: z
      .string()
      .min(1)
      .optional()
      .describe('a file holding the shared secret (the same on every replica)'),
    secret_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional()
      .describe('an environment variable holding the shared secret'),
    lease_ttl: duration
      .default(10_000)
      .describe('a fill lease expires this long after its holder stopped renewing it (a crash: takeover)'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const given = [c.secret, c.secret_file, c.secret_env].filter((s) => s !== undefined).length;
    if (given !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['secret'],
        message: 'give exactly one of secret, secret_file, secret_env',
      });
    }
    if (c.lease_ttl < 1000) {
      ctx.addIssue({ code: 'custom', path: ['lease_ttl'], message: 'must be at least 1s' });
    }
  });

export type ClusterConfig = z.output<typeof clusterSchema>;

/** `cluster:` with the secret read and the advertised address defaulted. */
export interface ResolvedCluster {
  readonly listen: string;
  readonly advertise: string;
  readonly secret: string;
  readonly lease_ttl: number;
}

/**
 * Reads the cluster secret where the config says it is and checks what spans sections: a cluster
 * needs shared coordination (the leases live in Redis) and a port apart from the public listener.
 */
export function resolveCluster(
  cfg: ClusterConfig | undefined,
  ctx: { readonly redis: boolean; readonly listen: string },
  env: NodeJS.ProcessEnv,
  problems: string[],
): ResolvedCluster | undefined {
  if (cfg === undefined) return undefined;
  if (!ctx.redis) problems.push('cluster: needs coordination.redis.url (the fill leases live in Redis)');
  if (cfg.listen === ctx.listen) problems.push('cluster.listen: must not be the public listen address');
  const secret = resolveSecret(
    'cluster.secret',
    { value: cfg.secret, file: cfg.secret_file, env: cfg.secret_env },
    env,
    problems,
  );
  if (secret !== undefined && secret.length < 16) problems.push('cluster.secret: must be 16+ characters');
  return {
    listen: cfg.listen,
    advertise: cfg.advertise ?? `http://${cfg.listen}`,
    secret: secret ?? '',
    lease_ttl: cfg.lease_ttl,
  };
}
