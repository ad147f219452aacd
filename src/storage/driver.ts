/**
 * The storage driver interface: a flat key space of immutable-once-committed objects, shaped after
 * what S3-compatible stores do (put as a whole, ranged get, stat, delete, list by prefix) so a
 * later S3 driver implements it without rename tricks. A write goes to a temporary object and
 * becomes visible only on `commit()`; `cancel()`, a crash or a failed verification leave nothing
 * visible. Keys are built only by `paths.ts`, from validated names and digests.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** When the object was last read or written (`touch` moves it); drives LRU eviction. */
  readonly lastAccess: Date;
  /** Small string metadata given at write time (e.g. a manifest's media type). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Positional reads into the caller's buffer: a server sending many large objects reuses a few
 * buffers per transfer instead of allocating one per chunk (which keeps memory flat and spares the
 * garbage collector). Safe to call concurrently at different positions.
 */
export interface PositionalReader {
  /** Reads up to `length` bytes at `position` into `buf` at `offset`; resolves to how many (0 only past the end). */
  readInto(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** A committed object opened for positional reads; it stays readable until closed, even if deleted meanwhile. */
export interface ObjectHandle extends PositionalReader {
  readonly size: number;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads the bytes written so far to an uncommitted object (late joiners of a shared fill). */
export interface PartialReader extends PositionalReader {
  /** Streams bytes [start, end) — all of them must already be written. */
  read(start: number, end: number): Readable;
}

export interface ObjectWriter {
  /**
   * Appends bytes (one buffer, or several in order: written together without copying them into
   * one); resolves when they can be read back by `openPartialReader`.
   */
  write(chunk: Buffer | readonly Buffer[]): Promise<void>;
  /** Bytes written so far. */
  readonly written: number;
  /** A reader of what is written so far; stays valid after commit or cancel until closed. */
  openPartialReader(): Promise<PartialReader>;
  /** Makes the object visible under its key, replacing any previous object. Call only after verifying. */
  commit(): Promise<void>;
  /** Discards everything written; nothing becomes visible. Safe to call more than once or after a failure. */
  cancel(): Promise<void>;
}

export interface ListEntry {
  readonly key: string;
  readonly size: number;
  readonly lastAccess: Date;
}

export interface StorageDriver {
  /** A short name for logs (`filesystem`, `s3`). */
  readonly name: string;
  /** Starts a new temporary object that `commit()` will publish under `key`. */
  createWriter(key: string, opts?: { metadata?: Record<string, string> }): Promise<ObjectWriter>;
  /** Streams `[start, end)` of a committed object (the whole object without a range); undefined when absent. */
  get(key: string, range?: { start: number; end: number }): Promise<Readable | undefined>;
  /** Opens a committed object for positional reads (size and metadata included); undefined when absent. */
  open(key: string): Promise<ObjectHandle | undefined>;
  /** Reads a small committed object whole (manifests, tag records); undefined when absent. */
  getBytes(key: string): Promise<Buffer | undefined>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Removes a committed object; absent objects are fine. */
  delete(key: string): Promise<void>;
  /** Every committed object whose key starts with `prefix`. */
  list(prefix: string): AsyncIterable<ListEntry>;
  /** Records a read, for LRU eviction; cheap and best-effort. */
  touch(key: string): Promise<void>;
  /** Removes leftovers of a crash (uncommitted temporary objects); called once at start. */
  cleanupTemporary(): Promise<number>;
}
