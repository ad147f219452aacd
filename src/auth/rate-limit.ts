/**
 * Rate limits, off unless configured: requests per minute and bytes per hour per client address and
 * per user (fixed windows), concurrent connections per address, and a growing delay for failed
 * logins per address and per (user, address). Over a limit -> 429 TOOMANYREQUESTS with Retry-After.
 *
 * The login delay is never keyed by the user alone: then anyone could fail logins as `alice` and
 * slow alice's own logins, from everywhere, for ten minutes. An attacker slows only the addresses
 * it attacks from. The failure table is bounded (least recently failing entries go first), so a
 * flood of addresses or user names cannot grow it without limit.
 */
import type { Counters } from '../coordination/coordination.ts';
import { RegistryError } from '../registry/errors.ts';

export interface RateLimitConfig {
  readonly per_ip: { requests_per_minute?: number; bytes_per_hour?: number; connections?: number };
  readonly per_user: { requests_per_minute?: number; bytes_per_hour?: number };
  readonly failed_login_delay: number;
}

export interface RateLimiter {
  /** Counts one request; throws TOOMANYREQUESTS when over a request or byte budget. */
  request(ip: string, user: string | undefined): void;
  /** Counts bytes sent; false when the transfer just went over a byte budget (cut it). */
  bytes(ip: string, user: string | undefined, n: number): boolean;
  /** A new connection from `ip`; false when over the cap (close it). Call `closed` when it ends. */
  opened(ip: string): boolean;
  closed(ip: string): void;
  /** Milliseconds to wait before answering a login attempt. */
  loginDelay(ip: string, user: string | undefined): number;
  loginFailed(ip: string, user: string | undefined): void;
}

/** The failure key of a user at an address (a user name may contain anything but a newline). */
const userAt = (user: string, ip: string): string => `user:${ip}\n${user}`;

interface Window {
  start: number;
  used: number;
}

const minute = 60_000;
const hour = 3_600_000;
const failureMemoryMs = 10 * minute;
/** Failure entries kept at most (about 100 bytes each). */
const defaultMaxFailures = 10_000;

export function createRateLimiter(
  cfg: RateLimitConfig,
  now: () => number = Date.now,
  maxFailures = defaultMaxFailures,
  /** Told of each refusal (metrics), by which budget ran out. */
  onRefuse?: (reason: 'requests' | 'bytes') => void,
  /**
   * The fleet's counters (Redis coordination): request, byte and failed-login counts are also
   * added there, in clock-aligned windows, and a limit holds when either the local or the fleet's
   * count passes it. The fleet's count lags by the coordination's flush interval; the local one
   * never does, so one replica alone is exactly as strict as without it.
   */
  shared?: Counters,
): RateLimiter {
  const windows = new Map<string, Window>();
  const connections = new Map<string, number>();
  const failures = new Map<string, { count: number; last: number }>();

  function windowOf(key: string, span: number): Window {
    const t = now();
    let w = windows.get(key);
    if (w === undefined || t - w.start >= span) {
      w = { start: t, used: 0 };
      windows.set(key, w);
    }
    return w;
  }

  function over(key: string, span: number, limit: number | undefined, add: number): number | undefined {
    if (limit === undefined) return undefined;
    const w = windowOf(key, span);
    w.used += add;
    if (w.used > limit) return Math.ceil((w.start + span - now()) / 1000);
    if (shared !== undefined && shared.add(key, span, add) > limit)
      return Math.ceil(shared.remaining(span) / 1000);
    return undefined;
  }

  function tooMany(retryAfter: number, what: string): RegistryError {
    onRefuse?.(what.startsWith('bytes') ? 'bytes' : 'requests');
    return new RegistryError('TOOMANYREQUESTS', {
      message: `rate limit exceeded: ${what}`,
      headers: { 'retry-after': String(Math.max(1, retryAfter)) },
    });
  }

  // Old windows are dropped now and then so the maps stay as small as the active client set.
  let lastSweep = now();
  function sweep(): void {
    const t = now();
    if (t - lastSweep < minute) return;
    lastSweep = t;
    for (const [k, w] of windows) if (t - w.start >= hour) windows.delete(k);
    for (const [k, f] of failures) if (t - f.last >= failureMemoryMs) failures.delete(k);
  }

  return {
    request(ip, user) {
      sweep();
      const r1 = over(`rpm:ip:${ip}`, minute, cfg.per_ip.requests_per_minute, 1);
      if (r1 !== undefined) throw tooMany(r1, 'requests per minute for this address');
      if (user !== undefined) {
        const r2 = over(`rpm:user:${user}`, minute, cfg.per_user.requests_per_minute, 1);
        if (r2 !== undefined) throw tooMany(r2, 'requests per minute for this user');
      }
      const b1 = over(`bph:ip:${ip}`, hour, cfg.per_ip.bytes_per_hour, 0);
      if (b1 !== undefined) throw tooMany(b1, 'bytes per hour for this address');
      if (user !== undefined) {
        const b2 = over(`bph:user:${user}`, hour, cfg.per_user.bytes_per_hour, 0);
        if (b2 !== undefined) throw tooMany(b2, 'bytes per hour for this user');
      }
    },
    bytes(ip, user, n) {
      const a = over(`bph:ip:${ip}`, hour, cfg.per_ip.bytes_per_hour, n);
      const b =
        user === undefined ? undefined : over(`bph:user:${user}`, hour, cfg.per_user.bytes_per_hour, n);
      return a === undefined && b === undefined;
    },
    opened(ip) {
      const n = (connections.get(ip) ?? 0) + 1;
      connections.set(ip, n);
      return cfg.per_ip.connections === undefined || n <= cfg.per_ip.connections;
    },
    closed(ip) {
      const n = (connections.get(ip) ?? 1) - 1;
      if (n <= 0) connections.delete(ip);
      else connections.set(ip, n);
    },
    loginDelay(ip, user) {
      const t = now();
      const count = (k: string): number => {
        const f = failures.get(k);
        return f !== undefined && t - f.last < failureMemoryMs ? f.count : 0;
      };
      const fleet = (k: string): number => shared?.add(k, failureMemoryMs, 0) ?? 0;
      const n = Math.max(
        count(`ip:${ip}`),
        fleet(`fail:ip:${ip}`),
        user === undefined ? 0 : Math.max(count(userAt(user, ip)), fleet(`fail:${userAt(user, ip)}`)),
      );
      return Math.min(n, 10) * cfg.failed_login_delay;
    },
    loginFailed(ip, user) {
      const t = now();
      for (const k of [`ip:${ip}`, ...(user === undefined ? [] : [userAt(user, ip)])]) {
        shared?.add(`fail:${k}`, failureMemoryMs, 1);
        const f = failures.get(k);
        // Delete, then set: a Map keeps insertion order, so the first key is the least recent.
        failures.delete(k);
        failures.set(k, {
          count: (f !== undefined && t - f.last < failureMemoryMs ? f.count : 0) + 1,
          last: t,
        });
        while (failures.size > maxFailures) {
          const oldest = failures.keys().next();
          if (oldest.done === true) break;
          failures.delete(oldest.value);
        }
      }
    },
  };
}
