import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, flatLineRedact } from './logger.ts';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { stream, lines };
}

test('the process logger redacts credentials at the top level and one level down', () => {
  const out = capture();
  const log = createLogger('info', out.stream);
  log.info({ token: 't', req: { authorization: 'Bearer x' }, headers: { authorization: 'y' }, a: 1 }, 'm');
  const line = out.lines()[0] ?? {};
  assert.equal(line.token, '[redacted]');
  assert.deepEqual(line.req, { authorization: '[redacted]' });
  assert.deepEqual(line.headers, { authorization: '[redacted]' });
  assert.equal(line.a, 1);
});

test('a flat-line child still redacts top-level credentials', () => {
  const out = capture();
  const log = createLogger('info', out.stream).child({}, { redact: flatLineRedact });
  log.info({ password: 'p', authorization: 'a', token: 't', path: '/v2/x', status: 200 }, 'request');
  const line = out.lines()[0] ?? {};
  assert.deepEqual(
    [line.password, line.authorization, line.token, line.path, line.status],
    ['[redacted]', '[redacted]', '[redacted]', '/v2/x', 200],
  );
});
