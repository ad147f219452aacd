/**
 * This replica's pins (coordination `Pins`) of the cached objects it is reading, so that the one
 * replica of the fleet that evicts never deletes an object under another replica's reader. An
 * object store keeps serving a deleted object only for what a read has already fetched (the S3
 * driver's read-ahead); a long read of a big layer would break halfway.
 *
 * One pin per key however many readers; renewed every third of its TTL while a read runs, and
 * dropped at the first renewal tick after the last read ended. So a new read of a key just released
 * finds it still pinned, and an unpin is never sent after a later pin of the same key.
 */
import type { Logger } from 'pino';
import type { Pins } from '../coordination/coordination.ts';
import type { EvictionClaims } from './eviction.ts';

export interface ReadPins {
  /**
   * Pins `key` before a read; resolves with the function that ends this reader's hold (call it
   * once, when the read ends), or undefined when the key is being evicted: read it as absent.
   */
  hold(key: string): Promise<(() => void) | undefined>;
  /** Stops renewing and unpins everything (shutdown). */
  close(): Promise<void>;
}

export interface ReadPinsDeps {
  readonly pins: Pins;
  readonly ownerId: string;
  /** The store's namespace (app-storage's BuiltStorage): keys are pinned as `<namespace> <key>`. */
  readonly namespace: string;
  /** A pin's lifetime: how long a crashed replica's pins still keep their objects. */
  readonly ttlMs: number;
  readonly log: Logger;
}

/** The key a store's object is pinned and claimed under (stores sharing one Redis stay apart). */
const pinKeyOf = (namespace: string, key: string): string => `${namespace} ${key}`;

interface Held {
  readers: number;
  readonly pinned: Promise<boolean>;
}

export function createReadPins(deps: ReadPinsDeps): ReadPins {
  const { pins, ownerId, ttlMs, log } = deps;
  const held = new Map<string, Held>();
  const pinKey = (key: string): string => pinKeyOf(deps.namespace, key);
  const pin = (key: string): Promise<boolean> =>
    pins.pin(pinKey(key), ownerId, ttlMs).catch((err: unknown) => {
      // The implementations answer in-process when shared coordination fails; this is a last guard.
      log.warn({ err, key }, 'pin failed; reading without it');
      return true;
    });
  const timer = setInterval(() => {
    for (const [key, h] of held) {
      if (h.readers > 0) {
        void pin(key).then((ok) => {
          // Only after our pin lapsed (a shared outage longer than its TTL) can a claim hold the key.
          if (!ok) log.warn({ key }, 'a read pin was lost to an eviction claim');
        });
        continue;
      }
      held.delete(key);
      void pins.unpin(pinKey(key), ownerId).catch(() => undefined);
    }
  }, ttlMs / 3);
  timer.unref();
  return {
    async hold(key) {
      let h = held.get(key);
      if (h === undefined) {
        h = { readers: 0, pinned: pin(key) };
        held.set(key, h);
      }
      const mine = h;
      mine.readers++;
      if (!(await mine.pinned)) {
        mine.readers--;
        if (mine.readers === 0 && held.get(key) === mine) held.delete(key);
        return undefined;
      }
      let done = false;
      return () => {
        if (done) return;
        done = true;
        mine.readers--;
      };
    },
    async close() {
      clearInterval(timer);
      const keys = [...held.keys()];
      held.clear();
      await Promise.all(keys.map((k) => pins.unpin(pinKey(k), ownerId).catch(() => undefined)));
    },
  };
}

/** Claim lifetime: a delete that hangs (or a crashed evictor) blocks new reads of a key this long. */
const claimTtlMs = 60_000;

/** The evicting side of the fleet's pins, for `evictToSize`'s `claims`. */
export function evictionClaims(pins: Pins, ownerId: string, namespace: string): EvictionClaims {
  return {
    claim: (key) => pins.claim(pinKeyOf(namespace, key), ownerId, claimTtlMs),
    unclaim: (key) => pins.unclaim(pinKeyOf(namespace, key), ownerId),
  };
}
