/**
 * The deployment modes of docs/deployment.md, with the exact files the docs show:
 *
 *   behind nginx -- Debian's nginx with test/fixtures/deploy/nginx.conf (placeholders filled with
 *                   test addresses) terminates TLS with a test-CA certificate and proxies to Docxy
 *                   running behind-nginx.yaml over plain HTTP. dockerd (trusting the CA in certs.d)
 *                   pulls through nginx, and Docxy's request log shows the client's address from
 *                   X-Forwarded-For: dockerd connects to nginx over ::1 while nginx connects to
 *                   Docxy from 127.0.0.1, so the two are told apart. A client's own
 *                   X-Forwarded-For is appended to; Docxy takes the right-most address that is not
 *                   a trusted proxy.
 *   CDN origin   -- cdn-origin.yaml: X-Forwarded-For is believed only from the CDN's ranges, and
 *                   token realms point at the CDN URL.
 *   fixtures     -- every test/fixtures/deploy/*.yaml passes `docxy config check`, and
 *                   docs/deployment.md contains every fixture verbatim.
 *   Dockerfile   -- copies only files that exist, builds with the package's build script, runs as
 *                   a non-root user (the image itself cannot be built here: no Docker engine).
 *   systemd      -- deploy/docxy.service passes `systemd-analyze verify`, and its stop timeout is
 *                   longer than every fixture's shutdown_timeout.
 *
 * Everything listens on loopback (nginx on 127.0.0.1 and ::1, see tls.test.ts for why dockerd
 * needs ::1), and is stopped in after hooks.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { deepMerge, readConfigFile, validateConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { need } from '../helpers/client-steps.ts';
import { runCommand } from '../helpers/clients/common.ts';
import { startDockerd, type Dockerd } from '../helpers/clients/dockerd.ts';
import { startDocxy, type TestDocxy } from '../helpers/docxy.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { TINY, seedImages, type ImageDescriptor } from '../helpers/images.ts';
import { freePort, startProcess, waitFor, waitForPort, type Managed } from '../helpers/process.ts';
import { createTestCa, type TestCa } from '../helpers/test-ca.ts';
import { makeTmpDir } from '../helpers/tmp.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const ENTRY = join(REPO_ROOT, 'test', 'helpers', 'docxy-entry.ts');
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'deploy');
const fixture = (name: string): string => join(FIXTURES, name);
/** A fixture with a test's addresses and paths on top, as startDocxy takes it. */
const fromFixture = (name: string, overrides: Record<string, unknown>): ConfigInput =>
  deepMerge(readConfigFile(fixture(name)), overrides);

/** Waits for Docxy's request log line for `path` and returns it. */
async function requestLine(docxy: TestDocxy, path: string): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitFor(`Docxy's log line for ${path}`, () => {
    line = docxy.requestLogs().find((l) => l.path === path);
    return line !== undefined;
  });
  return need(line, `the log line for ${path}`);
}

// ---------------------------------------------------------------------------------------------

let hub: FakeHub | undefined;
let tiny: ImageDescriptor | undefined;
const theHub = (): FakeHub => need(hub, 'the fake hub');

before(async () => {
  hub = await startFakeHub();
  tiny = (await seedImages(hub, ['tiny'])).tiny;
});

after(async () => {
  await hub?.stop();
});

