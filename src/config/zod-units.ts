/** Zod building blocks shared by the schema files: durations and sizes with units, http(s) URLs, HOST:PORT. */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/** A number, or a string with a unit that `parse` turns into one (durations, sizes). */
function withUnits(parse: (v: string | number) => number | undefined, message: string) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = parse(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return n;
  });
}

export const duration = withUnits(parseDuration, 'must be a duration such as 500ms, 30s, 5m or 1h');
export const size = withUnits(parseSize, 'must be a size such as 1048576, 512MiB or 50GiB');

export const httpUrl = z
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

export const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be HOST:PORT, e.g. 0.0.0.0:5000 or [::]:5000');
