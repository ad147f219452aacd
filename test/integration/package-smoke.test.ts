/**
 * What ships is what is tested: `npm pack`, the tarball installed with `npm install --omit=dev`
 * into an empty directory (packed-install.ts), and every feature a user reaches first run from
 * THAT install's `node_modules/.bin/docxy` as its own process — never the source tree:
 *
 *   package      -- the tarball holds bin/, the compiled src/ and the docs only; the install has
 *                   the dependencies and none of the devDependencies
 *   serve        -- the embedded default (filesystem cache in ./data) with --upstream at the fake
 *                   Hub: a pull by HTTP with every digest checked, and skopeo copying through it
 *   CLI          -- cache ls (reading that ./data), config check (the shipped example and a bad
 *                   file), client-config, htpasswd add
 *   auth         -- `auth.anonymous: false` with the htpasswd file `htpasswd add` wrote: docker
 *                   login, then docker pull with Docxy's own tokens (jose, bcryptjs)
 *   TLS          -- cert/key files from the test CA; ACME (acme-client) against pebble
 *
 * Regression: `jose` was a devDependency, so a production install with auth on exited at start
 * with "Cannot find package 'jose'"; the source tree, with every devDependency, never showed it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';

import { need, parseLayoutIndex, layoutBlob, timed } from '../helpers/client-steps.ts';
import { startDockerd } from '../helpers/clients/dockerd.ts';
import { startSkopeo } from '../helpers/clients/skopeo.ts';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.ts';
import { httpGet, pullToken } from '../helpers/http.ts';
import { ACCEPT_ALL_MANIFESTS, TINY, SOMEUSER_APP, seedImages, sha256 } from '../helpers/images.ts';
import {
  REPO_ROOT,
  installedVersion,
  packAndInstall,
  type PackedDocxy,
  type PackedInstall,
} from '../helpers/packed-install.ts';
import { startPebble } from '../helpers/pebble.ts';
import { freePort } from '../helpers/process.ts';
import { createTestCa, type TestCa } from '../helpers/test-ca.ts';
import { makeTmpDir } from '../helpers/tmp.ts';
import { httpsGet, httpsPullToken, peerCertificate } from '../helpers/tls-client.ts';

let install: PackedInstall | undefined;
let hub: FakeHub | undefined;
let ca: TestCa | undefined;
const dir = makeTmpDir('package-smoke');
const theInstall = (): PackedInstall => need(install, 'the packed install');
const theHub = (): FakeHub => need(hub, 'the fake hub');
const theCa = (): TestCa => need(ca, 'the test CA');

before(async () => {
  const t0 = Date.now();
  install = await packAndInstall();
  // Printed on every run (the spec reporter shows the test file's stdout).
  console.log(
    `# packed ${install.files.length} files, tarball ${install.tarballBytes} bytes; ` +
      `pack ${install.packMs} ms, install --omit=dev ${install.installMs} ms (total ${Date.now() - t0} ms)`,
  );
  const t1 = Date.now();
  [hub, ca] = await Promise.all([startFakeHub(), createTestCa()]);
  await seedImages(hub, ['tiny', 'app']);
  console.log(`# fake hub, test CA and seeded images in ${Date.now() - t1} ms`);
});

after(async () => {
  const results = await Promise.allSettled([hub?.stop()]);
  ca?.remove();
  install?.remove();
  dir.remove();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
});

/** A fresh working directory for one Docxy (its ./data, its log). */
function workDir(name: string): string {
  const p = join(dir.path, name);
  mkdirSync(p);
  return p;
}

function writeYaml(file: string, value: unknown): string {
  writeFileSync(file, stringify(value));
  return file;
}

