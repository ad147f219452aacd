/**
 * The storage error the rest of Docxy understands, whatever the driver: the store could not be
 * reached, timed out or failed on its side. It is a RegistryError UNAVAILABLE (503), so a request
 * that needs the store gets a clear OCI error; the caches treat it as "not cached" and relay.
 */
import { RegistryError } from '../registry/errors.ts';

/** The object store could not be reached or answered with a server error or timed out. */
export class StorageUnavailableError extends RegistryError {
  constructor(operation: string, cause: unknown) {
    super('UNAVAILABLE', { message: `object store unavailable (${operation})` });
    this.name = 'StorageUnavailableError';
    this.cause = cause;
  }
}

/** Whether `err` is a StorageUnavailableError. */
export function isStorageUnavailable(err: unknown): err is StorageUnavailableError {
  return err instanceof StorageUnavailableError;
}
