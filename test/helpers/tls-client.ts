/**
 * TLS clients for tests: what certificate a fresh handshake shows, and HTTPS requests that trust a
 * given CA. Every call opens a new connection (no agent, no keep-alive), so a certificate that was
 * just replaced on the server is what the next call sees.
 */
import { request as httpsRequest } from 'node:https';
import { connect, type PeerCertificate } from 'node:tls';

export interface PeerInfo {
  /** Upper-case hex, as Node shows it. */
  readonly serial: string;
  readonly subjectAltName: string | undefined;
  /** Whether the chain verified against `ca` for `servername`. */
  readonly authorized: boolean;
  readonly authorizationError: string | undefined;
  /** The ALPN protocol the server picked, or false. */
  readonly alpn: string | false;
  readonly validTo: string;
}

export interface TlsTarget {
  port: number;
  host?: string;
  /** SNI and the name the certificate is checked against (default `localhost`). */
  servername?: string;
  /** PEM(s) to trust instead of the system roots. */
  ca?: string | string[];
  alpn?: string[];
}

/** Handshakes, reads the server's leaf certificate, closes. Rejects only on connection errors. */
export function peerCertificate(target: TlsTarget): Promise<PeerInfo> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: target.host ?? '127.0.0.1',
      port: target.port,
      servername: target.servername ?? 'localhost',
      ca: target.ca,
      ALPNProtocols: target.alpn,
      rejectUnauthorized: false,
    });
    socket.setTimeout(10_000, () => {
      socket.destroy(new Error(`TLS handshake with port ${target.port} timed out`));
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const cert: PeerCertificate = socket.getPeerCertificate();
      const err = socket.authorizationError as Error | string | null | undefined;
      resolve({
        serial: cert.serialNumber.toUpperCase(),
        subjectAltName: cert.subjectaltname,
        authorized: socket.authorized,
        authorizationError: err === null || err === undefined ? undefined : String(err),
        alpn: socket.alpnProtocol ?? false,
        validTo: cert.valid_to,
      });
      socket.end();
    });
  });
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  header(name: string): string | undefined;
}

/** One HTTPS request over a new connection, verifying the server against `ca`. */
export function httpsGet(
  url: string,
  opts: { ca: string | string[]; headers?: Record<string, string>; servername?: string; method?: string },
): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers,
        ca: opts.ca,
        servername: opts.servername,
        agent: false,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('error', reject);
        res.once('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            header(name) {
              const v = res.headers[name.toLowerCase()];
              return Array.isArray(v) ? v[0] : v;
            },
          });
        });
      },
    );
    req.once('timeout', () => {
      req.destroy(new Error(`${url}: no answer in 30 s`));
    });
    req.once('error', reject);
    req.end();
  });
}

/** A pull token from a Docxy `/auth/token` over HTTPS (the token service behind it decides). */
export async function httpsPullToken(
  base: string,
  ca: string | string[],
  service: string,
  repo: string,
): Promise<string> {
  const url = new URL(`${base}/auth/token`);
  url.searchParams.set('service', service);
  url.searchParams.set('scope', `repository:${repo}:pull`);
  const res = await httpsGet(url.href, { ca });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.body.toString()}`);
  const json = JSON.parse(res.body.toString('utf8')) as { token?: unknown };
  if (typeof json.token !== 'string') throw new Error('no token in the answer');
  return json.token;
}
