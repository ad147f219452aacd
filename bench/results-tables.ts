/**
 * The pure part of `npm run bench:results`: from one benchmark report (bench/results/latest.json)
 * to the Markdown of bench/RESULTS.md and the vega-lite specs of its charts. No I/O here, so the
 * tables and specs can be tested on a small hand-made report (results-tables.test.ts).
 */
import type { TopLevelSpec } from 'vega-lite';
import { ALL_CONTESTANTS, type ContestantName } from './contestants.ts';
import type { BenchReport, RunResult, SuiteResult } from './pull/runner.ts';
import { clientBound, clientsRatio, coldRatio, linkRun } from './pull/report-e.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const NUMERIC = /^(-|[-+]?\d[\d.]*x?|n\/a)$/;

/**
 * A GitHub Markdown table; `|` in cells is escaped. Columns whose cells are all figures (`12.3`,
 * `0.97x`, `-`) are right-aligned, the others left-aligned.
 */
export function mdTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (c: string): string => c.replaceAll('|', '\\|').replaceAll('\n', ' ');
  const line = (cells: readonly string[]): string => `| ${cells.map(cell).join(' | ')} |`;
  const align = headers.map((_, i) =>
    i > 0 && rows.length > 0 && rows.every((r) => NUMERIC.test(r[i] ?? '-')) ? '---:' : '---',
  );
  return [line(headers), line(align), ...rows.map(line)].join('\n');
}

