/**
 * A test ACME CA: Debian's pebble, with pebble-challtestsrv as its DNS server, all on 127.0.0.1.
 *
 * - pebble's own HTTPS listeners (ACME directory, management) use a certificate from the test CA,
 *   so a client trusts the directory with `directory_ca_file: <test CA>`.
 * - challtestsrv answers every A query with 127.0.0.1 (and no AAAA), so any domain, e.g.
 *   registry.example.com, resolves to this machine for pebble's validation authority, which then
 *   really fetches `http://<domain>:<httpPort>/.well-known/acme-challenge/<token>` — `httpPort` is
 *   the ACME client's plain HTTP listener. Only its DNS server runs; its own challenge listeners are
 *   off.
 * - PEBBLE_VA_NOSLEEP: no random validation delays; PEBBLE_WFE_NONCEREJECT=0: no deliberately
 *   rejected nonces; PEBBLE_AUTHZREUSE=0: every order gets fresh authorizations, so every
 *   issuance (renewals too) is validated over HTTP-01.
 * - The issuing root is random per run; `rootPem()` fetches it from the management endpoint
 *   (/roots/0). Issued certificates are valid for 5 years.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { freePort, startProcess, waitForPort, type Managed } from './process.ts';
import type { TestCa } from './test-ca.ts';
import { makeTmpDir } from './tmp.ts';
import { httpsGet } from './tls-client.ts';

export interface Pebble {
  readonly directoryUrl: string;
  /** pebble's issuing root (PEM), from its management endpoint. */
  rootPem(): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

export async function startPebble(opts: { ca: TestCa; httpPort: number }): Promise<Pebble> {
  const tmp = makeTmpDir('pebble');
  const procs: Managed[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(procs.map((p) => p.stop()));
    tmp.remove();
  };
  try {
    const listenerCert = await opts.ca.issue({ name: 'pebble-listener' });
    const [acmePort, mgmtPort, tlsPort, dnsPort, dnsMgmtPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const configFile = join(tmp.path, 'pebble-config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${acmePort}`,
          managementListenAddress: `127.0.0.1:${mgmtPort}`,
          certificate: listenerCert.certFile,
          privateKey: listenerCert.keyFile,
          httpPort: opts.httpPort,
          tlsPort,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    procs.push(
      startProcess(
        'pebble-challtestsrv',
        'pebble-challtestsrv',
        [
          '-dns01',
          `127.0.0.1:${dnsPort}`,
          '-http01',
          '',
          '-https01',
          '',
          '-tlsalpn01',
          '',
          '-management',
          `127.0.0.1:${dnsMgmtPort}`,
          '-defaultIPv4',
          '127.0.0.1',
          '-defaultIPv6',
          '',
        ],
        { logFile: join(tmp.path, 'challtestsrv.log'), cwd: tmp.path },
      ),
    );
    await waitForPort(dnsPort);
    const pebble = startProcess(
      'pebble',
      'pebble',
      ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`],
      {
        logFile: join(tmp.path, 'pebble.log'),
        cwd: tmp.path,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          PEBBLE_VA_NOSLEEP: '1',
          PEBBLE_WFE_NONCEREJECT: '0',
          PEBBLE_AUTHZREUSE: '0',
        },
      },
    );
    procs.push(pebble);
    await waitForPort(acmePort);
    await waitForPort(mgmtPort);
    return {
      directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
      async rootPem() {
        const res = await httpsGet(`https://127.0.0.1:${mgmtPort}/roots/0`, { ca: opts.ca.certPem });
        if (res.status !== 200) throw new Error(`pebble /roots/0: ${res.status}`);
        return res.body.toString('utf8');
      },
      log: () => pebble.log(),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
