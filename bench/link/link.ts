/**
 * The capped link of scenario E: the hub's registry behind a rate-limited network path, the way a
 * user behind a slow WAN link or a corporate uplink reaches Docker Hub.
 *
 * The bench makes it itself (it needs root): a network namespace and a veth pair whose names carry
 * the bench's PID, one TCP relay in the namespace on `10.213.x.2:P` (what contestants dial) and one
 * on the host end `10.213.x.1:Q`, forwarding to the hub on 127.0.0.1 (the hub binds loopback only,
 * which the namespace cannot reach). Every byte the hub sends crosses the veth twice; the
 * namespace end's egress (towards the contestants) is shaped with `tc tbf`, so the cap is one
 * AGGREGATE cap over all connections, like a real link. nginx `limit_rate` would be per
 * connection: a contestant that opens 50 upstream connections would get 50 times the bandwidth,
 * which no WAN link gives. An optional round-trip delay (`netem`) sits on the host end.
 *
 * Removed in `stop()` (relays by PID, then the namespace and the veth), and by a synchronous exit
 * hook if the bench dies without reaching its `finally` blocks.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from '../../test/helpers/process.ts';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { REPO_ROOT } from '../contestants.ts';
import { ready, spawnServer, type ServerProcess } from '../server-process.ts';

export interface CappedLink {
  /** `http://10.213.x.2:P`: the hub's registry as seen through the link. */
  readonly url: string;
  /** The host:port part of `url`. */
  readonly host: string;
  /** Extra round-trip time added on the link, in milliseconds (0: none). */
  readonly rttMs: number;
  /** Every command that built the link, and every `tc` command since, verbatim (for the report). */
  readonly commands: readonly string[];
  /** PIDs of the relay processes: their CPU is the link's, not a contestant's. */
  pids(): number[];
  /** Shapes the link to `mbit` Mbit/s (10^6 bit/s), replacing the previous shape. */
  setRate(mbit: number): void;
  /** Stops the relays and removes the namespace and the veth pair. */
  stop(): Promise<void>;
}

/** Whether this process can build the link (root, and `ip` + `tc` installed). */
export function linkUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, tc)';
  for (const bin of ['ip', 'tc']) {
    try {
      execFileSync(bin, ['-V'], { stdio: 'ignore', timeout: 5000 });
    } catch {
      return `${bin} missing (apt-get install -y iproute2)`;
    }
  }
  return undefined;
}

/**
 * tbf's bucket: about 4 ms of traffic at the rate (at least 64 KiB). Smaller buckets than one
 * timer tick's worth of bytes cannot reach the rate; measured here with curl through the relays:
 * 119.5 MB/s at 1 Gbit/s (payload after TCP/IP headers) and 23.9 MB/s at 200 Mbit/s.
 */
function tbfArgs(dev: string, mbit: number): string[] {
  const burst = Math.max(64 * 1024, Math.round((mbit * 1e6) / 8 / 250));
  return [
    'qdisc',
    'replace',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${mbit}mbit`,
    'burst',
    String(burst),
    'latency',
    '50ms',
  ];
}

function removeLeftover(ns: string, hostDev: string): void {
  for (const args of [
    ['netns', 'del', ns],
    ['link', 'del', hostDev],
  ]) {
    try {
      execFileSync('ip', args, { stdio: 'ignore', timeout: 10_000 });
    } catch {
      /* not there (deleting the namespace also removes the pair, a little later) */
    }
  }
}

export async function startCappedLink(opts: { hubPort: number; rttMs: number }): Promise<CappedLink> {
  const id = process.pid;
  const ns = `docxy-bench-${id}`;
  const hostDev = `dxb${id}h`;
  const nsDev = `dxb${id}n`;
  // One /30 per PID inside 10.213.0.0/16, so two benches on one machine do not collide.
  const n = id % 16384;
  const subnet = `10.213.${n >> 6}.`;
  const first = (n & 63) * 4;
  const hostAddr = `${subnet}${first + 1}`;
  const nsAddr = `${subnet}${first + 2}`;
  const commands: string[] = [];
  const run = (cmd: string, args: readonly string[]): void => {
    commands.push([cmd, ...args].join(' '));
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
  };
  const relays: ServerProcess[] = [];
  const dir = makeTmpDir('bench-link');
  let removed = false;
  const removeSync = (): void => {
    if (removed) return;
    removed = true;
    for (const r of relays) {
      try {
        process.kill(-r.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    removeLeftover(ns, hostDev);
    dir.remove();
  };
  process.on('exit', removeSync);
  const stop = async (): Promise<void> => {
    await Promise.allSettled(relays.map((r) => r.stop(2000)));
    removeSync();
    process.off('exit', removeSync);
  };
  try {
    // A bench killed with SIGKILL (no exit hook) leaves its link; a later one with the same PID
    // would fail on `netns add`. Names carry the PID, so only such a leftover is removed here.
    removeLeftover(ns, hostDev);
    run('ip', ['netns', 'add', ns]);
    run('ip', ['link', 'add', hostDev, 'type', 'veth', 'peer', 'name', nsDev]);
    run('ip', ['link', 'set', nsDev, 'netns', ns]);
    run('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostDev]);
    run('ip', ['link', 'set', hostDev, 'up']);
    run('ip', ['-n', ns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsDev]);
    run('ip', ['-n', ns, 'link', 'set', nsDev, 'up']);
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    if (opts.rttMs > 0) {
      run('tc', [
        'qdisc',
        'replace',
        'dev',
        hostDev,
        'root',
        'netem',
        'delay',
        `${opts.rttMs}ms`,
        'limit',
        '100000',
      ]);
    }
    const relay = join(REPO_ROOT, 'bench', 'link', 'relay.ts');
    const node = [process.execPath, '--import', 'tsx', relay];
    const hostPort = await freePort();
    const nsPort = 5000;
    const spawnRelay = (name: string, argv: readonly string[]): ServerProcess => {
      const [cmd = '', ...rest] = argv;
      commands.push(argv.join(' '));
      const p = spawnServer(cmd, rest, { cwd: REPO_ROOT, logFile: join(dir.path, `${name}.log`) });
      relays.push(p);
      return p;
    };
    spawnRelay('host-relay', [...node, `${hostAddr}:${hostPort}`, `127.0.0.1:${opts.hubPort}`]);
    const inner = spawnRelay('ns-relay', [
      'ip',
      'netns',
      'exec',
      ns,
      ...node,
      `${nsAddr}:${nsPort}`,
      `${hostAddr}:${hostPort}`,
    ]);
    const url = `http://${nsAddr}:${nsPort}`;
    // Through both relays to the hub: its 401 on /v2/ means every hop is up.
    await ready(inner, 'the link relays', `${url}/v2/`, (s) => s === 401 || s === 200);
    return {
      url,
      host: `${nsAddr}:${nsPort}`,
      rttMs: opts.rttMs,
      commands,
      pids: () => relays.map((r) => r.pid),
      setRate(mbit) {
        run('tc', ['-n', ns, ...tbfArgs(nsDev, mbit)]);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