export function num(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

function times(a: number | undefined, b: number | undefined, digits = 2): string {
  return a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(digits)}x`;
}

/** `, load: wrk -t2 -c64` when the D runs recorded what made their load. */
function dLoadOf(suite: SuiteResult): string {
  const load = suite.runs.find((r) => r.scenario === 'D' && r.requests?.load !== undefined)?.requests?.load;
  return load === undefined ? '' : ` (load: ${load})`;
}

/** CPU seconds of the contestant's process tree per GiB its clients received (undefined for direct). */
export function cpuPerGib(r: RunResult): number | undefined {
  return r.cpu.server === undefined || r.bytes === 0 ? undefined : r.cpu.server / (r.bytes / GiB);
}

/** The chart panel a transfer run belongs to, e.g. `B warm`, `E cold @200M`; undefined: not charted. */
export function panelOf(r: RunResult, report: BenchReport, suite: SuiteResult): string | undefined {
  const prefix = report.suites.length > 1 ? `${suite.hub}: ` : '';
  const p = report.params;
  switch (r.scenario) {
    case 'A':
      return `${prefix}A cold image`;
    case 'B':
      return `${prefix}B ${r.phase}`;
    case 'C':
      return `${prefix}C ${p.cClients} clients`;
    case 'D':
      return undefined;
    case 'E': {
      const [kind] = r.phase.split('@');
      // Direct's single pull is the clients' baseline, not a throughput of N clients.
      if (kind === 'one') return undefined;
      return `${prefix}E ${kind === 'cold' ? 'cold' : `${p.eClients} clients`} @${r.linkMbit ?? '?'}M`;
    }
  }
}

export interface ChartRow {
  panel: string;
  contestant: ContestantName;
  value: number;
}

function rowsOf(report: BenchReport, value: (r: RunResult) => number | undefined): ChartRow[] {
  const out: ChartRow[] = [];
  for (const suite of report.suites) {
    for (const r of suite.runs) {
      const panel = panelOf(r, report, suite);
      const v = r.ok ? value(r) : undefined;
      if (panel !== undefined && v !== undefined && Number.isFinite(v))
        out.push({ panel, contestant: r.contestant, value: v });
    }
  }
  return out;
}

/** MB/s of every transfer run, by panel and contestant. */
export function throughputRows(report: BenchReport): ChartRow[] {
  return rowsOf(report, (r) => r.mbps);
}

/** CPU-s per GiB of every transfer run with a server process (direct has none). */
export function cpuRows(report: BenchReport): ChartRow[] {
  return rowsOf(report, cpuPerGib);
}

/** Scenario D's requests per second, by contestant. */
export function requestRows(report: BenchReport): ChartRow[] {
  const out: ChartRow[] = [];
  for (const suite of report.suites) {
    for (const r of suite.runs) {
      if (r.scenario !== 'D' || !r.ok || r.requests === undefined) continue;
      const panel = report.suites.length > 1 ? `${suite.hub}: D manifests` : 'D manifests';
      out.push({ panel, contestant: r.contestant, value: r.requests.rps });
    }
  }
  return out;
}

/** Bars per contestant in one small panel per scenario phase, each with its own y scale. */
export function barSpec(rows: readonly ChartRow[], title: string, yTitle: string): TopLevelSpec {
  const panels = [...new Set(rows.map((r) => r.panel))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: rows.map((r) => ({ ...r })) },
    facet: { field: 'panel', type: 'nominal', sort: panels, title: null },
    columns: 4,
    spec: {
      width: 150,
      height: 140,
      mark: { type: 'bar', tooltip: true },
      encoding: {
        x: {
          field: 'contestant',
          type: 'nominal',
          sort: [...ALL_CONTESTANTS],
          axis: { title: null, labelAngle: -40 },
        },
        y: { field: 'value', type: 'quantitative', title: yTitle },
        // One colour per contestant in every chart.
        color: {
          field: 'contestant',
          type: 'nominal',
          scale: { domain: [...ALL_CONTESTANTS] },
          legend: null,
        },
      },
    },
    // Loopback and a 200 Mbit/s link differ 100-fold: each panel gets its own scales.
    resolve: { scale: { x: 'independent', y: 'independent' } },
    config: { font: 'sans-serif' },
  };
}

function transferRows(suite: SuiteResult, scenario: 'A' | 'B' | 'C'): string[][] {
  const direct = (phase: string): RunResult | undefined =>
    suite.runs.find((r) => r.scenario === scenario && r.contestant === 'direct' && r.phase === phase && r.ok);
  const reference = suite.runs.find((r) => r.scenario === 'B' && r.contestant === 'nginx-static' && r.ok);
  return suite.runs
    .filter((r) => r.scenario === scenario)
    .map((r) => {
      const label = `${r.contestant}${r.phase === '' ? '' : ` ${r.phase}`}${r.disturbed ? ' *' : ''}`;
      if (!r.ok) return [label, 'FAILED', r.error ?? ''];
      return [
        label,
        num(r.wallMs / 1000, 2),
        num(r.mbps, 0),
        times(r.mbps, direct(r.phase)?.mbps),
        ...(scenario === 'B' ? [r.phase === 'warm' ? times(r.mbps, reference?.mbps) : '-'] : []),
        ...(scenario === 'C'
          ? [num((r.clients?.medianMs ?? NaN) / 1000, 2), num((r.clients?.maxMs ?? NaN) / 1000, 2)]
          : []),
        String(r.upstream.blobGets),
        num(r.upstream.bytes / 1e6, 0),
        num(r.cpu.server, 2),
        num(cpuPerGib(r), 2),
        r.rss === undefined ? '-' : num(r.rss.peak / MiB, 0),
      ];
    });
}

const TRANSFER_TAIL = ['up blob GETs', 'up MB', 'srv CPU s', 'srv CPU s/GiB', 'srv RSS peak MiB'];

function scenarioSections(report: BenchReport, suite: SuiteResult): string[] {
  const p = report.params;
  const has = (sc: string): boolean => suite.runs.some((r) => r.scenario === sc);
  const out: string[] = [];
  const section = (title: string, body: string): void => {
    out.push(`### ${title}\n\n${body}\n`);
  };
  if (has('A'))
    section(
      `A. Cold pull of ${String(p.aImage)}, one client`,
      mdTable(['contestant', 'wall s', 'MB/s', 'vs direct', ...TRANSFER_TAIL], transferRows(suite, 'A')),
    );
  if (has('B'))
    section(
      `B. ${num(p.bBlobSize / MiB, 0)} MiB blob, cold then warm, one client`,
      mdTable(
        ['contestant', 'wall s', 'MB/s', 'vs direct', 'vs nginx-static', ...TRANSFER_TAIL],
        transferRows(suite, 'B'),
      ),
    );
  if (has('C'))
    section(
      `C. ${p.cClients} concurrent cold clients of a ${num(p.cBlobSize / MiB, 0)} MiB blob`,
      mdTable(
        [
          'contestant',
          'wall s',
          'MB/s (all clients)',
          'vs direct',
          'client p50 s',
          'client max s',
          ...TRANSFER_TAIL,
        ],
        transferRows(suite, 'C'),
      ),
    );
  if (has('D')) {
    // Results of runs before D cycled over several manifests have no dManifests.
    const dManifests = (p as Partial<BenchReport['params']>).dManifests;
    const rows = suite.runs
      .filter((r) => r.scenario === 'D')
      .map((r) =>
        !r.ok || r.requests === undefined
          ? [r.contestant, 'FAILED', r.error ?? '']
          : [
              `${r.contestant}${r.disturbed ? ' *' : ''}`,
              num(r.requests.rps, 0),
              num(r.requests.p50Ms, 2),
              num(r.requests.p99Ms, 2),
              String(r.requests.errors),
              String(r.upstream.manifestGets),
              num(r.cpu.server === undefined ? undefined : (r.cpu.server * 1e6) / r.requests.count, 1),
            ],
      );
    section(
      `D. Warm tag-manifest GETs${dManifests === undefined ? '' : ` over ${dManifests} different manifests`}, ${p.dSeconds} s on ${p.dConnections} connections${dLoadOf(suite)}`,
      mdTable(
        ['contestant', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'up mfst GETs', 'srv CPU-ms per 1k req'],
        rows,
      ),
    );
  }
  if (suite.linkSkipped !== undefined) section('E. Capped link', `Skipped: ${suite.linkSkipped}.`);
  for (const mbit of suite.link?.ratesMbit ?? []) {
    const names = ALL_CONTESTANTS.filter((n) =>
      suite.runs.some((r) => r.scenario === 'E' && r.contestant === n && r.linkMbit === mbit),
    );
    const rows = names.map((n) => {
      const cold = linkRun(suite.runs, n, 'cold', mbit);
      const many = linkRun(suite.runs, n, n === 'direct' ? 'one' : 'clients', mbit);
      const failed = suite.runs.find(
        (r) => r.scenario === 'E' && r.contestant === n && r.linkMbit === mbit && !r.ok,
      );
      return [
        `${n}${failed === undefined ? '' : ` (FAILED ${failed.phase})`}`,
        num(cold?.mbps, 1),
        num(coldRatio(suite.runs, n, mbit), 3),
        num(cold === undefined ? undefined : cold.upstream.bytes / 1e6, 0),
        num(cold === undefined ? undefined : cpuPerGib(cold), 2),
        num((many?.wallMs ?? NaN) / 1000, 2),
        n === 'direct' ? '1.000' : num(clientsRatio(suite.runs, n, mbit), 3),
        many === undefined ? '-' : String(many.upstream.blobGets),
        num(many === undefined ? undefined : many.upstream.bytes / 1e6, 0),
        num(many?.cpu.client, 1),
        many !== undefined && n !== 'direct' && clientBound(many) ? 'yes' : '-',
      ];
    });
    section(
      `E. Hub behind a ${mbit} Mbit/s link${(suite.link?.rttMs ?? 0) > 0 ? ` (+${suite.link?.rttMs} ms RTT)` : ''}`,
      `Cold ${num(p.eBlobSize / MiB, 0)} MiB through each contestant vs the direct pull over the same link; ` +
        `${p.eClients} concurrent cold clients of ${num(p.eClientsBlobSize / MiB, 0)} MiB vs ONE direct pull ` +
        `(direct's row: that one pull).\n\n` +
        mdTable(
          [
            'contestant',
            'cold MB/s',
            'cold x direct',
            'cold up MB',
            'cold srv CPU s/GiB',
            `${p.eClients} clients wall s`,
            'x one direct pull',
            'up blob GETs',
            'up MB',
            'bench client CPU s',
            'client-bound',
          ],
          rows,
        ) +
        '\n\n"client-bound": the benchmark\'s own clients (one process, receiving and hashing every byte ' +
        'of every client) used at least 80 % of a core for the whole run, so that wall time measures the ' +
        'load generator on this machine more than the contestant or the link.',
    );
  }
  const peaks = Object.entries(suite.memoryPeaks).map(([n, v]) => [n, num(v / MiB, 0)]);
  for (const m of suite.link?.memoryPeaks ?? [])
    peaks.push([`${m.name} (E @${m.mbit}M)`, num(m.peak / MiB, 0)]);
  if (peaks.length > 0)
    section(
      'M. Peak RSS of each server process tree (100 ms samples)',
      mdTable(['contestant', 'peak RSS MiB'], peaks),
    );
  return out;
}

