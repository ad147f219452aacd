/**
 * A throw-away certificate authority for TLS tests, made with the openssl command line (Debian's
 * OpenSSL 3.0): an EC P-256 root, and server certificates it signs for `DNS:localhost,
 * IP:127.0.0.1` (or other names) with a key in the form a test asks for:
 *
 *   rsa-pkcs1     -- `-----BEGIN RSA PRIVATE KEY-----` (openssl genrsa -traditional)
 *   ec-p256-sec1  -- `-----BEGIN EC PRIVATE KEY-----`  (openssl ecparam -genkey -noout)
 *   rsa-pkcs8     -- `-----BEGIN PRIVATE KEY-----`     (openssl genpkey)
 *   ec-p256-pkcs8 -- `-----BEGIN PRIVATE KEY-----`     (openssl genpkey)
 *
 * Certificates are issued with `openssl ca`, so validity can start and end at any instant (an
 * expired certificate, one that expires in three days), and every certificate gets a fresh random
 * serial that tests compare with what a TLS handshake shows. All files live in one temporary
 * directory that `remove()` deletes. openssl runs as a child process (never blocking the event
 * loop, so an in-process Docxy keeps serving while a test makes certificates).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { runChecked } from './clients/common.ts';
import { makeTmpDir } from './tmp.ts';

export type KeyType = 'rsa-pkcs1' | 'ec-p256-sec1' | 'rsa-pkcs8' | 'ec-p256-pkcs8';

/** The PEM header each key type is written with (what a test asserts the file really is). */
export const KEY_PEM_HEADER: Readonly<Record<KeyType, string>> = {
  'rsa-pkcs1': '-----BEGIN RSA PRIVATE KEY-----',
  'ec-p256-sec1': '-----BEGIN EC PRIVATE KEY-----',
  'rsa-pkcs8': '-----BEGIN PRIVATE KEY-----',
  'ec-p256-pkcs8': '-----BEGIN PRIVATE KEY-----',
};

export interface ServerCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** Upper-case hex without leading zeros, as Node's X509Certificate and getPeerCertificate show it. */
  readonly serial: string;
  readonly keyType: KeyType;
}

export interface IssueOptions {
  /** File name stem inside the CA directory (unique per certificate). */
  name: string;
  keyType?: KeyType;
  /** subjectAltName entries; default `DNS:localhost`, `IP:127.0.0.1`. */
  sans?: readonly string[];
  notBefore?: Date;
  /** Default: 30 days from now. */
  notAfter?: Date;
}

export interface TestCa {
  readonly dir: string;
  /** The root certificate (PEM file), what a client must trust. */
  readonly certFile: string;
  readonly certPem: string;
  issue(opts: IssueOptions): Promise<ServerCert>;
  /** A key of `keyType` in its own file, signed into no certificate (a mismatched key). */
  newKey(name: string, keyType?: KeyType): Promise<string>;
  remove(): void;
}

const openssl = (args: readonly string[]): Promise<unknown> =>
  runChecked('openssl', args, { timeoutMs: 60_000 });

/** `YYYYMMDDHHMMSSZ`, the GeneralizedTime form `openssl ca -startdate/-enddate` accepts. */
function opensslTime(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

async function generateKey(file: string, keyType: KeyType): Promise<void> {
  switch (keyType) {
    case 'rsa-pkcs1':
      await openssl(['genrsa', '-traditional', '-out', file, '2048']);
      break;
    case 'ec-p256-sec1':
      await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file]);
      break;
    case 'rsa-pkcs8':
      await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', file]);
      break;
    case 'ec-p256-pkcs8':
      await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
      break;
  }
  const header = readFileSync(file, 'utf8').split('\n')[0];
  if (header !== KEY_PEM_HEADER[keyType]) throw new Error(`openssl wrote a ${String(header)} for ${keyType}`);
}

export async function createTestCa(name = 'Docxy Test CA'): Promise<TestCa> {
  const tmp = makeTmpDir('test-ca');
  const dir = tmp.path;
  try {
    const certFile = join(dir, 'ca.crt');
    const keyFile = join(dir, 'ca.key');
    await generateKey(keyFile, 'ec-p256-pkcs8');
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      keyFile,
      '-subj',
      `/CN=${name}`,
      '-days',
      '30',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      certFile,
    ]);
    mkdirSync(join(dir, 'issued'));
    writeFileSync(join(dir, 'index.txt'), '');
    // One issuance at a time: `openssl ca` keeps its database and serial in files.
    let queue: Promise<unknown> = Promise.resolve();

    const issueNow = async (opts: IssueOptions): Promise<ServerCert> => {
      const keyType = opts.keyType ?? 'ec-p256-sec1';
      const stem = join(dir, opts.name);
      const key = `${stem}.key`;
      const csr = `${stem}.csr`;
      const crt = `${stem}.crt`;
      const cnf = `${stem}.cnf`;
      await generateKey(key, keyType);
      await openssl(['req', '-new', '-key', key, '-subj', `/CN=${opts.name}`, '-out', csr]);
      // A positive 64-bit serial whose first hex digit is 1-7 (no sign bit, no leading zero), so
      // its hex form is the same everywhere; openssl wants an even number of digits.
      const first = 0x10 + ((randomBytes(1)[0] ?? 0) % 0x70);
      const serial = `${first.toString(16)}${randomBytes(7).toString('hex')}`.toUpperCase();
      writeFileSync(join(dir, 'serial'), `${serial}\n`);
      const sans = opts.sans ?? ['DNS:localhost', 'IP:127.0.0.1'];
      writeFileSync(
        cnf,
        [
          '[ca]',
          'default_ca = test_ca',
          '[test_ca]',
          `database = ${join(dir, 'index.txt')}`,
          `new_certs_dir = ${join(dir, 'issued')}`,
          `serial = ${join(dir, 'serial')}`,
          `certificate = ${certFile}`,
          `private_key = ${keyFile}`,
          'default_md = sha256',
          'policy = policy_any',
          'unique_subject = no',
          'email_in_dn = no',
          'copy_extensions = none',
          '[policy_any]',
          'commonName = supplied',
          '[server]',
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage = serverAuth',
          `subjectAltName = ${sans.join(',')}`,
          '',
        ].join('\n'),
      );
      const notBefore = opts.notBefore ?? new Date(Date.now() - 3_600_000);
      const notAfter = opts.notAfter ?? new Date(Date.now() + 30 * 86_400_000);
      await openssl([
        'ca',
        '-batch',
        '-notext',
        '-config',
        cnf,
        '-extensions',
        'server',
        '-startdate',
        opensslTime(notBefore),
        '-enddate',
        opensslTime(notAfter),
        '-in',
        csr,
        '-out',
        crt,
      ]);
      return {
        certFile: crt,
        keyFile: key,
        certPem: readFileSync(crt, 'utf8'),
        keyPem: readFileSync(key, 'utf8'),
        serial,
        keyType,
      };
    };

    return {
      dir,
      certFile,
      certPem: readFileSync(certFile, 'utf8'),
      issue(opts) {
        const next = queue.then(() => issueNow(opts));
        queue = next.catch(() => undefined);
        return next;
      },
      async newKey(keyName, keyType = 'ec-p256-sec1') {
        const file = join(dir, `${keyName}.key`);
        await generateKey(file, keyType);
        return file;
      },
      remove: () => {
        tmp.remove();
      },
    };
  } catch (err) {
    tmp.remove();
    throw err;
  }
}
