/**
 * A plain TCP relay, one process per hop of the benchmark's capped link (link.ts starts two: one
 * inside the link's network namespace, one on the host side of its veth pair). Each accepted
 * connection gets its own connection to the target; bytes are copied both ways with backpressure
 * and either side closing closes both. No HTTP parsing: the relay must not change what the
 * contestants and the hub say to each other.
 *
 *   node --import tsx bench/link/relay.ts LISTEN_HOST:PORT TARGET_HOST:PORT
 *
 * It prints `listening` once bound, so the starter knows the hop is up.
 */
import { connect, createServer } from 'node:net';

function hostPort(arg: string | undefined): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(arg ?? '');
  if (m?.[1] === undefined || m[2] === undefined) throw new Error(`expected HOST:PORT, got ${String(arg)}`);
  return { host: m[1], port: Number(m[2]) };
}

const listen = hostPort(process.argv[2]);
const target = hostPort(process.argv[3]);

const server = createServer({ noDelay: true }, (client) => {
  const upstream = connect({ ...target, noDelay: true });
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.listen(listen.port, listen.host, () => {
  process.stdout.write(`listening ${listen.host}:${listen.port} -> ${target.host}:${target.port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    process.exit(0);
  });
}
