/**
 * Regenerates the published results from one benchmark report:
 *
 *   npm run bench:results [-- --from bench/results/latest.json]
 *
 * copies the report to bench/RESULTS.json (committed, so RESULTS.md can be regenerated from the
 * repository alone: `npm run bench:results -- --from bench/RESULTS.json`), renders the charts with
 * vega-lite + vega (headless, SVG) into bench/charts/, and writes bench/RESULTS.md. The tables and
 * specs are built in results-tables.ts.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { format, resolveConfig } from 'prettier';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { REPO_ROOT } from './contestants.ts';
import type { BenchReport } from './pull/runner.ts';
import {
  barSpec,
  cpuRows,
  requestRows,
  resultsMarkdown,
  throughputRows,
  type Chart,
  type ChartRow,
} from './results-tables.ts';

const BENCH = join(REPO_ROOT, 'bench');

/** Reads a report, filling what reports written before these fields existed lack. */
function readReport(file: string): BenchReport {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<BenchReport> & {
    machine?: Partial<BenchReport['machine']>;
  };
  if (!Array.isArray(raw.suites)) throw new Error(`${file}: no "suites" array: not a pull-bench report`);
  if (typeof raw.quick !== 'boolean') throw new Error(`${file}: no "quick" flag: not a pull-bench report`);
  if (raw.params === undefined) throw new Error(`${file}: no "params": not a pull-bench report`);
  const m: Partial<BenchReport['machine']> = raw.machine ?? {};
  return {
    generatedAt: raw.generatedAt ?? 'unknown',
    finishedAt: raw.finishedAt ?? 'unknown',
    durationS: raw.durationS ?? NaN,
    argv: raw.argv ?? [],
    quick: raw.quick,
    scenarios: raw.scenarios ?? [],
    params: raw.params,
    machine: {
      cpus: m.cpus ?? NaN,
      cpuModel: m.cpuModel ?? 'unknown',
      memoryBytes: m.memoryBytes ?? NaN,
      kernel: m.kernel ?? 'unknown',
      node: m.node ?? 'unknown',
      loadAverageStart: m.loadAverageStart ?? [],
      loadAverageEnd: m.loadAverageEnd ?? [],
    },
    versions: raw.versions ?? {
      docxyCommit: 'unknown',
      docxySrcDirty: false,
      nginx: 'unknown',
      distribution: 'unknown',
    },
    units: raw.units ?? {},
    suites: raw.suites,
  };
}

async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

async function writeFormatted(file: string, text: string): Promise<void> {
  const options = (await resolveConfig(file)) ?? {};
  writeFileSync(file, await format(text, { ...options, filepath: file }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { from: { type: 'string', default: join(BENCH, 'results', 'latest.json') } },
    strict: true,
  });
  const from = resolve(values.from);
  const report = readReport(from);
  const mode = report.quick ? 'QUICK run (--quick sizes, not figures of record)' : 'full run';
  process.stdout.write(`${relative(REPO_ROOT, from)}: ${mode} of ${report.generatedAt}\n`);

  const json = join(BENCH, 'RESULTS.json');
  if (resolve(json) !== from) copyFileSync(from, json);
  // In the repository's own style, so `npm run format` leaves the generated files as they are.
  await writeFormatted(json, readFileSync(json, 'utf8'));

  const chartsDir = join(BENCH, 'charts');
  mkdirSync(chartsDir, { recursive: true });
  const suffix = report.quick ? ' (QUICK run)' : '';
  const wanted: { name: string; title: string; y: string; rows: ChartRow[] }[] = [
    {
      name: 'throughput',
      title: `Throughput per scenario and contestant${suffix}`,
      y: 'MB/s (10^6 B/s)',
      rows: throughputRows(report),
    },
    {
      name: 'cpu-per-gib',
      title: `Server CPU-s per GiB served${suffix}`,
      y: 'CPU-s / GiB',
      rows: cpuRows(report),
    },
    {
      name: 'manifests',
      title: `Warm manifest requests per second${suffix}`,
      y: 'req/s',
      rows: requestRows(report),
    },
  ];
  const charts: Chart[] = [];
  for (const w of wanted) {
    const file = join(chartsDir, `${w.name}.svg`);
    // A chart this run has no data for (e.g. --only B: no manifests) must not outlive an older run.
    if (w.rows.length === 0) {
      rmSync(file, { force: true });
      continue;
    }
    writeFileSync(file, `${await renderSvg(barSpec(w.rows, w.title, w.y))}\n`);
    charts.push({ file: `charts/${w.name}.svg`, title: w.title });
    process.stdout.write(`wrote ${relative(REPO_ROOT, file)}\n`);
  }
  const md = join(BENCH, 'RESULTS.md');
  await writeFormatted(md, resultsMarkdown(report, charts));
  process.stdout.write(`wrote ${relative(REPO_ROOT, md)} and ${relative(REPO_ROOT, json)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:results failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
