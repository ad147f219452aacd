import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basicCredentials, isEmptyBasic } from './basic-credentials.ts';

const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;

test('an empty user with an empty password is no credential (anonymous)', () => {
  assert.equal(basicCredentials(basic(':')), undefined);
  assert.ok(isEmptyBasic(basic(':')));
  assert.ok(isEmptyBasic('basic Og=='));
});

test('any other pair is a credential, even with one half empty', () => {
  assert.deepEqual(basicCredentials(basic('alice:pw')), { user: 'alice', password: 'pw' });
  assert.deepEqual(basicCredentials(basic('alice:')), { user: 'alice', password: '' });
  assert.deepEqual(basicCredentials(basic(':pw')), { user: '', password: 'pw' });
  assert.ok(!isEmptyBasic(basic('alice:')));
  assert.ok(!isEmptyBasic('Bearer x'));
  assert.equal(basicCredentials('Bearer x'), undefined);
  assert.equal(basicCredentials(basic('no-colon')), undefined);
});
