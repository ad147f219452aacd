/**
 * `docxy warm <image>…`: prefetch images into a running Docxy's cache by pulling them through it
 * over HTTP, N images at a time. References are resolved the way docker resolves them (`alpine:3.20`
 * is the default upstream's library/alpine; `ghcr.io/owner/app:1` goes by its prefix, which Docxy's
 * router maps to that upstream). Exit 0 when every image warmed, 1 naming each failure, 2 for usage.
 */
import { readFileSync } from 'node:fs';
import { arch } from 'node:process';
import { formatSize } from '../config/units.ts';
import { isValidName, isValidTag } from '../registry/reference.ts';
import { withLibraryPrefix } from '../routing/library-prefix.ts';
import { createWarmClient, parsePlatform, WarmError, type Platform, type WarmTarget } from './warm-client.ts';
import { createProgress } from './warm-progress.ts';

export interface WarmOptions {
  readonly images: readonly string[];
  readonly file?: string | undefined;
  readonly platform?: string | undefined;
  readonly allPlatforms?: boolean | undefined;
  readonly concurrency?: string | undefined;
  readonly server: string;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  /** Whether the default upstream adds `library/` to one-component names (Docker Hub does). */
  readonly libraryPrefix: boolean;
  readonly tty: boolean;
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

/** Docker's names for the default registry: `docker.io/alpine` is plain `alpine`. */
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `alpine:3.20`, `ghcr.io/o/a:1`, `name@sha256:…` -> what to ask Docxy for, or undefined. */
export function parseImage(ref: string, libraryPrefix: boolean): WarmTarget | undefined {
  let name = ref;
  let reference = 'latest';
  const at = ref.indexOf('@');
  if (at >= 0) {
    name = ref.slice(0, at);
    reference = ref.slice(at + 1);
    if (!/^sha256:[a-f0-9]{64}$/.test(reference)) return undefined;
  } else {
    const colon = ref.lastIndexOf(':');
    if (colon > ref.lastIndexOf('/')) {
      name = ref.slice(0, colon);
      reference = ref.slice(colon + 1);
      if (!isValidTag(reference)) return undefined;
    }
  }
  const slash = name.indexOf('/');
  if (slash > 0 && HUB_HOSTS.has(name.slice(0, slash))) name = name.slice(slash + 1);
  // A host-like first component stays: Docxy routes it by prefix (or refuses an unknown one).
  const first = name.slice(0, Math.max(0, name.indexOf('/')));
  const hostLike = first.includes('.') || first.includes(':') || first === 'localhost';
  const checked = hostLike ? name.slice(first.length + 1) : name;
  if (!isValidName(checked)) return undefined;
  return { name: hostLike ? name : withLibraryPrefix(name, libraryPrefix), reference };
}

function hostPlatform(): Platform {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return { os: 'linux', architecture: map[arch] ?? 'amd64' };
}

type Parsed =
  | { ok: true; refs: string[]; platforms: Platform[] | 'all'; concurrency: number }
  | { ok: false; message: string };

function parseArgs(o: WarmOptions): Parsed {
  const refs = [...o.images];
  if (o.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(o.file, 'utf8');
    } catch (e) {
      return { ok: false, message: `--file ${o.file}: ${(e as Error).message}` };
    }
    for (const line of text.split('\n')) {
      const l = line.replace(/#.*/, '').trim();
      if (l !== '') refs.push(l);
    }
  }
  if (refs.length === 0) return { ok: false, message: 'no image given (arguments or --file)' };
  if (o.platform !== undefined && o.allPlatforms === true)
    return { ok: false, message: '--platform and --all-platforms exclude each other' };
  let platforms: Platform[] | 'all' = o.allPlatforms === true ? 'all' : [hostPlatform()];
  if (o.platform !== undefined) {
    platforms = [];
    for (const s of o.platform.split(',')) {
      const p = parsePlatform(s.trim());
      if (p === undefined) return { ok: false, message: `--platform: not os/arch[/variant]: ${s}` };
      platforms.push(p);
    }
  }
  const concurrency = o.concurrency === undefined ? 3 : Number(o.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
    return { ok: false, message: `--concurrency: an integer from 1 to 64, not ${o.concurrency}` };
  return { ok: true, refs, platforms, concurrency };
}

/** Runs the command; returns the exit code. */
export async function warm(o: WarmOptions): Promise<number> {
  const args = parseArgs(o);
  if (!args.ok) {
    o.err(`docxy warm: ${args.message}\n`);
    return 2;
  }
  const targets: { ref: string; target: WarmTarget }[] = [];
  for (const ref of args.refs) {
    const target = parseImage(ref, o.libraryPrefix);
    if (target === undefined) {
      o.err(`docxy warm: not an image reference: ${ref}\n`);
      return 2;
    }
    targets.push({ ref, target });
  }
  const basic =
    o.user === undefined
      ? undefined
      : `Basic ${Buffer.from(`${o.user}:${o.password ?? ''}`).toString('base64')}`;
  const client = createWarmClient({ server: o.server, basic });
  const progress = createProgress(o.out, o.tty);
  const failures: string[] = [];
  let totalBytes = 0;
  const t0 = Date.now();
  const queue = targets.map((t) => ({ ...t, p: progress.add(`${t.target.name}:${t.target.reference}`) }));

  async function one(item: (typeof queue)[number]): Promise<void> {
    const { target, p } = item;
    const started = Date.now();
    try {
      p.state = 'planning';
      const plan = await client.plan(target, args.ok ? args.platforms : 'all');
      p.total = plan.blobs.reduce((a, b) => a + b.size, 0);
      p.detail = plan.platforms.join(',');
      p.state = 'pulling';
      for (const b of plan.blobs) {
        await client.blob(target, b.digest, (n) => {
          p.done += n;
          totalBytes += n;
          progress.tick();
        });
      }
      p.state = 'done';
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      progress.finished(
        p,
        `warm ${p.label}${p.detail === '' ? '' : ` ${p.detail}`}: ${plan.blobs.length} blobs, ${formatSize(p.done)}, ${secs} s`,
      );
    } catch (e) {
      // A WarmError is the registry's answer; anything else (refused connection, …) says itself.
      const reason = e instanceof WarmError ? e.message : (e as Error).message;
      p.state = 'failed';
      p.detail = reason;
      failures.push(`${item.ref}: ${reason}`);
      progress.finished(p, `FAILED ${p.label}: ${reason}`);
    }
  }

  const pending = [...queue];
  const workers = Array.from({ length: Math.min(args.concurrency, pending.length) }, async () => {
    for (let item = pending.shift(); item !== undefined; item = pending.shift()) await one(item);
  });
  await Promise.all(workers);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  progress.end(
    `warmed ${queue.length - failures.length}/${queue.length} images, ${formatSize(totalBytes)} in ${secs} s`,
  );
  for (const f of failures) o.err(`failed: ${f}\n`);
  return failures.length === 0 ? 0 : 1;
}
