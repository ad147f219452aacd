/**
 * A Docker token server (the "realm" of Docker's token authentication spec), standing in for
 * auth.docker.io in tests.
 *
 * At start it makes an EC P-256 key and a self-signed certificate with `openssl`, and signs ES256
 * JWTs whose header carries the certificate in `x5c`. CNCF Distribution 2.8 (`auth: token:` with
 * `rootcertbundle` = that certificate) accepts such tokens: it verifies the `x5c` chain against the
 * bundle and checks the signature with the leaf's key.
 *
 * Policy, like Docker Hub for public images: anonymous callers get `pull` on every repository they
 * ask for; a configured user (HTTP Basic) gets `pull` and `push`; a wrong password is a 401. Every
 * request is recorded so tests can count how often a proxy fetched a token, and with which scopes
 * and credentials. Repositories named in `privateRepositories` are like Docker Hub's private ones:
 * only the users listed for them get any access (anonymous callers and other users get none).
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { makeTmpDir } from './tmp.ts';

const execFileAsync = promisify(execFile);

export interface TokenServerOptions {
  /** `iss` of every token; the registry's `auth.token.issuer` must be the same string. */
  issuer: string;
  /** The only `service` (token `aud`) this server issues for; the registry's `auth.token.service`. */
  service: string;
  /** Users allowed to push: name -> password. */
  users: Readonly<Record<string, string>>;
  /** Token lifetime; 300 s (Docker Hub's) unless a test wants tokens to expire quickly. */
  expiresInSeconds?: number;
  /**
   * Private repositories: name (as in the scope, e.g. `private/app`) -> the users who get access to
   * it (their usual actions). Anyone else, anonymous or not, is granted nothing on it.
   */
  privateRepositories?: Readonly<Record<string, readonly string[]>>;
  /** Port to listen on (127.0.0.1); a free one when omitted. */
  port?: number;
}

/** One `access` entry of a token, as in Docker's token spec. */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenRequest {
  /** `Date.now()` when the request arrived. */
  time: number;
  method: string;
  path: string;
  query: {
    service: string | undefined;
    /** Every `scope` parameter, split on spaces (the spec allows both forms), in order. */
    scope: string[];
    account: string | undefined;
  };
  /** The raw `Authorization` header, or undefined when the client sent none. */
  authorization: string | undefined;
  /** The status this server answered with. */
  status: number;
  /** The access granted (empty when the request failed). */
  granted: AccessEntry[];
  /** The token issued in answer (undefined when the request failed), so tests can grep logs for it. */
  token?: string;
}

export interface TokenServer {
  /** The realm, e.g. `http://127.0.0.1:PORT/token`. */
  readonly url: string;
  readonly port: number;
  readonly issuer: string;
  readonly service: string;
  /** PEM of the signing certificate: the registry's `rootcertbundle`. */
  readonly certPemPath: string;
  /** Every request received, oldest first. Tests may clear it (`requests.length = 0`). */
  readonly requests: TokenRequest[];
  /** Signs a token for `subject` with exactly `access`, bypassing the policy (for negative tests). */
  issue(subject: string, access: readonly AccessEntry[], expiresInSeconds?: number): Promise<string>;
  /** Closes the server and removes the key material. */
  stop(): Promise<void>;
}

/** Actions each kind of caller may receive; anything else requested is silently not granted. */
const ANONYMOUS_ACTIONS = new Set(['pull']);
const USER_ACTIONS = new Set(['pull', 'push']);

/**
 * Parses one scope, `type:name:actions`. The name may itself contain `:` (a registry host with a
 * port, e.g. `repository:localhost:5000/foo:pull`), so the type ends at the first colon and the
 * actions start after the last one.
 */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

/** Decodes `Authorization: Basic …`; undefined for any other scheme or a malformed value. */
function parseBasic(header: string): { username: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (m?.[1] === undefined) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Makes the signing key and a self-signed certificate for it; returns both PEM paths. */
async function makeSigningCert(dir: string): Promise<{ keyPath: string; certPath: string }> {
  const keyPath = join(dir, 'signing-key.pem');
  const certPath = join(dir, 'signing-cert.pem');
  // One `req -x509` call generates the P-256 key and self-signs the certificate. Distribution only
  // checks the chain (the leaf is itself in the root bundle) and validity dates, so no extensions
  // are needed; 2 days is plenty for a test run and keeps the certificate obviously disposable.
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '2',
    '-subj',
    '/CN=docxy test token signer',
  ]);
  return { keyPath, certPath };
}

