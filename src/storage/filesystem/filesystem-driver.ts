/**
 * The filesystem driver: committed objects under `<root>/objects/<key>`, their metadata beside them
 * under `<root>/meta/<key>.json`, writes in progress under `<root>/tmp/`. A commit flushes the data,
 * then renames the temporary file into place (atomic on POSIX), so a crash at any point leaves
 * either the old object or the new one, never a partial one. The last-access time is the file's
 * mtime, moved by `touch`.
 */
import { randomUUID } from 'node:crypto';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  utimes,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { filePartialReader, filePositionalReader, rangeStream } from '../range-stream.ts';
import type { ListEntry, ObjectInfo, ObjectWriter, PartialReader, StorageDriver } from '../driver.ts';

/** A key is touched at most this often, so hot manifests do not cost a syscall per request. */
const touchIntervalMs = 30_000;

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export function createFilesystemDriver(root: string): StorageDriver {
  const objects = join(root, 'objects');
  const meta = join(root, 'meta');
  const tmp = join(root, 'tmp');
  const touched = new Map<string, number>();

  const objectPath = (key: string): string => join(objects, key);
  const metaPath = (key: string): string => join(meta, `${key}.json`);

  async function readMeta(key: string): Promise<Record<string, string>> {
    try {
      return JSON.parse(await readFile(metaPath(key), 'utf8')) as Record<string, string>;
    } catch {
      return {};
    }
  }

  /** A committed object's file, opened for reading; undefined when absent. */
  async function openObject(key: string): Promise<FileHandle | undefined> {
    try {
      return await open(objectPath(key), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function* walk(dir: string, keyPrefix: string): AsyncGenerator<ListEntry> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const n of names) {
      const p = join(dir, n);
      let s;
      try {
        s = await stat(p);
      } catch (err) {
        if (isNotFound(err)) continue; // deleted while listing
        throw err;
      }
      if (s.isDirectory()) yield* walk(p, `${keyPrefix}${n}/`);
      else yield { key: `${keyPrefix}${n}`, size: s.size, lastAccess: s.mtime };
    }
  }

  return {
    name: 'filesystem',

    async createWriter(key, opts) {
      await mkdir(tmp, { recursive: true });
      const tmpPath = join(tmp, randomUUID());
      const handle = await open(tmpPath, 'wx');
      let written = 0;
      let closed = false;
      const close = async (): Promise<void> => {
        if (closed) return;
        closed = true;
        await handle.close();
      };
      const writer: ObjectWriter = {
        get written() {
          return written;
        },
        async write(chunk) {
          const bufs = Buffer.isBuffer(chunk) ? [chunk] : chunk;
          const total = bufs.reduce((n, b) => n + b.length, 0);
          // One writev for all of them; a short write (rare on regular files) finishes piecewise.
          let done = (await handle.writev(bufs, written)).bytesWritten;
          let skip = done;
          for (const b of bufs) {
            if (skip >= b.length) {
              skip -= b.length;
              continue;
            }
            let off = skip;
            skip = 0;
            while (off < b.length) {
              const { bytesWritten } = await handle.write(b, off, b.length - off, written + done);
              off += bytesWritten;
              done += bytesWritten;
            }
          }
          written += total;
        },
        async openPartialReader(): Promise<PartialReader> {
          // Its own descriptor: it stays valid after the file is renamed (commit) or unlinked (cancel).
          return filePartialReader(await open(tmpPath, 'r'));
        },
        async commit() {
          await handle.datasync();
          await close();
          const dest = objectPath(key);
          await mkdir(dirname(dest), { recursive: true });
          if (opts?.metadata !== undefined) {
            await mkdir(dirname(metaPath(key)), { recursive: true });
            const metaTmp = join(tmp, `${randomUUID()}.meta`);
            await writeFile(metaTmp, JSON.stringify(opts.metadata));
            await rename(metaTmp, metaPath(key));
          } else {
            // The new object has no metadata: drop the replaced object's, or stat would report it.
            await rm(metaPath(key), { force: true });
          }
          await rename(tmpPath, dest);
          touched.set(key, Date.now());
        },
        async cancel() {
          await close().catch(() => undefined);
          await unlink(tmpPath).catch(() => undefined);
        },
      };
      return writer;
    },

    async get(key, range) {
      const handle = await openObject(key);
      if (handle === undefined) return undefined;
      const start = range?.start ?? 0;
      const end = range?.end ?? (await handle.stat()).size;
      let done = false;
      return rangeStream(handle, start, end, () => {
        if (done) return;
        done = true;
        void handle.close();
      });
    },

    async open(key) {
      const handle = await openObject(key);
      if (handle === undefined) return undefined;
      try {
        const s = await handle.stat();
        const metadata = await readMeta(key);
        return { size: s.size, metadata, ...filePositionalReader(handle) };
      } catch (err) {
        await handle.close();
        throw err;
      }
    },

    async getBytes(key) {
      try {
        return await readFile(objectPath(key));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async stat(key): Promise<ObjectInfo | undefined> {
      try {
        const s = await stat(objectPath(key));
        if (!s.isFile()) return undefined;
        return { key, size: s.size, lastAccess: s.mtime, metadata: await readMeta(key) };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },

    async delete(key) {
      await rm(objectPath(key), { force: true });
      await rm(metaPath(key), { force: true });
      touched.delete(key);
    },

    list(prefix) {
      // Walk from the deepest folder the prefix names, then filter by the rest of it.
      const cut = prefix.lastIndexOf('/');
      const dirKey = cut < 0 ? '' : prefix.slice(0, cut + 1);
      return (async function* () {
        for await (const e of walk(join(objects, dirKey), dirKey)) if (e.key.startsWith(prefix)) yield e;
      })();
    },

    async touch(key) {
      const now = Date.now();
      const last = touched.get(key);
      if (last !== undefined && now - last < touchIntervalMs) return;
      touched.set(key, now);
      const t = new Date(now);
      await utimes(objectPath(key), t, t).catch(() => undefined);
    },

    async cleanupTemporary() {
      let names: string[];
      try {
        names = await readdir(tmp);
      } catch (err) {
        if (isNotFound(err)) return 0;
        throw err;
      }
      await Promise.all(names.map((n) => rm(join(tmp, n), { force: true, recursive: true })));
      return names.length;
    },
  };
}
