/**
 * In-process single-flight: one piece of work per key at a time, joined by every concurrent caller.
 * (A Redis implementation for several Docxy processes comes with the scale-out issue.)
 */
export interface Flights<T> {
  /** The running work for `key`, if any. */
  get(key: string): T | undefined;
  /** Joins the running work for `key`, or starts it with `start`. */
  join(key: string, start: () => T): { value: T; joined: boolean };
  /** Ends the work for `key` (only if `value` is still the one registered). */
  end(key: string, value: T): void;
  /** Keys with work running. */
  keys(): IterableIterator<string>;
}

export function createFlights<T>(): Flights<T> {
  const running = new Map<string, T>();
  return {
    get: (key) => running.get(key),
    join(key, start) {
      const existing = running.get(key);
      if (existing !== undefined) return { value: existing, joined: true };
      const value = start();
      running.set(key, value);
      return { value, joined: false };
    },
    end(key, value) {
      if (running.get(key) === value) running.delete(key);
    },
    keys: () => running.keys(),
  };
}
