/** Small helpers shared by the integration tests: hook results, timing a step, reading an OCI image layout. */
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** A value a before hook set up; a clear error when that hook failed. */
export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is not available (its before hook failed)`);
  return value;
}

/** Runs `step`, reports how long it took, and returns its result. */
export async function timed<T>(t: TestContext, what: string, step: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const result = await step();
  t.diagnostic(`${what}: ${Date.now() - t0} ms`);
  return result;
}

export interface OciLayoutEntry {
  mediaType: string;
  digest: string;
  annotations: Record<string, string>;
}

/** The `manifests` of an OCI layout's index.json, validated field by field. */
export function parseLayoutIndex(text: string): OciLayoutEntry[] {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || !('manifests' in parsed)) {
    throw new Error(`index.json without manifests: ${text}`);
  }
  const manifests: unknown = parsed.manifests;
  if (!Array.isArray(manifests)) throw new Error(`index.json manifests is not an array: ${text}`);
  return manifests.map((m: unknown): OciLayoutEntry => {
    if (typeof m !== 'object' || m === null) throw new Error(`bad index.json entry: ${text}`);
    const mediaType = 'mediaType' in m && typeof m.mediaType === 'string' ? m.mediaType : '';
    const digest = 'digest' in m && typeof m.digest === 'string' ? m.digest : '';
    const annotations: Record<string, string> = {};
    if ('annotations' in m && typeof m.annotations === 'object' && m.annotations !== null) {
      for (const [k, v] of Object.entries(m.annotations)) if (typeof v === 'string') annotations[k] = v;
    }
    return { mediaType, digest, annotations };
  });
}

/** Path of a blob in an OCI layout. */
export function layoutBlob(layout: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(layout, 'blobs', alg, hex);
}
