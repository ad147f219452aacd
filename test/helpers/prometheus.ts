/**
 * Scrapes a Docxy `/metrics` and parses it with a Prometheus text-format parser
 * (parse-prometheus-text-format), so tests read counters by name and labels, never by regex.
 */
import { createRequire } from 'node:module';

interface ParsedSample {
  readonly value?: string;
  readonly labels?: Record<string, string>;
  readonly count?: string;
  readonly sum?: string;
}
interface ParsedFamily {
  readonly name: string;
  readonly type: string;
  readonly metrics: readonly ParsedSample[];
}

// The package ships CommonJS without type declarations; this is the shape its README documents.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (
  text: string,
) => ParsedFamily[];

export interface Scrape {
  readonly families: readonly ParsedFamily[];
  /** Sum of a counter's or gauge's samples whose labels include `labels` (0 when none). */
  value(name: string, labels?: Record<string, string>): number;
  /** Whether the family exists. */
  has(name: string): boolean;
}

export function parseScrape(text: string): Scrape {
  const families = parse(text);
  return {
    families,
    has: (name) => families.some((f) => f.name === name),
    value(name, labels = {}) {
      const f = families.find((x) => x.name === name);
      if (f === undefined) return 0;
      let sum = 0;
      for (const m of f.metrics) {
        const l = m.labels ?? {};
        if (Object.entries(labels).every(([k, v]) => l[k] === v)) sum += Number(m.value ?? m.count ?? 0);
      }
      return sum;
    },
  };
}

export async function scrape(baseUrl: string): Promise<Scrape> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${await res.text()}`);
  return parseScrape(await res.text());
}
