/**
 * Two tiny egress proxies on 127.0.0.1 that record what they carried, to prove that an upstream's
 * traffic really went through its configured `proxy:`:
 *
 *   - `startHttpProxy()`: an HTTP forward proxy. `CONNECT host:port` opens a raw tunnel (what
 *     undici's ProxyAgent uses, for http:// targets too); a request with an absolute URI
 *     (`GET http://host:port/path`) is forwarded as a plain request.
 *   - `startSocks5Proxy()`: SOCKS5 (RFC 1928), no authentication, CONNECT only; IPv4, IPv6 and
 *     domain-name targets.
 *
 * Neither checks where it connects to: tests only. Both close every open connection on `stop()`.
 */
import { request as httpRequest, createServer as createHttpServer, type IncomingMessage } from 'node:http';
import {
  connect,
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';

export interface ProxyHit {
  /** `CONNECT` (a tunnel) or the forwarded method. */
  readonly kind: string;
  /** `host:port` the proxy connected to. */
  readonly target: string;
}

export interface EgressProxy {
  /** `http://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Every connection or request the proxy carried, oldest first. */
  readonly hits: ProxyHit[];
  stop(): Promise<void>;
}

/** Tracks open sockets so `stop()` can end tunnels that would otherwise keep the server open. */
function socketTracker(): { add(s: Socket): void; destroyAll(): void } {
  const open = new Set<Socket>();
  return {
    add(s) {
      open.add(s);
      s.once('close', () => open.delete(s));
    },
    destroyAll() {
      for (const s of open) s.destroy();
    },
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
  });
}

/** Splits `host:port` / `[v6]:port`. */
function splitTarget(target: string): { host: string; port: number } {
  const i = target.lastIndexOf(':');
  return { host: target.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(target.slice(i + 1)) };
}

/** Joins two sockets both ways; either side closing closes the other. */
function splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.once('error', () => b.destroy());
  b.once('error', () => a.destroy());
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
}

export async function startHttpProxy(): Promise<EgressProxy> {
  const hits: ProxyHit[] = [];
  const sockets = socketTracker();
  const server = createHttpServer();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
  });

  // CONNECT host:port -> a raw TCP tunnel after "200 Connection Established".
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    hits.push({ kind: 'CONNECT', target });
    const { host, port } = splitTarget(target);
    const upstream = connect({ host, port });
    sockets.add(upstream);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      splice(client, upstream);
    });
    // Not connected yet (once connected, splice handles errors): tell the client.
    upstream.once('error', () => {
      if (!connected) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    });
  });

  // An absolute-URI request -> the same request to that origin, answer streamed back.
  server.on('request', (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end('absolute URI required');
      return;
    }
    hits.push({ kind: req.method ?? 'GET', target: url.host });
    const out = httpRequest(
      url,
      { method: req.method, headers: { ...req.headers, host: url.host } },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    out.once('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(out);
  });

  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    async stop() {
      sockets.destroyAll();
      server.closeAllConnections();
      await closeServer(server);
    },
  };
}

// SOCKS5 wire constants (RFC 1928).
const VERSION = 0x05;
const NO_AUTH = 0x00;
const NO_ACCEPTABLE_METHOD = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;
const REP_SUCCEEDED = 0x00;
const REP_HOST_UNREACHABLE = 0x04;
const REP_COMMAND_NOT_SUPPORTED = 0x07;

/** A reply with the bound address left as 0.0.0.0:0 (clients ignore it for CONNECT). */
function socksReply(code: number): Buffer {
  return Buffer.from([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** Reads the destination of a request (`VER CMD RSV ATYP DST.ADDR DST.PORT`); undefined: need more bytes. */
function parseSocksRequest(
  buf: Buffer,
): { cmd: number; host: string; port: number; length: number } | undefined {
  if (buf.length < 5) return undefined;
  const atyp = buf.readUInt8(3);
  let host: string;
  let addrEnd: number;
  if (atyp === ATYP_IPV4) {
    addrEnd = 4 + 4;
    if (buf.length < addrEnd + 2) return undefined;
    host = [...buf.subarray(4, addrEnd)].join('.');
  } else if (atyp === ATYP_DOMAIN) {
    addrEnd = 5 + buf.readUInt8(4);
    if (buf.length < addrEnd + 2) return undefined;
    host = buf.subarray(5, addrEnd).toString('latin1');
  } else if (atyp === ATYP_IPV6) {
    addrEnd = 4 + 16;
    if (buf.length < addrEnd + 2) return undefined;
    const words: string[] = [];
    for (let i = 4; i < addrEnd; i += 2) words.push(buf.readUInt16BE(i).toString(16));
    host = words.join(':');
  } else {
    throw new Error(`SOCKS5: unknown address type ${atyp}`);
  }
  return { cmd: buf.readUInt8(1), host, port: buf.readUInt16BE(addrEnd), length: addrEnd + 2 };
}

export async function startSocks5Proxy(): Promise<EgressProxy> {
  const hits: ProxyHit[] = [];
  const sockets = socketTracker();

  const server = createNetServer((client) => {
    sockets.add(client);
    client.on('error', () => client.destroy());
    let buf = Buffer.alloc(0);
    let stage: 'greeting' | 'request' = 'greeting';

    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 'greeting') {
        // VER NMETHODS METHODS…
        if (buf.length < 2) return;
        const n = buf.readUInt8(1);
        if (buf.length < 2 + n) return;
        if (buf.readUInt8(0) !== VERSION || !buf.subarray(2, 2 + n).includes(NO_AUTH)) {
          client.end(Buffer.from([VERSION, NO_ACCEPTABLE_METHOD]));
          return;
        }
        buf = buf.subarray(2 + n);
        stage = 'request';
        client.write(Buffer.from([VERSION, NO_AUTH]));
      }
      let req;
      try {
        req = parseSocksRequest(buf);
      } catch {
        client.destroy();
        return;
      }
      if (req === undefined) return;
      client.off('data', onData);
      client.pause();
      if (req.cmd !== CMD_CONNECT) {
        client.end(socksReply(REP_COMMAND_NOT_SUPPORTED));
        return;
      }
      const target = req.host.includes(':') ? `[${req.host}]:${req.port}` : `${req.host}:${req.port}`;
      hits.push({ kind: 'CONNECT', target });
      const rest = buf.subarray(req.length);
      const upstream = connect({ host: req.host, port: req.port });
      sockets.add(upstream);
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        client.write(socksReply(REP_SUCCEEDED));
        if (rest.length > 0) upstream.write(rest);
        splice(client, upstream);
        client.resume();
      });
      upstream.once('error', () => {
        if (!connected) client.end(socksReply(REP_HOST_UNREACHABLE));
      });
    };
    client.on('data', onData);
  });

  const port = await listen(server);
  return {
    url: `socks5://127.0.0.1:${port}`,
    port,
    hits,
    async stop() {
      sockets.destroyAll();
      await closeServer(server);
    },
  };
}
