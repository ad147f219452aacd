/**
 * `docxy warm <image>…`: prefetch images into a running Docxy's cache by pulling them through it
 * over HTTP, N images at a time. References are resolved the way docker resolves them (`alpine:3.20`
 * is the default upstream's library/alpine; `ghcr.io/owner/app:1` goes by its prefix, which Docxy's
 * router maps to that upstream). Exit 0 when every image warmed, 1 naming each failure, 2 for usage.
 */
import { readFileSync } from 'node:fs';
import { arch } from 'node:process';
import { formatSize } from '../config/units.ts';
import { parseImage } from '../warm/image-ref.ts';
import { eachLimited, parsePlatform, WarmError, type Platform, type WarmTarget } from '../warm/warm-plan.ts';
import { createWarmClient } from './warm-client.ts';
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

  await eachLimited(queue, args.concurrency, one);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  progress.end(
    `warmed ${queue.length - failures.length}/${queue.length} images, ${formatSize(totalBytes)} in ${secs} s`,
  );
  for (const f of failures) o.err(`failed: ${f}\n`);
  return failures.length === 0 ? 0 : 1;
}