export interface Chart {
  /** Path relative to bench/, e.g. `charts/throughput.svg`. */
  file: string;
  title: string;
}

export function resultsMarkdown(report: BenchReport, charts: readonly Chart[]): string {
  const m = report.machine;
  const mode = report.quick
    ? '**QUICK RUN** (`--quick`: small sizes, for checking the bench only; these are not the figures of record)'
    : '**Full run**';
  const lines = [
    '# Pull benchmark results',
    '',
    `${mode}, ${report.generatedAt} to ${report.finishedAt} (${num(report.durationS, 0)} s).`,
    '',
    "Generated by `npm run bench:results` from `bench/RESULTS.json` (a copy of the run's " +
      '`bench/results/latest.json`); do not edit by hand. How the bench works: [README.md](README.md).',
    '',
    mdTable(
      ['run', ''],
      [
        ['command', `\`node --import tsx bench/pull-bench.ts ${report.argv.join(' ')}\``.replace('  ', ' ')],
        ['scenarios', report.scenarios.join(', ')],
        ['machine', `${m.cpus} cores (${m.cpuModel}), ${num(m.memoryBytes / GiB, 1)} GiB memory`],
        ['kernel', m.kernel],
        ['Node', m.node],
        [
          'load average at start / end',
          `${m.loadAverageStart.map((l) => num(l, 2)).join(' ')} / ${m.loadAverageEnd.map((l) => num(l, 2)).join(' ')}`,
        ],
        ['Docxy', `${report.versions.docxyCommit}${report.versions.docxySrcDirty ? ' (src/ modified)' : ''}`],
        ['nginx', report.versions.nginx],
        ['Distribution', report.versions.distribution],
      ],
    ),
    '',
    '## Targets',
    '',
    mdTable(
      ['suite', 'target', 'measured', 'result'],
      report.suites.flatMap((s) =>
        s.targets.map((t) => [
          s.hub,
          t.target,
          t.measured,
          t.pass === undefined ? 'n/a' : t.pass ? 'met' : 'NOT met',
        ]),
      ),
    ),
    '',
    '## Charts',
    '',
    ...charts.map((c) => `![${c.title}](${c.file})\n`),
  ];
  for (const suite of report.suites) {
    lines.push(`## Suite: hub ${suite.hub === 'cdn' ? 'with CDN' : 'without CDN'}`, '');
    lines.push(
      mdTable(
        ['contestant', 'what runs'],
        suite.contestants.map((c) => [c.name, c.summary]),
      ),
      '',
      'Their configuration files are in `RESULTS.json` (`suites[].contestants[].config`, and ' +
        '`suites[].link.contestants[]` for scenario E). `*` marks a run during which other work used ' +
        'more than a quarter of the wall time.',
      '',
    );
    lines.push(...scenarioSections(report, suite));
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
