/**
 * `docxy cache ls | gc | rm`: look into and trim the cache of a stopped or running Docxy (they
 * work on the storage directly; a running instance keeps working, re-fetching what was removed).
 */
import { imageSize, scanCache, type CacheIndex } from '../cache/cache-index.ts';
import { withLease } from '../coordination/coordination.ts';
import { evictToSize } from '../cache/eviction.ts';
import { evictionClaims } from '../cache/read-pins.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import { isValidName, isValidTag } from '../registry/reference.ts';
import { withLibraryPrefix } from '../routing/library-prefix.ts';
import { paths } from '../storage/paths.ts';
import { withStorage } from '../app-storage.ts';
import { formatSize } from '../config/units.ts';

type Out = (s: string) => void;

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return (
    rows
      .map((r) =>
        r
          .map((cell, c) => cell.padEnd(widths[c] ?? 0))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export async function cacheLs(config: Config, out: Out): Promise<void> {
  const index = await withStorage(config, scanCache);
  const rows = [['UPSTREAM', 'REPOSITORY', 'TAG', 'DIGEST', 'SIZE', 'LAST ACCESS']];
  const sorted = [...index.tags].sort((a, b) =>
    `${a.upstream}/${a.name}:${a.tag}`.localeCompare(`${b.upstream}/${b.name}:${b.tag}`),
  );
  for (const t of sorted) {
    const m = index.manifests.get(t.record.digest);
    const last = new Date(Math.max(t.lastAccess.getTime(), m?.lastAccess.getTime() ?? 0));
    rows.push([
      t.upstream,
      t.name,
      t.tag,
      t.record.digest.slice(0, 19),
      formatSize(imageSize(index, t.record.digest)),
      last.toISOString(),
    ]);
  }
  out(table(rows));
  out(
    `${index.tags.length} tags, ${index.manifests.size} manifests, ${index.blobs.size} blobs, ${formatSize(index.totalSize)} of ${formatSize(config.cache.max_size)}\n`,
  );
}

export async function cacheGc(config: Config, log: Logger, out: Out): Promise<number> {
  const r = await withStorage(
    config,
    (storage, fleet) => {
      // On a fleet, what any replica reads is pinned, and left alone.
      const evict = (): ReturnType<typeof evictToSize> =>
        evictToSize({
          storage,
          maxSize: config.cache.max_size,
          inUse: () => false,
          ...(fleet === undefined
            ? {}
            : { claims: evictionClaims(fleet.coordination.pins, fleet.owner.id, fleet.namespace) }),
          log,
        });
      if (fleet === undefined) return evict();
      // The fleet's evictor holds the same lease: never two eviction runs at once.
      return withLease(fleet.coordination.leases, 'eviction', fleet.owner, 60_000, evict);
    },
    log,
  );
  if (r === undefined) {
    out('a replica of the fleet is evicting right now (it holds the eviction lease); try again later\n');
    return 1;
  }
  out(
    `${formatSize(r.before)} -> ${formatSize(r.after)}: removed ${r.removed} objects (max_size ${formatSize(config.cache.max_size)})\n`,
  );
  return 0;
}

/** Manifests and blobs reachable from the given manifest digests. */
function reachable(index: CacheIndex, roots: Iterable<string>): Set<string> {
  const seen = new Set<string>();
  const visit = (d: string): void => {
    if (seen.has(d)) return;
    seen.add(d);
    const m = index.manifests.get(d);
    if (m === undefined) return;
    for (const b of m.blobs) seen.add(b);
    for (const c of m.manifests) visit(c);
  };
  for (const r of roots) visit(r);
  return seen;
}

/**
 * Removes `name` (every tag) or `name:tag` from the cache: the tag records, and the manifests and
 * blobs they lead to unless another remaining tag still leads to them. Returns the exit code.
 */
export async function cacheRm(config: Config, ref: string, out: Out): Promise<number> {
  const colon = ref.lastIndexOf(':');
  const hasTag = colon > ref.lastIndexOf('/');
  const rawName = hasTag ? ref.slice(0, colon) : ref;
  const tag = hasTag ? ref.slice(colon + 1) : undefined;
  if (!isValidName(rawName) || (tag !== undefined && !isValidTag(tag))) {
    out(`not a repository name or name:tag: ${ref}\n`);
    return 2;
  }
  // `ghcr.io/owner/img:1` names another upstream by its prefix; anything else is the default one.
  const slash = rawName.indexOf('/');
  const viaPrefix =
    slash < 0 ? undefined : config.upstreams.find((u) => u.prefix === rawName.slice(0, slash));
  const up = viaPrefix ?? config.upstreams.find((u) => u.name === config.defaultUpstream);
  if (up === undefined) return 2;
  const name = withLibraryPrefix(
    viaPrefix === undefined ? rawName : rawName.slice(slash + 1),
    up.libraryPrefix,
  );
  const upstream = up.name;
  return withStorage(config, async (storage) => {
    const index = await scanCache(storage);
    const gone = index.tags.filter(
      (t) => t.upstream === upstream && t.name === name && (tag === undefined || t.tag === tag),
    );
    if (gone.length === 0) {
      out(`${name}${tag === undefined ? '' : `:${tag}`}: not in the cache\n`);
      return 1;
    }
    const goneKeys = new Set(gone.map((t) => t.key));
    const keep = reachable(
      index,
      index.tags.filter((t) => !goneKeys.has(t.key)).map((t) => t.record.digest),
    );
    const drop = [
      ...reachable(
        index,
        gone.map((t) => t.record.digest),
      ),
    ].filter((d) => !keep.has(d));
    for (const t of gone) await storage.delete(t.key);
    // The repository's links of what it no longer holds (all of them when every tag went).
    let links = 0;
    if (tag === undefined) {
      for await (const l of storage.list(`links/${upstream}/${name}/_link/`)) {
        await storage.delete(l.key);
        links++;
      }
    } else {
      for (const d of drop) {
        const key = paths.link(upstream, name, d);
        if ((await storage.stat(key)) === undefined) continue;
        await storage.delete(key);
        links++;
      }
    }
    let bytes = 0;
    for (const d of drop) {
      const obj = index.manifests.get(d) ?? index.blobs.get(d);
      if (obj === undefined) continue;
      await storage.delete(obj.key);
      bytes += obj.size;
    }
    out(
      `removed ${gone.length} tag(s) of ${name}, ${drop.length} objects, ${formatSize(bytes)}, ${links} repository links\n`,
    );
    return 0;
  });
}