describe('behind nginx', () => {
  let ca: TestCa | undefined;
  let docxy: TestDocxy | undefined;
  let nginx: Managed | undefined;
  let dockerd: Dockerd | undefined;
  let port = 0;
  const prefix = makeTmpDir('nginx');
  const certsDir = makeTmpDir('deploy-certs-d');
  const theDocxy = (): TestDocxy => need(docxy, 'docxy');

  before(async () => {
    ca = await createTestCa();
    const cert = await ca.issue({ name: 'nginx', sans: ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'] });
    port = await freePort();
    const docxyPort = await freePort();
    docxy = await startDocxy(
      fromFixture('behind-nginx.yaml', {
        listen: `127.0.0.1:${docxyPort}`,
        public_url: `https://localhost:${port}`,
        data: join(prefix.path, 'docxy-data'),
        upstream: { url: theHub().registryUrl },
      }),
    );

    const conf = readFileSync(fixture('nginx.conf'), 'utf8')
      .replaceAll('{{PREFIX}}', prefix.path)
      .replaceAll('{{LISTEN}}', `127.0.0.1:${port}`)
      .replaceAll('{{LISTEN6}}', `[::1]:${port}`)
      .replaceAll('{{SERVER_NAME}}', 'localhost')
      .replaceAll('{{CERT}}', cert.certFile)
      .replaceAll('{{KEY}}', cert.keyFile)
      .replaceAll('{{DOCXY}}', `127.0.0.1:${docxyPort}`);
    assert.doesNotMatch(conf, /\{\{[A-Z0-9]+\}\}/, 'every placeholder is filled');
    writeFileSync(join(prefix.path, 'nginx.conf'), conf);
    nginx = startProcess(
      'nginx',
      '/usr/sbin/nginx',
      ['-p', prefix.path, '-c', join(prefix.path, 'nginx.conf'), '-e', 'stderr', '-g', 'daemon off;'],
      { logFile: join(prefix.path, 'nginx.out') },
    );
    await waitForPort(port, '127.0.0.1', 10_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${need(nginx, 'nginx').log()}`);
    });
    await waitForPort(port, '::1', 10_000);

    dockerd = await startDockerd({ certsDir: certsDir.path, hosts: '::1 localhost\n' });
    mkdirSync(join(certsDir.path, `localhost:${port}`));
    writeFileSync(join(certsDir.path, `localhost:${port}`, 'ca.crt'), ca.certPem);
  });

  after(async () => {
    const results = await Promise.allSettled([dockerd?.stop(), nginx?.stop(), docxy?.stop()]);
    ca?.remove();
    certsDir.remove();
    prefix.remove();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  });

  const nginxAccessLog = (): string => {
    try {
      return readFileSync(join(prefix.path, 'access.log'), 'utf8');
    } catch {
      return '';
    }
  };

  /** curl through nginx with a forged X-Forwarded-For; returns the HTTP status. */
  async function curlWithForgedXff(host: string, path: string): Promise<string> {
    const res = await runCommand('curl', [
      '-sS',
      '--cacert',
      need(ca, 'the CA').certFile,
      '-H',
      'X-Forwarded-For: 203.0.113.7',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `https://${host}:${port}${path}`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    return res.stdout;
  }

  it('serves a docker pull through nginx, logging the client address nginx forwards', async (t) => {
    const d = need(dockerd, 'dockerd');
    const ref = `localhost:${port}/library/tiny:1`;
    const t0 = Date.now();
    const res = await d.pull(ref);
    t.diagnostic(`docker pull through nginx: ${Date.now() - t0} ms`);
    assert.equal(res.code, 0, `docker pull failed:\n${res.stdout}\n${res.stderr}\n${d.log().slice(-3000)}`);
    const image = need(tiny, 'library/tiny:1');
    assert.equal(await d.imageId(ref), image.configDigest);
    assert.deepEqual(await d.repoDigests(ref), [`localhost:${port}/library/tiny@${image.digest}`]);

    const layer = TINY.layers[0]?.digest ?? '';
    assert.match(
      nginxAccessLog(),
      new RegExp(`^::1 "GET /v2/library/tiny/blobs/${layer} HTTP/1.1" 200 `, 'm'),
    );
    const lines = theDocxy()
      .requestLogs()
      .filter((l) => String(l.path).startsWith('/v2/library/tiny/'));
    assert.ok(lines.some((l) => l.path === `/v2/library/tiny/blobs/${layer}` && l.status === 200));
    // dockerd reached nginx over ::1; nginx reached Docxy from 127.0.0.1 and said so in
    // X-Forwarded-For, which Docxy believes from 127.0.0.1.
    assert.deepEqual([...new Set(lines.map((l) => l.ip))], ['::1'], JSON.stringify(lines));
  });

  it('appends to a client X-Forwarded-For; Docxy logs 203.0.113.7 only because 127.0.0.1 (nginx, and here the client) is trusted', async () => {
    assert.equal(await curlWithForgedXff('127.0.0.1', '/xff-probe-v4'), '404');
    assert.match(
      nginxAccessLog(),
      /^127\.0\.0\.1 "GET \/xff-probe-v4 HTTP\/2\.0" 404 \d+ xff="203\.0\.113\.7"$/m,
    );
    // Forwarded as "203.0.113.7, 127.0.0.1": both hops from the right are trusted.
    assert.equal((await requestLine(theDocxy(), '/xff-probe-v4')).ip, '203.0.113.7');
  });

  it('does not believe a forged X-Forwarded-For beyond the first untrusted address', async () => {
    assert.equal(await curlWithForgedXff('[::1]', '/xff-probe-v6'), '404');
    // Forwarded as "203.0.113.7, ::1": ::1 is not a trusted proxy, so it is the client.
    assert.equal((await requestLine(theDocxy(), '/xff-probe-v6')).ip, '::1');
  });

  it('believes X-Forwarded-For from any local process, which is why behind-nginx.yaml listens on loopback only', async () => {
    const listen = readConfigFile(fixture('behind-nginx.yaml')).listen;
    assert.match(String(listen), /^127\.0\.0\.1:/);
    const res = await fetch(`${theDocxy().url}/xff-probe-direct`, {
      headers: { 'x-forwarded-for': '203.0.113.7' },
    });
    await res.body?.cancel();
    assert.equal((await requestLine(theDocxy(), '/xff-probe-direct')).ip, '203.0.113.7');
  });
});

// ---------------------------------------------------------------------------------------------

describe('X-Forwarded-For from addresses that are not trusted', () => {
  it('is ignored with trust_proxy empty: Docxy logs the peer, 127.0.0.1', async (t) => {
    const docxy = await startDocxy(
      fromFixture('behind-nginx.yaml', { listen: '127.0.0.1:0', trust_proxy: [], public_url: undefined }),
    );
    t.after(() => docxy.stop());
    const res = await fetch(`${docxy.url}/xff-probe-untrusted`, {
      headers: { 'x-forwarded-for': '203.0.113.7' },
    });
    await res.body?.cancel();
    assert.equal((await requestLine(docxy, '/xff-probe-untrusted')).ip, '127.0.0.1');
  });

  it('is ignored by a CDN origin from anything but the CDN, whose URL is in the token realm', async (t) => {
    const cdn = readConfigFile(fixture('cdn-origin.yaml'));
    const docxy = await startDocxy(
      fromFixture('cdn-origin.yaml', { listen: '127.0.0.1:0', upstream: { url: theHub().registryUrl } }),
    );
    t.after(() => docxy.stop());
    const res = await fetch(`${docxy.url}/v2/`, {
      headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example' },
    });
    await res.body?.cancel();
    // The realm comes from the configured public_url (the CDN), not from any request header.
    assert.equal(res.status, 401);
    assert.match(
      res.headers.get('www-authenticate') ?? '',
      new RegExp(`^Bearer realm="${String(cdn.public_url).replaceAll('.', '\\.')}/auth/token"`),
    );
    const line = await requestLine(docxy, '/v2/');
    assert.equal(line.ip, '127.0.0.1', 'a direct client cannot choose its logged address');
  });
});

// ---------------------------------------------------------------------------------------------

describe('deployment files', () => {
  const yamlFixtures = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.yaml'))
    .sort();

  it('has the four configurations docs/deployment.md describes', () => {
    assert.deepEqual(yamlFixtures, [
      'behind-nginx.yaml',
      'cdn-origin.yaml',
      'standalone-acme.yaml',
      'standalone-files.yaml',
    ]);
  });

  it('validates every fixture and config.example.yaml with `docxy config check`', async () => {
    const files = [...yamlFixtures.map(fixture), join(REPO_ROOT, 'config.example.yaml')];
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const results = await Promise.all(
      files.map((f) =>
        runCommand(process.execPath, ['--import', 'tsx', ENTRY, 'config', 'check', f], {
          cwd: REPO_ROOT,
          env,
          timeoutMs: 60_000,
        }),
      ),
    );
    results.forEach((r, i) => {
      const f = files[i] ?? '';
      assert.equal(r.code, 0, `${f}:\n${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, `${f}: ok\n`);
    });
  });

  it('shows every fixture verbatim in docs/deployment.md', () => {
    const docs = readFileSync(join(REPO_ROOT, 'docs', 'deployment.md'), 'utf8');
    for (const f of [...yamlFixtures, 'nginx.conf']) {
      const text = readFileSync(fixture(f), 'utf8').trimEnd();
      assert.ok(docs.includes(text), `docs/deployment.md must contain test/fixtures/deploy/${f} as it is`);
    }
    for (const f of ['deploy/docxy.service']) {
      const text = readFileSync(join(REPO_ROOT, f), 'utf8').trimEnd();
      assert.ok(docs.includes(text), `docs/deployment.md must contain ${f} as it is`);
    }
  });

  /** Dockerfile instructions (continuation lines joined), per stage. */
  function dockerfileStages(): { from: string; lines: string[] }[] {
    const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
    const stages: { from: string; lines: string[] }[] = [];
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      if (/^FROM\s/i.test(line)) stages.push({ from: line, lines: [] });
      else stages.at(-1)?.lines.push(line);
    }
    return stages;
  }

  it('has a Dockerfile that copies only files that exist and are not .dockerignored', () => {
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const sources = dockerfileStages()
      .flatMap((s) => s.lines)
      .filter((l) => /^(COPY|ADD)\s/i.test(l) && !/--from=/.test(l))
      .flatMap((l) => {
        const words = l
          .split(/\s+/)
          .slice(1)
          .filter((w) => !w.startsWith('--'));
        return words.slice(0, -1);
      });
    assert.ok(sources.length >= 5, `COPY sources: ${sources.join(' ')}`);
    for (const src of sources) {
      assert.ok(existsSync(join(REPO_ROOT, src)), `COPY ${src}: no such file in the repository`);
      assert.ok(!ignored.includes(src.replace(/\/$/, '')), `COPY ${src}, but .dockerignore excludes it`);
    }
    for (const heavy of ['node_modules', 'dist', '.git', 'data']) {
      assert.ok(ignored.includes(heavy), `.dockerignore keeps ${heavy} out of the build context`);
    }
  });

  it('builds in one stage and runs production dependencies as a non-root user in another', () => {
    const stages = dockerfileStages();
    assert.equal(stages.length, 2);
    const [build, runtime] = stages as [{ from: string; lines: string[] }, { from: string; lines: string[] }];
    // Both stages build on NODE_IMAGE, by default the public Node image of a supported LTS major
    // (container-image.test.ts builds on a local base passed as the build argument).
    const arg = /^ARG NODE_IMAGE=node:(\d+)-bookworm-slim$/m.exec(
      readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'),
    );
    assert.ok(arg !== null, 'ARG NODE_IMAGE=node:<major>-bookworm-slim before the first FROM');
    assert.ok(Number(arg[1]) >= 22 && Number(arg[1]) % 2 === 0, `node:${arg[1]} is a supported LTS major`);
    assert.match(build.from, /^FROM \$\{NODE_IMAGE\} AS build$/);
    assert.ok(build.lines.includes('RUN npm ci --no-audit --no-fund'));
    assert.ok(build.lines.includes('RUN npm run build'));
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
      bin: Record<string, string>;
    };
    assert.equal(typeof pkg.scripts.build, 'string', 'package.json has the build script');

    assert.match(runtime.from, /^FROM \$\{NODE_IMAGE\} AS runtime$/);
    assert.ok(runtime.lines.some((l) => /^RUN npm ci --omit=dev\b/.test(l)));
    assert.ok(runtime.lines.includes('COPY --from=build /src/dist ./dist'));
    // tsconfig.build.json compiles src/ into dist/, which bin/docxy.js loads.
    assert.match(readFileSync(join(REPO_ROOT, 'bin', 'docxy.js'), 'utf8'), /from '\.\.\/dist\/main\.js'/);
    assert.equal(pkg.bin.docxy, 'bin/docxy.js');

    const users = runtime.lines.filter((l) => /^USER\s/.test(l));
    assert.equal(users.length, 1);
    const user = (users[0] ?? '').split(/\s+/)[1] ?? '';
    assert.ok(!['root', '0', '0:0', 'root:root'].includes(user), `USER ${user} is not root`);
    const afterUser = runtime.lines.slice(runtime.lines.indexOf(users[0] ?? ''));
    assert.ok(!afterUser.some((l) => /^RUN\s/.test(l)), 'nothing runs as root after USER');
    assert.ok(runtime.lines.includes('EXPOSE 5000 443 80'));
    assert.ok(runtime.lines.includes('VOLUME /var/lib/docxy'));
    assert.equal(runtime.lines.at(-1), 'CMD ["docxy", "serve", "--config", "/etc/docxy/config.yaml"]');
  });

  /** The unit file's `Key=value` lines (comments dropped), in order. */
  function unitEntries(): [string, string][] {
    return readFileSync(join(REPO_ROOT, 'deploy', 'docxy.service'), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Za-z]+=/.test(l))
      .map((l) => {
        const i = l.indexOf('=');
        return [l.slice(0, i), l.slice(i + 1)];
      });
  }

  it('has a systemd unit that systemd-analyze verify accepts without a warning', async (t) => {
    const which = await runCommand('sh', ['-c', 'command -v systemd-analyze']);
    const entries = unitEntries();
    const execStart = entries.find(([k]) => k === 'ExecStart')?.[1] ?? '';
    assert.equal(execStart, '/usr/local/bin/docxy serve --config /etc/docxy/config.yaml');
    if (which.code !== 0) {
      // No systemd here: check the unit's syntax ourselves (sections and known keys).
      t.diagnostic('systemd-analyze is not installed: checked the unit syntax only');
      const text = readFileSync(join(REPO_ROOT, 'deploy', 'docxy.service'), 'utf8');
      assert.deepEqual(text.match(/^\[\w+\]$/gm), ['[Unit]', '[Service]', '[Install]']);
      assert.ok(entries.every(([k, v]) => k !== '' && v !== ''));
      return;
    }
    // verify checks that ExecStart's program exists: point it at a stand-in, nothing else changes.
    const tmp = makeTmpDir('unit');
    t.after(() => {
      tmp.remove();
    });
    const stub = join(tmp.path, 'docxy');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const unit = readFileSync(join(REPO_ROOT, 'deploy', 'docxy.service'), 'utf8').replace(
      /^ExecStart=\/usr\/local\/bin\/docxy /m,
      `ExecStart=${stub} `,
    );
    writeFileSync(join(tmp.path, 'docxy.service'), unit);
    const res = await runCommand('systemd-analyze', ['verify', '--man=no', join(tmp.path, 'docxy.service')]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stderr.trim(), '', 'no warnings');
    const security = await runCommand('systemd-analyze', [
      'security',
      '--offline=true',
      '--no-pager',
      join(tmp.path, 'docxy.service'),
    ]);
    const level = /Overall exposure level for docxy\.service: ([\d.]+) (\w+)/.exec(security.stdout);
    t.diagnostic(`systemd-analyze security: ${level?.[1] ?? '?'} ${level?.[2] ?? '?'}`);
    assert.equal(level?.[2], 'OK', security.stdout.slice(-2000));
  });

  it('has a systemd unit that reloads with SIGHUP, binds low ports without root and outlasts shutdown_timeout', () => {
    const entries = unitEntries();
    const one = (k: string): string | undefined => entries.find(([key]) => key === k)?.[1];
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('StateDirectory'), 'docxy');
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['SystemCallFilter', '@system-service'],
      ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
    ] as const) {
      assert.ok(
        entries.some(([key, value]) => key === k && value === v),
        `${k}=${v}`,
      );
    }
    const stopMs = Number(/^(\d+)s$/.exec(one('TimeoutStopSec') ?? '')?.[1]) * 1000;
    assert.ok(stopMs > 0, 'TimeoutStopSec in seconds');
    for (const f of yamlFixtures) {
      const shutdown = validateConfig(readConfigFile(fixture(f)), f, {}).shutdown_timeout;
      assert.ok(stopMs > shutdown, `TimeoutStopSec (${stopMs} ms) > ${f} shutdown_timeout (${shutdown} ms)`);
    }
  });
});