const show = (r: { code: number; stdout: string; stderr: string }): string =>
  `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('the package', () => {
  it('ships bin/docxy.js, the compiled src/ and the docs: no tests, bench, sources or maps', () => {
    const files = theInstall().files;
    const unexpected = files.filter(
      (f) => !/^(package\.json|README\.md|config\.example\.yaml|bin\/docxy\.js|dist\/.+\.js)$/.test(f),
    );
    assert.deepEqual(unexpected, [], 'files outside bin, dist/*.js and the docs');
    assert.deepEqual(
      files.filter((f) => /\.test\.|(^|\/)(test|bench)\//.test(f)),
      [],
      'no tests, no bench',
    );
    // dist/ is exactly the build of src/ (prepack cleans it first): nothing stale, nothing missing.
    const sources = (d: string): string[] =>
      readdirSync(join(REPO_ROOT, 'src', d), { withFileTypes: true }).flatMap((e) =>
        e.isDirectory()
          ? sources(join(d, e.name))
          : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')
            ? [join('dist', d, e.name.replace(/\.ts$/, '.js'))]
            : [],
      );
    assert.deepEqual(
      files.filter((f) => f.startsWith('dist/')),
      sources('').sort(),
    );
  });

  it('installs with --omit=dev: every dependency, none of the devDependencies', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    const modules = join(theInstall().prefix, 'node_modules');
    const missing = Object.keys(pkg.dependencies).filter((d) => !existsSync(join(modules, d)));
    assert.deepEqual(missing, [], 'dependencies not installed');
    const dev = Object.keys(pkg.devDependencies).filter((d) => existsSync(join(modules, d)));
    assert.deepEqual(dev, [], 'devDependencies in a production install');
  });

  it('docxy --version prints the package version', async () => {
    const r = await theInstall().run(['--version']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), installedVersion(theInstall()));
  });
});

describe('serve on the embedded default, --upstream at the fake Hub', () => {
  const cwd = join(dir.path, 'default');
  let docxy: PackedDocxy | undefined;
  const theDocxy = (): PackedDocxy => need(docxy, 'the packed docxy');

  before(async () => {
    mkdirSync(cwd);
    docxy = await theInstall().serve({ cwd, args: ['--upstream', theHub().registryUrl] });
  });
  after(async () => {
    await docxy?.stop();
  });

  it('is the installed bin running on the node the tests run on', () => {
    const d = theDocxy();
    assert.equal(realpathSync(`/proc/${d.proc.pid}/exe`), realpathSync(process.execPath));
    const cmdline = readFileSync(`/proc/${d.proc.pid}/cmdline`, 'utf8').split('\0');
    // `docxy serve` re-executed itself in place (same PID) with the memory settings node needs at start.
    assert.deepEqual(
      cmdline.slice(1, 4),
      ['--max-semi-space-size=6', theInstall().bin, 'serve'],
      `started from the install, re-executed with the memory defaults: ${cmdline.join(' ')}`,
    );
    const environ = readFileSync(`/proc/${d.proc.pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes('MALLOC_ARENA_MAX=1'), 'glibc arenas capped');
  });

  it('serves library/tiny:1 by HTTP: manifest, config and layer with their digests', async (t) => {
    const d = theDocxy();
    const token = await pullToken(`${d.url}/auth/token`, theHub().service, TINY.repo);
    const auth = { authorization: `Bearer ${token}` };
    const manifest = await timed(t, 'manifest', () =>
      httpGet(`${d.url}/v2/${TINY.repo}/manifests/${TINY.tag}`, {
        headers: { ...auth, accept: ACCEPT_ALL_MANIFESTS },
      }),
    );
    assert.equal(manifest.status, 200, manifest.body.toString());
    assert.equal(sha256(manifest.body), TINY.digest);
    for (const digest of [TINY.configDigest, ...TINY.layers.map((l) => l.digest)]) {
      const blob = await httpGet(`${d.url}/v2/${TINY.repo}/blobs/${digest}`, { headers: auth });
      assert.equal(blob.status, 200, `${digest}: ${blob.body.toString()}`);
      assert.equal(sha256(blob.body), digest);
    }
    assert.ok(existsSync(join(cwd, 'data')), 'the default data directory is ./data');
  });

  it('skopeo copies someuser/app:2 through it, every blob with its digest', async (t) => {
    const skopeo = await startSkopeo();
    t.after(() => skopeo.stop());
    const layout = join(skopeo.dir, 'layout');
    const r = await timed(t, 'skopeo copy', () =>
      skopeo.copy(`docker://${theDocxy().hostPort}/${SOMEUSER_APP.repo}:2`, `oci:${layout}:x`, {
        preserveDigests: true,
      }),
    );
    assert.equal(r.code, 0, `${r.stderr}\n${theDocxy().log()}`);
    const entry = parseLayoutIndex(readFileSync(join(layout, 'index.json'), 'utf8'))[0];
    assert.equal(entry?.digest, SOMEUSER_APP.digest);
    for (const digest of [SOMEUSER_APP.configDigest, ...SOMEUSER_APP.layers.map((l) => l.digest)]) {
      assert.equal(sha256(readFileSync(layoutBlob(layout, digest))), digest);
    }
  });

  it('cache ls, run in the same directory, lists both tags from ./data', async () => {
    const r = await theInstall().run(['cache', 'ls'], { cwd });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^UPSTREAM\s+REPOSITORY\s+TAG\s+DIGEST/);
    assert.match(r.stdout, new RegExp(`library/tiny\\s+1\\s+${TINY.digest.slice(0, 19)}`));
    assert.match(r.stdout, new RegExp(`someuser/app\\s+2\\s+${SOMEUSER_APP.digest.slice(0, 19)}`));
  });
});

describe('the other commands', () => {
  it('config check: the shipped config.example.yaml is ok; a bad file names the key path', async () => {
    const example = join(theInstall().packageDir, 'config.example.yaml');
    const ok = await theInstall().run(['config', 'check', example]);
    assert.equal(ok.code, 0, show(ok));
    const bad = writeYaml(join(dir.path, 'bad.yaml'), { upstream: { url: 'ftp://x' }, listen: 5 });
    const r = await theInstall().run(['config', 'check', bad]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout + r.stderr, /upstream\.url/);
  });

  it('client-config prints docker, containerd and podman snippets for the public URL', async () => {
    const r = await theInstall().run(['client-config', '--public-url', 'http://mirror.example:5000']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /"registry-mirrors": \[\s*"http:\/\/mirror\.example:5000"\s*\]/);
    assert.match(r.stdout, /\[host\."http:\/\/mirror\.example:5000"\]/);
    assert.match(r.stdout, /location = "mirror\.example:5000"/);
  });
});

