import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { makeTmpDir } from '../../test/helpers/tmp.ts';
import { createUserStore, htpasswdAdd, parseHtpasswd } from './htpasswd.ts';

test('only bcrypt entries are accepted from an htpasswd file', () => {
  const users = parseHtpasswd('# c\nalice:$2y$10$abcdefghijklmnopqrstuv\nbob:$apr1$x$y\ncarol:plain\n\n');
  assert.deepEqual([...users.keys()], ['alice']);
});

test('htpasswd add writes $2y$ bcrypt that Apache htpasswd verifies, and replaces a user', () => {
  const dir = makeTmpDir('ht');
  try {
    const file = join(dir.path, 'htpasswd');
    htpasswdAdd(file, 'alice', 'first');
    htpasswdAdd(file, 'bob', 'other');
    htpasswdAdd(file, 'alice', 's3cret');
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines.find((l) => l.startsWith('alice:')) ?? '', /^alice:\$2y\$10\$/);
    execFileSync('htpasswd', ['-vb', file, 'alice', 's3cret'], { stdio: 'ignore' });
    assert.throws(() => {
      htpasswdAdd(file, 'a:b', 'x');
    });
  } finally {
    dir.remove();
  }
});

test('the user store verifies file and config users and picks up file changes', async () => {
  const dir = makeTmpDir('ht');
  try {
    const file = join(dir.path, 'htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', file, 'alice', 'pw1'], { stdio: 'ignore' });
    const store = createUserStore({
      htpasswd: file,
      users: [{ name: 'cfg', password_hash: bcrypt.hashSync('cfgpw', 4) }],
    });
    assert.ok(await store.verify('alice', 'pw1'));
    assert.ok(await store.verify('cfg', 'cfgpw'));
    assert.ok(!(await store.verify('cfg', 'pw1')));
    assert.ok(!(await store.verify('alice', 'nope')));
    assert.ok(!(await store.verify('nobody', 'pw1')));
    htpasswdAdd(file, 'dave', 'pw2');
    assert.ok(await store.verify('dave', 'pw2'));
  } finally {
    dir.remove();
  }
});
