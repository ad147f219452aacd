import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { TlsConfigError, daysLeft, loadTlsFiles } from './tls.ts';

function selfSigned(dir: string, name: string, keyArgs: string[], days = 30): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-nodes',
      ...keyArgs,
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      String(days),
      '-subj',
      `/CN=${name}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

test('RSA, EC P-256, EC P-384 and PKCS#8 keys load with their certificate', () => {
  const dir = makeTmpDir('tls');
  try {
    const rsa = selfSigned(dir.path, 'rsa', ['-newkey', 'rsa:2048']);
    const ec = selfSigned(dir.path, 'ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const ec384 = selfSigned(dir.path, 'ec384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']);
    // PKCS#1 and SEC1 forms of the same keys (openssl writes PKCS#8 by default).
    const pkcs1 = join(dir.path, 'rsa1.key');
    execFileSync('openssl', ['rsa', '-in', rsa.key, '-traditional', '-out', pkcs1], { stdio: 'ignore' });
    const sec1 = join(dir.path, 'ec1.key');
    execFileSync('openssl', ['ec', '-in', ec.key, '-out', sec1], { stdio: 'ignore' });
    for (const [cert, key] of [
      [rsa.cert, rsa.key],
      [rsa.cert, pkcs1],
      [ec.cert, ec.key],
      [ec.cert, sec1],
      [ec384.cert, ec384.key],
    ] as const) {
      const m = loadTlsFiles(cert, key);
      assert.match(m.serial, /^[0-9A-F]+$/i);
      assert.ok(daysLeft(m) > 29);
    }
  } finally {
    dir.remove();
  }
});

test('a key that does not match, an unreadable file and a non-PEM file are errors naming the files', () => {
  const dir = makeTmpDir('tls');
  try {
    const a = selfSigned(dir.path, 'a', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    const b = selfSigned(dir.path, 'b', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    assert.throws(
      () => loadTlsFiles(a.cert, b.key),
      (err: unknown) =>
        err instanceof TlsConfigError && err.message.includes(b.key) && err.message.includes(a.cert),
    );
    assert.throws(() => loadTlsFiles(join(dir.path, 'missing.crt'), a.key), /missing\.crt: cannot read/);
    const junk = join(dir.path, 'junk.key');
    writeFileSync(junk, 'not a key');
    assert.throws(() => loadTlsFiles(a.cert, junk), /junk\.key: not a PEM private key/);
  } finally {
    dir.remove();
  }
});
