/**
 * Certificates from an ACME CA (Let's Encrypt, or pebble in tests) with the acme-client library:
 * HTTP-01 challenges answered by the plain HTTP listener, the account key and certificates kept
 * in `<data>/acme/`, renewal when the certificate expires within `renew_before`, retries with
 * exponential backoff. A new certificate goes to new connections at once (`onCertificate`).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { join } from 'node:path';
import type { Client as AcmeClient } from 'acme-client';
import type { Logger } from 'pino';
import { daysLeft, tlsMaterial, type TlsMaterial } from './tls.ts';

export interface AcmeConfig {
  readonly domains: readonly string[];
  readonly email?: string;
  readonly directory_url: string;
  readonly directory_ca_file?: string;
  readonly renew_before: number;
  readonly check_interval: number;
}

export interface AcmeManager {
  /** Key authorizations of pending HTTP-01 challenges, by token (served at /.well-known/acme-challenge/). */
  readonly challenges: ReadonlyMap<string, string>;
  /** The stored certificate, or a new one when none is stored or it is due. */
  ensure(): Promise<TlsMaterial>;
  /** Obtains a new certificate now, whatever the current one's expiry. */
  renew(): Promise<TlsMaterial>;
  /** Checks every `check_interval` and renews when due. */
  start(): void;
  stop(): void;
}

const maxBackoffMs = 3_600_000;

export function createAcmeManager(opts: {
  config: AcmeConfig;
  dir: string;
  log: Logger;
  onCertificate: (m: TlsMaterial) => void;
}): AcmeManager {
  const { config, log } = opts;
  const challenges = new Map<string, string>();
  const certFile = join(opts.dir, 'fullchain.pem');
  const keyFile = join(opts.dir, 'key.pem');
  const accountFile = join(opts.dir, 'account.key');
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  let inflight: Promise<TlsMaterial> | undefined;

  function stored(): TlsMaterial | undefined {
    try {
      return tlsMaterial(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'), {
        cert: certFile,
        key: keyFile,
      });
    } catch {
      return undefined;
    }
  }

  /** acme-client (with axios) costs ~28 MB of memory: loaded only when a certificate is needed. */
  async function acmeLib(): Promise<typeof import('acme-client')> {
    return import('acme-client');
  }

  async function accountKey(): Promise<Buffer> {
    const acme = await acmeLib();
    try {
      return readFileSync(accountFile);
    } catch {
      const key = await acme.crypto.createPrivateEcdsaKey();
      mkdirSync(opts.dir, { recursive: true });
      writeFileSync(accountFile, key, { mode: 0o600 });
      return key;
    }
  }

  async function obtain(): Promise<TlsMaterial> {
    const acme = await acmeLib();
    if (config.directory_ca_file !== undefined) {
      // acme-client talks to the directory through axios; a test CA (pebble) must be trusted there.
      acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: readFileSync(config.directory_ca_file) });
    }
    const client: AcmeClient = new acme.Client({
      directoryUrl: config.directory_url,
      accountKey: await accountKey(),
    });
    const [key, csr] = await acme.crypto.createCsr(
      { commonName: config.domains[0], altNames: [...config.domains] },
      await acme.crypto.createPrivateEcdsaKey(),
    );
    const cert = await client.auto({
      csr,
      // acme-client would first fetch the challenge itself at http://<domain>:80, which fails on
      // hosts that cannot reach their own public name (NAT without hairpin, split DNS) and would
      // block the start for minutes; the CA's validation is the one that counts.
      skipChallengeVerification: true,
      email: config.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      challengeCreateFn: (_authz, challenge, keyAuthorization) => {
        challenges.set(challenge.token, keyAuthorization);
        return Promise.resolve();
      },
      challengeRemoveFn: (_authz, challenge) => {
        challenges.delete(challenge.token);
        return Promise.resolve();
      },
    });
    const m = tlsMaterial(cert, key.toString(), { cert: 'ACME certificate', key: 'ACME key' });
    mkdirSync(opts.dir, { recursive: true });
    writeFileSync(keyFile, key, { mode: 0o600 });
    writeFileSync(certFile, cert);
    log.info(
      { domains: config.domains, serial: m.serial, notAfter: m.notAfter.toISOString() },
      'ACME certificate obtained',
    );
    opts.onCertificate(m);
    return m;
  }

  function renew(): Promise<TlsMaterial> {
    inflight ??= obtain().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  function schedule(ms: number): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => void check(), ms);
    timer.unref();
  }

  async function check(): Promise<void> {
    const current = stored();
    const due = current === undefined || daysLeft(current) * 86_400_000 <= config.renew_before;
    if (!due) {
      schedule(config.check_interval);
      return;
    }
    try {
      await renew();
      failures = 0;
      schedule(config.check_interval);
    } catch (err) {
      failures++;
      const wait = Math.min(maxBackoffMs, 60_000 * 2 ** (failures - 1));
      log.error({ err: (err as Error).message, retryInMs: wait }, 'ACME renewal failed');
      schedule(wait);
    }
  }

  return {
    challenges,
    async ensure() {
      const current = stored();
      if (current !== undefined && daysLeft(current) * 86_400_000 > config.renew_before) return current;
      return renew();
    },
    renew,
    start() {
      schedule(config.check_interval);
    },
    stop() {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
