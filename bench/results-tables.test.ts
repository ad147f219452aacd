// The pure part of `npm run bench:results` on a small hand-made report: which runs become which
// chart rows, and what the Markdown says (mode, ratios, targets). `npm run test:bench`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContestantName } from './contestants.ts';
import type { BenchReport, RunResult } from './pull/runner.ts';
import { clientBound } from './pull/report-e.ts';
import { barSpec, cpuRows, mdTable, resultsMarkdown, throughputRows } from './results-tables.ts';

const MiB = 1024 * 1024;

function run(
  scenario: RunResult['scenario'],
  contestant: ContestantName,
  phase: string,
  mbps: number,
  extra: Partial<RunResult> = {},
): RunResult {
  const bytes = 1024 * MiB;
  return {
    scenario,
    contestant,
    phase,
    ok: true,
    wallMs: (bytes / 1e6 / mbps) * 1000,
    bytes,
    mbps,
    upstream: {
      requests: 2,
      refused: 1,
      blobGets: 1,
      blobHeads: 0,
      manifestGets: 0,
      manifestHeads: 0,
      tokens: 1,
      cdnGets: 0,
      bytes,
    },
    cpu: { server: contestant === 'direct' ? undefined : 2, hub: 1, client: 1, other: 0 },
    busyBefore: 0,
    disturbed: false,
    ...extra,
  };
}

function report(quick: boolean): BenchReport {
  const link = { linkMbit: 200 };
  return {
    generatedAt: '2026-12-07T10:00:00.000Z',
    finishedAt: '2026-12-07T10:30:00.000Z',
    durationS: 1800,
    argv: quick ? ['--quick'] : [],
    quick,
    scenarios: ['B', 'E'],
    params: {
      quick,
      prefault: true,
      bBlobSize: 1024 * MiB,
      cClients: 50,
      cBlobSize: 64 * MiB,
      dSeconds: 5,
      dConnections: 32,
      dManifests: 200,
      aLayer: 0,
      eRatesMbit: [200],
      eRttMs: 0,
      eBlobSize: 1024 * MiB,
      eClients: 50,
      eClientsBlobSize: 256 * MiB,
    },
    machine: {
      cpus: 2,
      cpuModel: 'test CPU',
      memoryBytes: 8 * 1024 * MiB,
      kernel: 'Linux 6.1',
      node: 'v22.0.0',
      loadAverageStart: [0.1, 0.2, 0.3],
      loadAverageEnd: [1, 1, 1],
    },
    versions: { docxyCommit: 'abc', docxySrcDirty: false, nginx: 'nginx/1.22.1', distribution: '2.8.2' },
    units: {},
    suites: [
      {
        hub: 'plain',
        busyBefore: 0,
        loadAverageBefore: [0, 0, 0],
        contestants: [
          { name: 'direct', url: 'http://x', summary: 'pulls itself', config: undefined },
          { name: 'docxy', url: 'http://y', summary: 'docxy serve', config: 'listen: x' },
        ],
        skipped: [],
        runs: [
          run('B', 'direct', 'cold', 1000),
          run('B', 'docxy', 'cold', 500),
          run('B', 'docxy', 'warm', 2000),
          run('B', 'nginx-static', 'warm', 2500),
          run('E', 'direct', 'cold@200M', 24, link),
          run('E', 'docxy', 'cold@200M', 23.5, link),
          run('E', 'direct', 'one@200M', 24, { ...link, wallMs: 10_000 }),
          run('E', 'docxy', 'clients@200M', 500, { ...link, wallMs: 10_500 }),
        ],
        docxyMemory: undefined,
        memoryPeaks: { docxy: 100 * MiB },
        targets: [{ target: 'E@200M: Docxy cold', measured: '0.979x', pass: true }],
        link: {
          ratesMbit: [200],
          rttMs: 0,
          commands: ['ip netns add x'],
          contestants: [],
          memoryPeaks: [{ mbit: 200, name: 'docxy', peak: 90 * MiB }],
        },
      },
    ],
  };
}

test('mdTable right-aligns figure columns, left-aligns text, escapes pipes', () => {
  const md = mdTable(
    ['name', 'MB/s', 'note'],
    [
      ['a|b', '1.5', 'x'],
      ['c', '0.97x', '-'],
    ],
  );
  assert.equal(md.split('\n')[1], '| --- | ---: | --- |');
  assert.ok(md.includes('a\\|b'));
});

test('chart rows: one panel per scenario phase; direct has no server CPU; the single direct E pull is not charted', () => {
  const r = report(false);
  const thr = throughputRows(r);
  assert.deepEqual(
    [...new Set(thr.map((x) => x.panel))],
    ['B cold', 'B warm', 'E cold @200M', 'E 50 clients @200M'],
  );
  assert.equal(thr.find((x) => x.panel === 'B warm' && x.contestant === 'nginx-static')?.value, 2500);
  // The load generator saturated a core for the whole run: flagged.
  const busyClient = run('E', 'docxy', 'clients@200M', 500, { wallMs: 10_000 });
  assert.equal(clientBound(busyClient), false);
  assert.equal(clientBound({ ...busyClient, cpu: { ...busyClient.cpu, client: 9 } }), true);
  const cpu = cpuRows(r);
  assert.ok(cpu.every((x) => x.contestant !== 'direct'));
  // 2 CPU-s for 1 GiB.
  assert.equal(cpu.find((x) => x.panel === 'B cold')?.value, 2);
  const spec = barSpec(thr, 'Throughput', 'MB/s') as {
    data: { values: unknown[] };
    facet: { sort: string[] };
  };
  assert.equal(spec.data.values.length, thr.length);
  assert.deepEqual(spec.facet.sort, ['B cold', 'B warm', 'E cold @200M', 'E 50 clients @200M']);
});

test('RESULTS.md names the mode and gives the link ratios and the warm reference ratio', () => {
  const quick = resultsMarkdown(report(true), [{ file: 'charts/throughput.svg', title: 'Throughput' }]);
  assert.match(quick, /\*\*QUICK RUN\*\*/);
  assert.match(quick, /!\[Throughput\]\(charts\/throughput\.svg\)/);
  const full = resultsMarkdown(report(false), []);
  assert.match(full, /\*\*Full run\*\*/);
  assert.doesNotMatch(full, /QUICK/);
  // Docxy warm 2000 vs nginx static 2500; E cold 23.5 vs 24; 50 clients 10.5 s vs one direct 10 s.
  assert.match(full, /\| docxy warm \| [^\n]*\| 0\.80x \|/);
  assert.match(full, /\| docxy \| 23\.5 \| 0\.979 \|/);
  assert.match(full, /\| 10\.50 \| 1\.050 \| 1 \|/);
  assert.match(full, /\| E@200M: Docxy cold \| 0\.979x \| met \|/);
  assert.match(full, /docxy \(E @200M\) \| 90 \|/);
});
