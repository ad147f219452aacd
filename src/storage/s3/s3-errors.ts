/**
 * How S3 failures map to what the rest of Docxy understands: "absent" (404) becomes undefined in
 * the driver, and an unreachable or failing object store becomes a StorageUnavailableError, which
 * is a RegistryError UNAVAILABLE (503) so a request that needs the store gets a clear OCI error
 * instead of a hang or a 500.
 */
import { RegistryError } from '../../registry/errors.ts';
import { StorageUnavailableError } from '../errors.ts';

interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Whether an SDK error means "no such object" (or bucket-relative 404). */
export function isNotFound(err: unknown): boolean {
  const e = err as SdkError | null;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Whether an SDK error is a conditional read that failed because the object changed. */
export function isPreconditionFailed(err: unknown): boolean {
  const e = err as SdkError | null;
  return e?.name === 'PreconditionFailed' || e?.$metadata?.httpStatusCode === 412;
}

/** Whether an SDK error is 416 (a range past the end, e.g. any range of an empty object). */
export function isInvalidRange(err: unknown): boolean {
  const e = err as SdkError | null;
  return e?.name === 'InvalidRange' || e?.$metadata?.httpStatusCode === 416;
}

/**
 * Network errors, timeouts and 5xx become StorageUnavailableError; anything else (4xx: a
 * misconfiguration such as wrong keys) is rethrown as is, so it is not mistaken for an outage.
 */
export function toStorageError(operation: string, err: unknown): Error {
  if (err instanceof RegistryError) return err;
  const e = err as SdkError | null;
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined && status < 500) return err as Error;
  return new StorageUnavailableError(operation, err);
}
