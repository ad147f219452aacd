/**
 * Scenario E's part of the printed report and of the targets: per link rate, the cold blob
 * through each contestant against the direct pull over the same link, and N concurrent cold
 * clients against ONE direct pull of their blob.
 */
import type { ContestantName } from '../contestants.ts';
import { fmt, MB, mib, table } from '../measure.ts';
import type { BenchParams, RunResult, SuiteResult, TargetResult } from './runner.ts';

/** Issue 14, target 2. */
export const LINK_COLD_MIN = 0.97;
export const LINK_CLIENTS_MAX = 1.1;

export function linkRun(
  runs: readonly RunResult[],
  name: ContestantName,
  kind: 'cold' | 'one' | 'clients',
  mbit: number,
): RunResult | undefined {
  return runs.find(
    (r) => r.scenario === 'E' && r.contestant === name && r.phase === `${kind}@${mbit}M` && r.ok,
  );
}

function x(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

/** Cold MB/s over direct's cold MB/s on the same link. */
export function coldRatio(
  runs: readonly RunResult[],
  name: ContestantName,
  mbit: number,
): number | undefined {
  return x(linkRun(runs, name, 'cold', mbit)?.mbps, linkRun(runs, 'direct', 'cold', mbit)?.mbps);
}

/** The N clients' wall time over ONE direct pull's wall time of the same blob on the same link. */
export function clientsRatio(
  runs: readonly RunResult[],
  name: ContestantName,
  mbit: number,
): number | undefined {
  return x(linkRun(runs, name, 'clients', mbit)?.wallMs, linkRun(runs, 'direct', 'one', mbit)?.wallMs);
}

function cells(r: RunResult | undefined, vs: number | undefined): string[] {
  if (r === undefined) return ['-', '-', '-', '-', '-', '-', '-', '-'];
  return [
    fmt(r.wallMs / 1000, 2),
    fmt(r.mbps, 1),
    vs === undefined ? '-' : `${vs.toFixed(2)}x`,
    String(r.upstream.blobGets),
    fmt(r.upstream.bytes / MB, 0),
    fmt(r.cpu.server, 1),
    fmt(r.cpu.link, 1),
    fmt(r.cpu.client, 1),
  ];
}

export function printLinkSuite(suite: SuiteResult, params: BenchParams, say: (s: string) => void): void {
  if (suite.linkSkipped !== undefined) {
    say(`E. capped link: skipped (${suite.linkSkipped})`);
    return;
  }
  const link = suite.link;
  if (link === undefined) return;
  const names = [...new Set(link.contestants.map((c) => c.name))];
  for (const mbit of link.ratesMbit) {
    say(
      `E. hub behind a ${mbit} Mbit/s link${link.rttMs > 0 ? ` (+${link.rttMs} ms RTT)` : ''} ` +
        `(aggregate tc tbf cap in a network namespace): cold ${mib(params.eBlobSize)}, then ` +
        `${params.eClients} cold clients of ${mib(params.eClientsBlobSize)} vs ONE direct pull of it`,
    );
    const head = ['wall s', 'MB/s', 'vs', 'up blob GET', 'up MB', 'srv CPU s', 'link CPU s', 'cli CPU s'];
    const rows = names.map((n) => {
      const failed = suite.runs.find(
        (r) => r.scenario === 'E' && r.contestant === n && r.linkMbit === mbit && !r.ok,
      );
      const many =
        n === 'direct' ? linkRun(suite.runs, n, 'one', mbit) : linkRun(suite.runs, n, 'clients', mbit);
      return [
        `${n}${failed === undefined ? '' : ` (FAILED ${failed.phase}: ${failed.error?.slice(0, 40) ?? ''})`}`,
        ...cells(linkRun(suite.runs, n, 'cold', mbit), coldRatio(suite.runs, n, mbit)),
        ...cells(many, n === 'direct' ? 1 : clientsRatio(suite.runs, n, mbit)),
      ];
    });
    say(
      table(
        ['contestant', ...head.map((h) => `cold ${h}`), ...head.map((h) => `${params.eClients}x ${h}`)],
        rows,
      ),
    );
    say(
      `   "cold vs" = MB/s / direct's MB/s; "${params.eClients}x vs" = wall / ONE direct pull's wall ` +
        `(direct's row: that one pull)`,
    );
    const peaks = link.memoryPeaks.filter((m) => m.mbit === mbit).map((m) => `${m.name} ${mib(m.peak)}`);
    for (const n of names) {
      const r = linkRun(suite.runs, n, 'clients', mbit);
      if (r !== undefined && clientBound(r))
        say(
          `   ${n}: the benchmark's own clients used ${fmt(r.cpu.client, 1)} CPU s in ${fmt(r.wallMs / 1000, 1)} s ` +
            '(receiving and hashing every byte of every client): the load generator, not the link, set this wall time',
        );
    }
    if (peaks.length > 0)
      say(`   peak RSS of each server's process tree behind the link: ${peaks.join(', ')}`);
    say('');
  }
}

/**
 * Whether the N clients' run was bound by this process (the load generator): it used at least 80 %
 * of a core for the whole run. On 2 cores, N clients of a large blob each receive and hash every
 * byte here, N times what one direct pull costs, so the wall time then measures the client.
 */
export function clientBound(r: RunResult): boolean {
  return r.cpu.client >= 0.8 * (r.wallMs / 1000);
}

function times(r: number | undefined): string {
  return r === undefined ? '-' : `${r.toFixed(3)}x`;
}

export function evaluateLinkTargets(suite: SuiteResult, params: BenchParams): TargetResult[] {
  const link = suite.link;
  if (link === undefined) return [];
  const out: TargetResult[] = [];
  for (const mbit of link.ratesMbit) {
    const cold = coldRatio(suite.runs, 'docxy', mbit);
    out.push({
      target: `E@${mbit}M: Docxy cold ${mib(params.eBlobSize)} >= ${LINK_COLD_MIN}x direct over the link`,
      measured: `${fmt(linkRun(suite.runs, 'docxy', 'cold', mbit)?.mbps, 1)} vs ${fmt(linkRun(suite.runs, 'direct', 'cold', mbit)?.mbps, 1)} MB/s = ${times(cold)}`,
      pass: cold === undefined ? undefined : cold >= LINK_COLD_MIN,
    });
    const many = linkRun(suite.runs, 'docxy', 'clients', mbit);
    const ratio = clientsRatio(suite.runs, 'docxy', mbit);
    const bound = many !== undefined && clientBound(many) ? ' (client-bound: see the table)' : '';
    out.push({
      target: `E@${mbit}M: Docxy ${params.eClients} cold clients of ${mib(params.eClientsBlobSize)} <= ${LINK_CLIENTS_MAX}x ONE direct pull`,
      measured:
        `${fmt((many?.wallMs ?? NaN) / 1000, 2)} s vs ${fmt((linkRun(suite.runs, 'direct', 'one', mbit)?.wallMs ?? NaN) / 1000, 2)} s = ` +
        `${times(ratio)}, ${many?.upstream.blobGets ?? '-'} upstream blob GETs${bound}`,
      pass: ratio === undefined ? undefined : ratio <= LINK_CLIENTS_MAX,
    });
  }
  return out;
}
