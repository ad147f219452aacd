/**
 * TLS material from PEM files: a certificate chain (leaf first) and its private key in any form
 * Node reads (PKCS#1 RSA, SEC1 EC P-256/P-384, PKCS#8). Problems fail the start with a message that
 * names the files; a certificate that expired or expires within 14 days is a warning.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  /** The leaf certificate's serial number (hex), for logs and tests. */
  readonly serial: string;
  readonly notAfter: Date;
  readonly subject: string;
}

export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsConfigError';
  }
}

/** Parses and checks a certificate chain and key; `where` names their source in errors. */
export function tlsMaterial(cert: string, key: string, where: { cert: string; key: string }): TlsMaterial {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsConfigError(`${where.cert}: not a PEM certificate (${(err as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsConfigError(
      `${where.key}: not a PEM private key in PKCS#1, SEC1 or PKCS#8 form (${(err as Error).message})`,
    );
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(`${where.key} does not match the certificate in ${where.cert}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsConfigError(`${where.cert} / ${where.key}: unusable for TLS (${(err as Error).message})`);
  }
  return { cert, key, serial: leaf.serialNumber, notAfter: new Date(leaf.validTo), subject: leaf.subject };
}

export function loadTlsFiles(certFile: string, keyFile: string): TlsMaterial {
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new TlsConfigError(
        `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  };
  return tlsMaterial(read(certFile), read(keyFile), { cert: certFile, key: keyFile });
}

/** Days until the certificate expires (negative once it has). */
export function daysLeft(m: TlsMaterial, now = Date.now()): number {
  return (m.notAfter.getTime() - now) / 86_400_000;
}
