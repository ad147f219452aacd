import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStandInTokens } from './stand-in-tokens.ts';

test('a stand-in token is valid for its upstream until it expires, and for no other', () => {
  let t = 1_000_000_000_000;
  const tokens = createStandInTokens({ ttlSec: 300, now: () => t });
  const { token, expiresIn } = tokens.issue('docker.io');
  assert.equal(expiresIn, 300);
  assert.match(token, /^docxy\./);
  assert.ok(tokens.valid(token, 'docker.io'));
  assert.ok(!tokens.valid(token, 'quay.io'), 'bound to its upstream');
  t += 299_000;
  assert.ok(tokens.valid(token, 'docker.io'));
  t += 2_000;
  assert.ok(!tokens.valid(token, 'docker.io'), 'expired');
});

test('forged, edited and foreign stand-in tokens are refused', () => {
  const tokens = createStandInTokens();
  const { token } = tokens.issue('docker.io');
  const [prefix, expiry, nonce, mac] = token.split('.');
  assert.ok(!tokens.valid(`${prefix}.${String(Number(expiry) + 3600)}.${nonce}.${mac}`, 'docker.io'));
  assert.ok(!tokens.valid('docxy.forged', 'docker.io'));
  assert.ok(!tokens.valid('docxy.', 'docker.io'));
  assert.ok(!createStandInTokens().valid(token, 'docker.io'), 'another process key');
});
