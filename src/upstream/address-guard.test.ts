import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSpecialAddress, resolvesToSpecial } from './address-guard.ts';

test('loopback, link-local, private and mapped addresses are special; public ones are not', () => {
  for (const a of [
    '127.0.0.1',
    '169.254.169.254',
    '10.1.2.3',
    '172.20.0.1',
    '192.168.1.1',
    '::1',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '0.0.0.0',
  ]) {
    assert.ok(isSpecialAddress(a), a);
  }
  for (const a of ['8.8.8.8', '104.16.0.1', '2606:4700::1']) assert.ok(!isSpecialAddress(a), a);
});

test('host names: localhost and IP literals without DNS', async () => {
  assert.ok(await resolvesToSpecial('localhost'));
  assert.ok(await resolvesToSpecial('[::1]'));
  assert.ok(await resolvesToSpecial('169.254.169.254'));
  assert.ok(!(await resolvesToSpecial('93.184.216.34')));
});
