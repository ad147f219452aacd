/**
 * Docxy started in the test process on 127.0.0.1 port 0, with its log lines captured so tests can
 * assert on them (cache results, no credentials). Real clients reach it over TCP like any other
 * server; tests must therefore drive those clients asynchronously.
 */
import { Writable } from 'node:stream';
import { createApp, type App, type AppOverrides } from '../../src/app.ts';
import { deepMerge, validateConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { makeTmpDir } from './tmp.ts';

export interface TestDocxy {
  readonly app: App;
  /** Where the test reaches it (the bound loopback address). */
  readonly url: string;
  /** The public URL Docxy builds realms from (configured, or the bound address). */
  readonly publicUrl: string;
  readonly port: number;
  /** `127.0.0.1:PORT`, as clients name the mirror. */
  readonly hostPort: string;
  /** Every log line so far, parsed. */
  logs(): Record<string, unknown>[];
  /** The raw log text, for greps (e.g. that no credential appears). */
  logText(): string;
  /** The per-request log lines (msg "request"). */
  requestLogs(): Record<string, unknown>[];
  /** Where the request log stands now; pass to `requestsSince`/`describeSince` for what a step caused. */
  logMark(): number;
  /** The request log lines since `mark`. */
  requestsSince(mark: number): Record<string, unknown>[];
  /** The request paths logged since `mark`. */
  pathsSince(mark: number): string[];
  /** The request log lines since `mark`, one `describeRequest` per line, for assertion messages. */
  describeSince(mark: number): string;
  /** The cache directory in use. */
  readonly dataDir: string;
  /** Stops Docxy and removes the cache directory it was given by default. */
  stop(): Promise<void>;
}

/** One request log line, for assertion messages. */
export function describeRequest(l: Record<string, unknown>): string {
  return `${String(l.method)} ${String(l.path)} -> ${String(l.upstream)} ${String(l.status)} cache=${String(l.cache)} (${String(l.bytes)} B)`;
}

export async function startDocxy(config: ConfigInput, overrides: AppOverrides = {}): Promise<TestDocxy> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(l);
      cb();
    },
  });
  // Each instance gets its own cache directory unless the test names one (restart tests do).
  const dataDir = config.data === undefined ? makeTmpDir('data') : undefined;
  const base = { listen: '127.0.0.1:0', log_level: 'info', data: dataDir?.path };
  let cfg;
  let app;
  let publicUrl;
  try {
    cfg = validateConfig(deepMerge(base, config), 'test');
    app = createApp(cfg, createLogger(cfg.log_level, sink), overrides);
    publicUrl = await app.listen();
  } catch (err) {
    // A Docxy that did not start must not leave its cache directory behind.
    await app?.close().catch(() => undefined);
    dataDir?.remove();
    throw err;
  }
  const address = app.server.server.address();
  if (address === null || typeof address === 'string') throw new Error('docxy is not listening on TCP');
  const port = address.port;
  const url = `http://127.0.0.1:${port}`;
  const parsed = (): Record<string, unknown>[] => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const requestLogs = (): Record<string, unknown>[] => parsed().filter((l) => l.msg === 'request');
  return {
    app,
    url,
    publicUrl,
    port,
    hostPort: `127.0.0.1:${port}`,
    logs: parsed,
    logText: () => lines.join('\n'),
    requestLogs,
    logMark: () => requestLogs().length,
    requestsSince: (mark) => requestLogs().slice(mark),
    pathsSince: (mark) =>
      requestLogs()
        .slice(mark)
        .map((l) => String(l.path)),
    describeSince: (mark) => requestLogs().slice(mark).map(describeRequest).join('\n'),
    dataDir: cfg.data,
    async stop() {
      await app.close();
      dataDir?.remove();
    },
  };
}
