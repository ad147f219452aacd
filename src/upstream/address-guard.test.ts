import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createAddressGuard,
  isSpecialAddress,
  refusedAddressCode,
  resolvesToSpecial,
  type AddressGuard,
} from './address-guard.ts';

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

test('the connect lookup refuses a special address unless the host is configured or private is allowed', async () => {
  const answers: Record<string, string> = { 'cdn.example': '127.0.0.1', 'pub.example': '93.184.216.34' };
  const resolve = (h: string): Promise<{ address: string; family: number }[]> =>
    Promise.resolve([{ address: answers[h] ?? '0.0.0.0', family: 4 }]);
  const lookup = (g: AddressGuard, host: string, all: boolean): Promise<unknown> =>
    new Promise((res, rej) => {
      g.lookup(host, { all }, (err, address, family) => {
        if (err) rej(err);
        else res(all ? address : { address, family });
      });
    });
  const guard = createAddressGuard({
    configured: ['https://registry.example'],
    allowPrivate: false,
    resolve,
  });
  await assert.rejects(lookup(guard, 'cdn.example', true), { code: refusedAddressCode });
  await assert.rejects(lookup(guard, 'cdn.example', false), { code: refusedAddressCode });
  assert.deepEqual(await lookup(guard, 'pub.example', false), { address: '93.184.216.34', family: 4 });
  assert.deepEqual(await lookup(guard, 'pub.example', true), [{ address: '93.184.216.34', family: 4 }]);
  answers['registry.example'] = '10.0.0.5';
  assert.deepEqual(await lookup(guard, 'registry.example', false), { address: '10.0.0.5', family: 4 });
  const open = createAddressGuard({ configured: ['https://registry.example'], allowPrivate: true, resolve });
  assert.deepEqual(await lookup(open, 'cdn.example', false), { address: '127.0.0.1', family: 4 });
});