/** Answers with `body` as JSON (Content-Length set), plus `headers`. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const dir = makeTmpDir('token');
  let server: Server | undefined;
  try {
    const { keyPath, certPath } = await makeSigningCert(dir.path);
    const privateKey: KeyObject = createPrivateKey(readFileSync(keyPath));
    // x5c holds base64 (not base64url) DER certificates, leaf first (RFC 7515 §4.1.6).
    const x5c = [new X509Certificate(readFileSync(certPath)).raw.toString('base64')];
    const lifetime = opts.expiresInSeconds ?? 300;
    const requests: TokenRequest[] = [];

    const issue = async (
      subject: string,
      access: readonly AccessEntry[],
      expiresIn = lifetime,
    ): Promise<string> => {
      const now = Math.floor(Date.now() / 1000);
      return (
        new SignJWT({ access: access.map((a) => ({ ...a, actions: [...a.actions] })) })
          .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c })
          .setIssuer(opts.issuer)
          .setSubject(subject)
          // A plain string: Distribution 2.8's ClaimSet declares `aud` as a string, so an array
          // audience would fail to unmarshal and every token would be rejected.
          .setAudience(opts.service)
          .setIssuedAt(now)
          .setNotBefore(now)
          .setExpirationTime(now + expiresIn)
          .setJti(randomUUID())
          .sign(privateKey)
      );
    };

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const url = new URL(req.url ?? '/', 'http://token.invalid');
      const authorization = req.headers.authorization;
      const scopes = url.searchParams
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter((s) => s !== '');
      const record: TokenRequest = {
        time: Date.now(),
        method: req.method ?? '',
        path: url.pathname,
        query: {
          service: url.searchParams.get('service') ?? undefined,
          scope: scopes,
          account: url.searchParams.get('account') ?? undefined,
        },
        authorization,
        status: 0,
        granted: [],
      };
      requests.push(record);
      const reply = (status: number, body: unknown, headers?: Record<string, string>): void => {
        record.status = status;
        sendJson(res, status, body, headers);
      };

      if (url.pathname !== '/token') {
        reply(404, { details: 'not found' });
        return;
      }
      if (req.method !== 'GET') {
        // Docker Hub also takes OAuth2 `POST /token`; this fake only speaks the GET flow. 404 is
        // the answer on which containerd falls back to GET (it treats 404/401/400 that way).
        reply(404, { details: 'only GET /token is supported' });
        return;
      }
      if (record.query.service !== undefined && record.query.service !== opts.service) {
        reply(400, { details: `unknown service ${record.query.service}` });
        return;
      }

      // Anonymous unless the caller presents valid Basic credentials. `account=` alone is only a
      // hint (Docker sends it next to the credentials), never an identity.
      let subject = '';
      let allowed = ANONYMOUS_ACTIONS;
      if (authorization !== undefined) {
        const basic = parseBasic(authorization);
        const expected = basic === undefined ? undefined : opts.users[basic.username];
        if (basic === undefined || expected === undefined || expected !== basic.password) {
          reply(
            401,
            { details: 'incorrect username or password' },
            { 'www-authenticate': 'Basic realm="docxy fake token server"' },
          );
          return;
        }
        subject = basic.username;
        allowed = USER_ACTIONS;
      }

      // Grant per requested repository the intersection of what was asked and what is allowed;
      // other resource types (e.g. `registry:catalog:*`) are never granted, as on Docker Hub.
      for (const scope of scopes) {
        const parsed = parseScope(scope);
        if (parsed?.type !== 'repository') continue;
        const privateRepos = opts.privateRepositories ?? {};
        const privateTo = Object.hasOwn(privateRepos, parsed.name) ? privateRepos[parsed.name] : undefined;
        if (privateTo !== undefined && !privateTo.includes(subject)) continue;
        const actions = parsed.actions.filter((a) => allowed.has(a));
        if (actions.length > 0) record.granted.push({ ...parsed, actions });
      }

      const token = await issue(subject, record.granted);
      record.token = token;
      reply(200, {
        token,
        access_token: token,
        expires_in: lifetime,
        issued_at: new Date().toISOString(),
      });
    };

    const srv = createServer((req, res) => {
      handle(req, res).catch((err: unknown) => {
        sendJson(res, 500, { details: String(err) });
      });
    });
    server = srv;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(opts.port ?? 0, '127.0.0.1', () => {
        resolve();
      });
    });
    const port = (srv.address() as AddressInfo).port;

    return {
      url: `http://127.0.0.1:${port}/token`,
      port,
      issuer: opts.issuer,
      service: opts.service,
      certPemPath: certPath,
      requests,
      issue,
      async stop() {
        // Keep-alive sockets (fetch pools them) would hold close() open; drop them first.
        srv.closeAllConnections();
        await new Promise<void>((resolve) => {
          srv.close(() => {
            resolve();
          });
        });
        dir.remove();
      },
    };
  } catch (err) {
    server?.close();
    dir.remove();
    throw err;
  }
}