describe('auth.anonymous false: htpasswd add, docker login, docker pull', () => {
  const cwd = join(dir.path, 'auth');
  const htpasswd = join(cwd, 'htpasswd');
  const user = { name: 'dora', password: 'dora-secret-pw' };

  before(() => {
    mkdirSync(cwd);
  });

  it('htpasswd add writes a bcrypt entry, the password read from stdin', async () => {
    const r = await theInstall().run(['htpasswd', 'add', htpasswd, user.name], {
      input: `${user.password}\n`,
    });
    assert.equal(r.code, 0, show(r));
    assert.match(readFileSync(htpasswd, 'utf8'), /^dora:\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n$/);
  });

  it('docker login with that user, then docker pull with the tokens Docxy issued', async (t) => {
    const config = writeYaml(join(cwd, 'config.yaml'), {
      upstream: { url: theHub().registryUrl },
      auth: { anonymous: false, htpasswd },
    });
    const d = await theInstall().serve({ cwd, args: ['--config', config] });
    t.after(() => d.stop());
    const docker = await startDockerd({ insecureRegistries: [d.hostPort] });
    t.after(() => docker.stop());
    const anonymous = await docker.pull(`${d.hostPort}/tiny:1`);
    assert.notEqual(anonymous.code, 0, 'an anonymous pull is refused');
    const login = await timed(t, 'docker login', () => docker.login(d.hostPort, user.name, user.password));
    assert.equal(login.code, 0, `${login.stderr}\n${d.log()}`);
    const pull = await timed(t, 'docker pull', () => docker.pull(`${d.hostPort}/tiny:1`));
    assert.equal(pull.code, 0, `${pull.stderr}\n${d.log()}`);
    assert.equal(await docker.imageId(`${d.hostPort}/tiny:1`), TINY.configDigest);
    assert.ok(
      d.logs().some((l) => l.path === '/v2/tiny/manifests/1' && l.status === 200 && l.user === user.name),
      'the manifest was served to the logged-in user',
    );
  });
});

describe('TLS', () => {
  it('serves HTTPS from cert and key files; a manifest over it', async () => {
    const cwd = workDir('tls');
    const cert = await theCa().issue({ name: 'packed' });
    const config = writeYaml(join(cwd, 'config.yaml'), {
      upstream: { url: theHub().registryUrl },
      tls: { cert: cert.certFile, key: cert.keyFile },
    });
    const d = await theInstall().serve({ cwd, args: ['--config', config] });
    try {
      const peer = await peerCertificate({ port: d.port, ca: theCa().certPem });
      assert.ok(peer.authorized, String(peer.authorizationError));
      assert.equal(peer.serial, cert.serial);
      const base = `https://localhost:${d.port}`;
      const token = await httpsPullToken(base, theCa().certPem, theHub().service, TINY.repo);
      const m = await httpsGet(`${base}/v2/${TINY.repo}/manifests/1`, {
        ca: theCa().certPem,
        headers: { authorization: `Bearer ${token}`, accept: ACCEPT_ALL_MANIFESTS },
      });
      assert.equal(m.status, 200, m.body.toString());
      assert.equal(sha256(m.body), TINY.digest);
    } finally {
      await d.stop();
    }
  });

  it('ACME: obtains a certificate from pebble over HTTP-01 before it serves', async (t) => {
    const cwd = workDir('acme');
    const domain = 'registry.example.com';
    const httpPort = await freePort();
    const pebble = await startPebble({ ca: theCa(), httpPort });
    t.after(() => pebble.stop());
    const port = await freePort();
    const config = writeYaml(join(cwd, 'config.yaml'), {
      listen: `127.0.0.1:${port}`,
      http_listen: `127.0.0.1:${httpPort}`,
      public_url: `https://${domain}`,
      upstream: { url: theHub().registryUrl },
      tls: {
        acme: { domains: [domain], directory_url: pebble.directoryUrl, directory_ca_file: theCa().certFile },
      },
    });
    const d = await timed(t, 'start with ACME issuance', () =>
      theInstall().serve({ cwd, port, listen: false, args: ['--config', config], startTimeoutMs: 60_000 }),
    );
    t.after(() => d.stop());
    const peer = await peerCertificate({ port, servername: domain, ca: await pebble.rootPem() });
    assert.ok(peer.authorized, `pebble's root accepts it: ${String(peer.authorizationError)}\n${d.log()}`);
    assert.equal(peer.subjectAltName, `DNS:${domain}`);
    assert.ok(existsSync(join(cwd, 'data', 'acme')), 'kept in ./data/acme');
  });
});
