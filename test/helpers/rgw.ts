/**
 * A real S3-compatible server for tests: Ceph's RADOS Gateway on a single-node cluster (one
 * monitor, one memstore OSD, no ceph-mgr, no systemd), everything under one temporary folder, on
 * free ports of 127.0.0.1, with one user of known keys. Start it once per test FILE (about 15 s);
 * every daemon is stopped by its PID in `stop()`, and by process.ts's exit hook if a test crashes.
 */
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort, startProcess, waitFor, waitForPort, type Managed } from './process.ts';
import { makeTmpDir } from './tmp.ts';

export interface Rgw {
  /** `http://127.0.0.1:PORT` of the gateway. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
  /** The gateway daemon (SIGSTOP/SIGCONT or restart it to simulate an outage). */
  readonly radosgw: () => Managed;
  /** A path-style client with the test user's keys. */
  client(): S3Client;
  /** Creates a fresh, empty bucket and returns its name. */
  createBucket(prefix?: string): Promise<string>;
  /** Kills the gateway (not the cluster) by PID; `startGateway()` brings it back on the same port. */
  killGateway(): Promise<void>;
  startGateway(): Promise<void>;
  /** Milliseconds the whole cluster took to start. */
  readonly startMs: number;
  stop(): Promise<void>;
}

const tools = ['ceph-mon', 'ceph-osd', 'radosgw', 'ceph', 'monmaptool', 'radosgw-admin'];

/** Whether the Ceph daemons are installed (scripts/test.sh installs them). */
export function rgwAvailable(): boolean {
  return tools.every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
}

function run(cmd: string, args: readonly string[], timeoutMs = 60_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

export async function startRgw(): Promise<Rgw> {
  const t0 = Date.now();
  const dir = makeTmpDir('rgw');
  const d = dir.path;
  const daemons: Managed[] = [];
  let gateway: Managed | undefined;
  const stopAll = async (): Promise<void> => {
    // Gateway first, then OSD, then monitor: each still has the one below it while it exits.
    const all = [...(gateway === undefined ? [] : [gateway]), ...[...daemons].reverse()];
    for (const m of all) await m.stop(5_000).catch(() => undefined);
    if (process.env.DOCXY_KEEP_RGW === undefined) dir.remove();
  };
  try {
    const monPort = await freePort();
    const rgwPort = await freePort();
    const fsid = randomUUID();
    for (const sub of ['run', 'log', 'mon', 'osd']) mkdirSync(join(d, sub));
    const conf = join(d, 'ceph.conf');
    writeFileSync(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        `mon host = v1:127.0.0.1:${monPort}`,
        'public addr = 127.0.0.1',
        'ms bind msgr2 = false',
        'auth cluster required = none',
        'auth service required = none',
        'auth client required = none',
        'auth allow insecure global id reclaim = true',
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'osd pool default pg num = 8',
        'osd pool default pgp num = 8',
        'mon allow pool size one = true',
        'mon warn on pool no redundancy = false',
        'osd crush chooseleaf type = 0',
        'osd class update on start = false',
        'osd crush update on start = false',
        `run dir = ${d}/run`,
        `log file = ${d}/log/$name.log`,
        `admin socket = ${d}/run/$name.asok`,
        `pid file = ${d}/run/$name.pid`,
        `mon data = ${d}/mon/$name`,
        `osd data = ${d}/osd/$name`,
        'osd objectstore = memstore',
        'memstore device bytes = 1073741824',
        'osd max object name len = 460',
        'osd max object namespace len = 64',
        '',
        '[client.rgw]',
        `rgw frontends = beast endpoint=127.0.0.1:${rgwPort}`,
        `rgw data = ${d}/rgw`,
        'rgw dns name = 127.0.0.1',
        '',
      ].join('\n'),
    );
    const c = ['-c', conf];
    const monmap = join(d, 'monmap');
    run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v1:127.0.0.1:${monPort}]`, monmap]);
    run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', monmap]);
    const mon = startProcess('ceph-mon', 'ceph-mon', [...c, '-f', '-i', 'a'], {
      logFile: join(d, 'log', 'mon.out'),
    });
    daemons.push(mon);
    await waitForPort(monPort, '127.0.0.1', 20_000, mon.exited);

    const osdUuid = randomUUID();
    const id = run('ceph', [...c, 'osd', 'create', osdUuid]).trim();
    mkdirSync(join(d, 'osd', `osd.${id}`));
    run('ceph-osd', [...c, '-i', id, '--mkfs', '--osd-uuid', osdUuid]);
    run('ceph', [...c, 'osd', 'crush', 'add', `osd.${id}`, '1', 'root=default', 'host=local']);
    const osd = startProcess('ceph-osd', 'ceph-osd', [...c, '-f', '-i', id], {
      logFile: join(d, 'log', 'osd.out'),
    });
    daemons.push(osd);
    await waitFor(
      'the OSD to be up',
      () => / 1 up/.test(spawnSync('ceph', [...c, 'osd', 'stat'], { encoding: 'utf8' }).stdout),
      30_000,
    );

    const accessKeyId = 'DOCXYTESTKEY';
    const secretAccessKey = 'docxy-test-secret-key';
    const startGateway = async (): Promise<void> => {
      gateway = startProcess('radosgw', 'radosgw', [...c, '-f', '-n', 'client.rgw'], {
        logFile: join(d, 'log', 'rgw.out'),
      });
      await waitForPort(rgwPort, '127.0.0.1', 60_000, gateway.exited);
    };
    await startGateway();
    run('radosgw-admin', [
      ...c,
      'user',
      'create',
      '--uid=docxy',
      '--display-name=docxy',
      `--access-key=${accessKeyId}`,
      `--secret=${secretAccessKey}`,
    ]);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const region = 'us-east-1';
    const client = (): S3Client =>
      new S3Client({
        endpoint,
        region,
        forcePathStyle: true,
        credentials: { accessKeyId, secretAccessKey },
      });
    let buckets = 0;
    const startMs = Date.now() - t0;
    console.log(`# RGW started in ${startMs} ms at ${endpoint}`);
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      region,
      startMs,
      radosgw: () => {
        if (gateway === undefined) throw new Error('the gateway is not running');
        return gateway;
      },
      client,
      async createBucket(prefix = 'docxy') {
        const name = `${prefix}-${process.pid}-${++buckets}-${Date.now().toString(36)}`;
        const s3 = client();
        try {
          await s3.send(new CreateBucketCommand({ Bucket: name }));
        } finally {
          s3.destroy();
        }
        return name;
      },
      async killGateway() {
        const g = gateway;
        gateway = undefined;
        await g?.stop(0);
      },
      startGateway,
      stop: stopAll,
    };
  } catch (err) {
    const logs = daemons.map((m) => `--- ${m.name}\n${m.log().slice(-2000)}`).join('\n');
    await stopAll();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}
