/**
 * Docxy's own tokens (Docker's token spec, ES256 JWT): `iss` docxy, `aud` the service, `sub` the
 * user (empty for anonymous), `exp`, an `upstream` claim binding the token to the upstream whose
 * realm issued it, and `access` entries per repository and action. The signing key comes from a
 * file, or is generated once and kept in the data directory. Verification accepts ES256 with this
 * key only (no `alg: none`, no other keys), checks issuer, audience and expiry.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CryptoKey } from 'jose';
import { createPrivateKey, createPublicKey } from 'node:crypto';

export interface AccessEntry {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

export interface VerifiedToken {
  readonly subject: string;
  readonly upstream: string;
  readonly access: readonly AccessEntry[];
}

export interface TokenService {
  issue(opts: {
    subject: string;
    upstream: string;
    access: readonly AccessEntry[];
  }): Promise<{ token: string; expiresIn: number; issuedAt: string }>;
  /** Throws when the token is not Docxy's, expired, or for another audience. */
  verify(token: string): Promise<VerifiedToken>;
}

export const tokenIssuer = 'docxy';

/** Reads the PEM private key, or generates and stores one (0600) on first start. */
export function loadOrCreateKey(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
  return pem;
}

export async function createTokenService(opts: {
  keyPem: string;
  service: string;
  ttlMs: number;
}): Promise<TokenService> {
  // jose is loaded only when client authentication is on (it costs ~10 MB of memory).
  const { SignJWT, importPKCS8, importSPKI, jwtVerify } = await import('jose');
  // Normalise any PEM form (SEC1 "EC PRIVATE KEY" or PKCS#8) to PKCS#8 for jose.
  const keyObject = createPrivateKey(opts.keyPem);
  if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('auth.token.key_file: must be an EC P-256 private key');
  }
  const privateKey: CryptoKey = await importPKCS8(
    keyObject.export({ type: 'pkcs8', format: 'pem' }).toString(),
    'ES256',
  );
  const publicKey: CryptoKey = await importSPKI(
    createPublicKey(keyObject).export({ type: 'spki', format: 'pem' }).toString(),
    'ES256',
  );
  const ttlSec = Math.max(1, Math.round(opts.ttlMs / 1000));

  return {
    async issue({ subject, upstream, access }) {
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ access: access.map((a) => ({ ...a })), upstream })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
        .setIssuer(tokenIssuer)
        .setAudience(opts.service)
        .setSubject(subject)
        .setIssuedAt(now)
        .setNotBefore(now - 5)
        .setExpirationTime(now + ttlSec)
        .setJti(randomUUID())
        .sign(privateKey);
      return { token, expiresIn: ttlSec, issuedAt: new Date(now * 1000).toISOString() };
    },
    async verify(token) {
      const { payload } = await jwtVerify(token, publicKey, {
        algorithms: ['ES256'],
        issuer: tokenIssuer,
        audience: opts.service,
        clockTolerance: 5,
      });
      const access = Array.isArray(payload.access)
        ? (payload.access as unknown[]).flatMap((a) => {
            const e = a as Partial<AccessEntry>;
            return typeof e.type === 'string' && typeof e.name === 'string' && Array.isArray(e.actions)
              ? [
                  {
                    type: e.type,
                    name: e.name,
                    actions: e.actions.filter((x): x is string => typeof x === 'string'),
                  },
                ]
              : [];
          })
        : [];
      return {
        subject: payload.sub ?? '',
        upstream: typeof payload.upstream === 'string' ? payload.upstream : '',
        access,
      };
    },
  };
}
