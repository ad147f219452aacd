/** Human-friendly durations (`30s`, `5m`, `1h`, `250ms`, or a number of milliseconds). */
const durationUnits: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

export function parseDuration(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v);
  if (!m?.[1]) return undefined;
  const unit = durationUnits[m[2] ?? 'ms'];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** Byte sizes: a number of bytes, or `512MiB`, `50GiB`, `1TB` (binary KiB/MiB/GiB/TiB, decimal KB/MB/GB/TB). */
const sizeUnits: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m?.[1]) return undefined;
  const unit = sizeUnits[(m[2] ?? '').toLowerCase() || 'b'];
  return unit === undefined ? undefined : Math.floor(Number(m[1]) * unit);
}

/** A size for people: bytes, or one decimal of KiB/MiB/GiB/TiB (what `cache ls` prints). */
export function formatSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? String(v) : v.toFixed(1)} ${units[i] ?? 'B'}`;
}
