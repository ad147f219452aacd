/**
 * Shared pieces of the security tests (test/integration/security-*.test.ts): OCI error checks, a
 * pull over plain HTTP, canary listeners that count every connection and request they receive,
 * Docxy token forging, and htpasswd files written by the real `htpasswd` CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';

import { httpGet, type TestResponse } from './http.ts';
import { ACCEPT_ALL_MANIFESTS, sha256 } from './images.ts';

const execFileAsync = promisify(execFile);

export { need } from './client-steps.ts';

/** The first entry of an OCI error body, or undefined when the body is no such JSON. */
export function ociError(res: TestResponse): { code?: unknown; message?: unknown } | undefined {
  try {
    const body = res.json() as { errors?: { code?: unknown; message?: unknown }[] };
    return Array.isArray(body.errors) ? body.errors[0] : undefined;
  } catch {
    return undefined;
  }
}

/** Asserts an OCI JSON error with this status (and code, when given). */
export function assertOciError(res: TestResponse, status: number, code?: string, what = ''): void {
  const text = res.body.toString('utf8').slice(0, 300);
  assert.equal(res.status, status, `${what} status: ${res.status} ${text}`);
  assert.match(res.header('content-type') ?? '', /^application\/json/, `${what} content-type`);
  const first = ociError(res);
  assert.equal(typeof first?.code, 'string', `${what} has an OCI error body: ${text}`);
  if (code !== undefined) assert.equal(first?.code, code, `${what} error code: ${text}`);
}

/** The parsed `WWW-Authenticate: Bearer k="v",…` parameters. */
export function bearerParams(header: string | undefined): Record<string, string> {
  assert.ok(header?.startsWith('Bearer ') === true, `a Bearer challenge: ${String(header)}`);
  const out: Record<string, string> = {};
  for (const m of header.slice('Bearer '.length).matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) {
    if (m[1] !== undefined) out[m[1]] = m[2] ?? '';
  }
  return out;
}

/** What a pull over HTTP fetched: the manifest's digest and every blob's digest, all verified. */
export interface HttpPull {
  readonly digest: string;
  readonly manifest: Buffer;
  readonly blobs: readonly string[];
}

/** The config and layer digests a single-arch manifest references. */
export function blobsOf(manifest: Buffer): string[] {
  const m = JSON.parse(manifest.toString('utf8')) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  return [m.config.digest, ...m.layers.map((l) => l.digest)];
}

/**
 * Pulls `repo:tag` the way a client does once it holds a token: the manifest, then every blob;
 * each must be 200 with the bytes its digest names.
 */
export async function httpPull(
  base: string,
  repo: string,
  tag: string,
  headers: Record<string, string> = {},
): Promise<HttpPull> {
  const m = await httpGet(`${base}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: ACCEPT_ALL_MANIFESTS, ...headers },
  });
  assert.equal(m.status, 200, `GET ${repo}:${tag}: ${m.status} ${m.body.toString().slice(0, 300)}`);
  const digest = sha256(m.body);
  assert.equal(m.header('docker-content-digest'), digest, 'the manifest is the bytes its digest names');
  const blobs = blobsOf(m.body);
  for (const d of blobs) {
    const b = await httpGet(`${base}/v2/${repo}/blobs/${d}`, { headers });
    assert.equal(b.status, 200, `GET blob ${d} of ${repo}: ${b.status} ${b.body.toString().slice(0, 200)}`);
    assert.equal(sha256(b.body), d, `blob ${d} has its content`);
  }
  return { digest, manifest: m.body, blobs };
}

/** A listener that must stay untouched: counts TCP connections and HTTP requests. */
export interface Canary {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` (IPv6 hosts bracketed). */
  readonly url: string;
  connections(): number;
  requests(): readonly string[];
  stop(): Promise<void>;
}

/**
 * Starts an HTTP canary on `host` (127.0.0.1 unless told). It answers every request with `body`
 * (so a control can show that following a redirect to it would have worked).
 */
export async function startCanary(host = '127.0.0.1', body: Buffer = Buffer.from('canary')): Promise<Canary> {
  let connections = 0;
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method ?? ''} ${req.url ?? ''}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    connections: () => connections,
    requests: () => requests,
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** A fresh EC P-256 key pair (Docxy's token key type), as KeyObjects and PEM. */
export function p256(): {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privatePem: string;
  publicPem: string;
} {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKey,
    publicKey,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** The claims of a Docxy token (token-service.ts), each overridable for forgeries. */
export interface DocxyClaims {
  sub: string;
  iss: string;
  aud: string;
  upstream: string;
  access: { type: string; name: string; actions: string[] }[];
  /** Seconds from now (negative: in the past). */
  expIn: number;
  /** Seconds from now. */
  iatIn: number;
}

export function docxyClaims(overrides: Partial<DocxyClaims> = {}): DocxyClaims {
  return {
    sub: 'someone',
    iss: 'docxy',
    aud: 'docxy',
    upstream: 'docker.io',
    access: [],
    expIn: 300,
    iatIn: 0,
    ...overrides,
  };
}

/** Signs Docxy-shaped claims with `key` (ES256 unless told otherwise). */
export async function signDocxyToken(
  key: KeyObject | Uint8Array,
  claims: DocxyClaims,
  alg = 'ES256',
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ access: claims.access, upstream: claims.upstream })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setSubject(claims.sub)
    .setIssuedAt(now + claims.iatIn)
    .setNotBefore(now + claims.iatIn - 5)
    .setExpirationTime(now + claims.expIn)
    .sign(key);
}

/** The payload of a JWT, unverified. */
export function jwtPayload(token: string): Record<string, unknown> {
  const part = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Runs the real `htpasswd` (apache2-utils) to add a bcrypt entry; `create` starts a new file. */
export async function htpasswdCli(
  file: string,
  user: string,
  password: string,
  create: boolean,
): Promise<void> {
  await execFileAsync('htpasswd', [create ? '-Bbc' : '-Bb', file, user, password]);
}

/** Writes a file and returns its path (small convenience for key files). */
export function writeFile(path: string, text: string): string {
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

/** A plain HTTP server on 127.0.0.1 (port 0) with `handler`; `stop` drops its open sockets first. */
export async function startStubServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer(handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
