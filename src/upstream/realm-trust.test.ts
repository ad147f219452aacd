import { test } from 'node:test';
import assert from 'node:assert/strict';
import { realmTrusted, registrableDomain } from './realm-trust.ts';

test('registrable domain is the last two labels; IPs and single labels stay whole', () => {
  assert.equal(registrableDomain('registry-1.docker.io'), 'docker.io');
  assert.equal(registrableDomain('auth.docker.io'), 'docker.io');
  assert.equal(registrableDomain('127.0.0.1'), '127.0.0.1');
  assert.equal(registrableDomain('localhost'), 'localhost');
});

test("Docker Hub's realm is trusted for its registry", () => {
  assert.ok(realmTrusted('https://auth.docker.io/token', 'https://registry-1.docker.io', []));
  assert.ok(realmTrusted('https://ghcr.io/token', 'https://ghcr.io', []));
});

test('a realm on another domain or another loopback name is not trusted unless listed', () => {
  assert.ok(!realmTrusted('https://evil.example/token', 'https://ghcr.io', []));
  assert.ok(!realmTrusted('http://localhost:9/token', 'http://127.0.0.1:5000', []));
  assert.ok(realmTrusted('http://127.0.0.1:9/token', 'http://127.0.0.1:5000', []));
  assert.ok(realmTrusted('https://login.example.net/t', 'https://reg.example.com', ['login.example.net']));
  assert.ok(!realmTrusted('not a url', 'https://ghcr.io', []));
});
