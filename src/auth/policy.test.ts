import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPolicy, globToRegExp } from './policy.ts';

const anon = { kind: 'anonymous' } as const;
const alice = { kind: 'user', name: 'alice' } as const;
const bob = { kind: 'user', name: 'bob' } as const;

test('globs: * stays within a component, ** crosses them', () => {
  assert.ok(globToRegExp('library/*').test('library/alpine'));
  assert.ok(!globToRegExp('library/*').test('library/a/b'));
  assert.ok(globToRegExp('myorg/**').test('myorg/a/b'));
  assert.ok(!globToRegExp('myorg/**').test('myorgx/a'));
  assert.ok(!globToRegExp('a.b').test('axb'));
});

test('no rules: everyone may pull everything on the open mirror, only users when auth is on', () => {
  assert.ok(createPolicy([], {}).allows(anon, 'docker.io', 'x/y'));
  const authed = createPolicy([], {}, { anonymousByDefault: false });
  assert.ok(!authed.allows(anon, 'docker.io', 'x/y'));
  assert.ok(authed.allows(alice, 'docker.io', 'x/y'));
});

test('rules: allow per principal and upstream, deny wins, groups resolve', () => {
  const p = createPolicy(
    [
      { upstream: 'docker.io', allow: ['library/*'], deny: [], who: 'anonymous' },
      { upstream: '*', allow: ['**'], deny: ['secret/**'], who: ['alice', 'group:ci'] },
    ],
    { ci: ['bob'] },
  );
  assert.ok(p.allows(anon, 'docker.io', 'library/alpine'));
  assert.ok(!p.allows(anon, 'docker.io', 'someuser/app'));
  assert.ok(!p.allows(anon, 'ghcr.io', 'library/alpine'));
  assert.ok(p.allows(alice, 'ghcr.io', 'owner/img'));
  assert.ok(!p.allows(alice, 'docker.io', 'secret/x'));
  assert.ok(p.allows(bob, 'quay.io', 'org/img'));
  assert.ok(!p.allows({ kind: 'user', name: 'carol' }, 'docker.io', 'library/alpine'));
});
