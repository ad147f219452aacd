import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mapScope, withLibraryPrefix } from './library-prefix.ts';

test('one-component names gain library/ when the prefix is on', () => {
  assert.equal(withLibraryPrefix('alpine', true), 'library/alpine');
  assert.equal(withLibraryPrefix('someuser/app', true), 'someuser/app');
  assert.equal(withLibraryPrefix('alpine', false), 'alpine');
});

test('token scopes gain library/ for one-component repository names only', () => {
  assert.equal(mapScope('repository:alpine:pull', true), 'repository:library/alpine:pull');
  assert.equal(mapScope('repository:a/b:pull,push', true), 'repository:a/b:pull,push');
  assert.equal(mapScope('repository(plugin):x:pull', true), 'repository(plugin):library/x:pull');
  assert.equal(mapScope('registry:catalog:*', true), 'registry:catalog:*');
  assert.equal(
    mapScope('repository:alpine:pull repository:b/c:pull', true),
    'repository:library/alpine:pull repository:b/c:pull',
  );
  assert.equal(mapScope('repository:alpine:pull', false), 'repository:alpine:pull');
});
