import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from '../registry/errors.ts';
import { createRouter, hostName } from './router.ts';

const up = (name: string, hosts: string[] = [], libraryPrefix = false, prefix = name) => ({
  name,
  config: { hosts, prefix, libraryPrefix },
});
const hub = up('docker.io', ['hub.mirror.example'], true);
const ghcr = up('ghcr.io', ['ghcr.mirror.example']);
const quay = up('quay.io', [], false, 'q');
const router = createRouter([hub, ghcr, quay], 'docker.io');

function code(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (err) {
    return err instanceof RegistryError ? err.code : 'other';
  }
}

test('host names route first, ignoring the port and case', () => {
  assert.equal(router.route('GHCR.mirror.example:5000', undefined, 'owner/img').upstream, ghcr);
  assert.equal(router.route('ghcr.mirror.example', 'docker.io', 'owner/img').upstream, ghcr);
  assert.equal(hostName('[::1]:5000'), '::1');
});

test('containerd ns routes by registry name; an unknown ns is NAME_UNKNOWN', () => {
  assert.deepEqual(router.route('127.0.0.1:5000', 'ghcr.io', 'owner/img'), {
    upstream: ghcr,
    name: 'owner/img',
  });
  assert.deepEqual(router.route(undefined, 'docker.io', 'alpine'), { upstream: hub, name: 'library/alpine' });
  assert.equal(
    code(() => router.route(undefined, 'evil.example', 'x/y')),
    'NAME_UNKNOWN',
  );
  assert.equal(
    code(() => router.upstreamFor(undefined, 'evil.example')),
    'NAME_UNKNOWN',
  );
});

test('a path prefix routes and is removed; a host-like unknown prefix is NAME_UNKNOWN', () => {
  assert.deepEqual(router.route(undefined, undefined, 'ghcr.io/owner/img'), {
    upstream: ghcr,
    name: 'owner/img',
  });
  assert.deepEqual(router.route(undefined, undefined, 'q/org/img'), { upstream: quay, name: 'org/img' });
  assert.deepEqual(router.route(undefined, undefined, 'docker.io/alpine'), {
    upstream: hub,
    name: 'library/alpine',
  });
  assert.equal(
    code(() => router.route(undefined, undefined, 'evil.example/x/y')),
    'NAME_UNKNOWN',
  );
  assert.equal(
    code(() => router.route(undefined, undefined, 'localhost/x')),
    'NAME_UNKNOWN',
  );
});

test('everything else goes to the default upstream', () => {
  assert.deepEqual(router.route('127.0.0.1:5000', undefined, 'alpine'), {
    upstream: hub,
    name: 'library/alpine',
  });
  assert.deepEqual(router.route(undefined, undefined, 'someuser/app'), {
    upstream: hub,
    name: 'someuser/app',
  });
  assert.equal(router.upstreamFor('other.example', undefined), hub);
});
