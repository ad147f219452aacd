import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importPKCS8, UnsecuredJWT } from 'jose';
import { createTokenService } from './token-service.ts';

function pem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
}
const access = [{ type: 'repository', name: 'library/tiny', actions: ['pull'] }];

test('a token it issued verifies with its subject, upstream and access', async () => {
  const svc = await createTokenService({ keyPem: pem(), service: 'docxy', ttlMs: 60_000 });
  const { token, expiresIn } = await svc.issue({ subject: 'alice', upstream: 'docker.io', access });
  assert.equal(expiresIn, 60);
  assert.deepEqual(await svc.verify(token), { subject: 'alice', upstream: 'docker.io', access });
});

test('tokens signed with another key, unsigned, expired or for another audience are rejected', async () => {
  const key = pem();
  const svc = await createTokenService({ keyPem: key, service: 'docxy', ttlMs: 60_000 });
  const other = await createTokenService({ keyPem: pem(), service: 'docxy', ttlMs: 60_000 });
  await assert.rejects(
    svc.verify((await other.issue({ subject: 'a', upstream: 'docker.io', access })).token),
  );
  const none = new UnsecuredJWT({ access })
    .setIssuer('docxy')
    .setAudience('docxy')
    .setExpirationTime('1h')
    .encode();
  await assert.rejects(svc.verify(none));
  const signer = await importPKCS8(key, 'ES256');
  const expired = await new SignJWT({ access })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('docxy')
    .setAudience('docxy')
    .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
    .sign(signer);
  await assert.rejects(svc.verify(expired));
  const otherAud = await new SignJWT({ access })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('docxy')
    .setAudience('registry.docker.io')
    .setExpirationTime('1h')
    .sign(signer);
  await assert.rejects(svc.verify(otherAud));
});

test('a SEC1 EC key works; a key of another type is refused', async () => {
  const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'sec1', format: 'pem' })
    .toString();
  await createTokenService({ keyPem: sec1, service: 'docxy', ttlMs: 1000 });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  await assert.rejects(createTokenService({ keyPem: rsa, service: 'docxy', ttlMs: 1000 }), /P-256/);
});
