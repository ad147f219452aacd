import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../observability/logger.ts';
import { lazyChildLogger } from './lazy-child-logger.ts';

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

/** The JSON lines without their `time`, which differs between two loggers by a millisecond. */
const lines = (text: string): unknown[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => ({ ...(JSON.parse(l) as Record<string, unknown>), time: 0 }));

test('a lazy child writes the same lines as pino child, redaction and level included', () => {
  const eager = sink();
  const lazy = sink();
  const a = createLogger('info', eager.stream).child({ reqId: 'r1' }, {});
  const b = lazyChildLogger(createLogger('info', lazy.stream), { reqId: 'r1' }, {});
  for (const l of [a, b]) {
    l.warn({ audit: true, req: { authorization: 'Bearer secret' } }, 'audit');
    l.error({ err: new Error('boom') }, 'internal error');
    l.debug('not at info');
    l.info('plain %s', 'message');
    l.child({ more: 1 }).info('grandchild');
  }
  assert.equal(b.level, 'info');
  assert.deepEqual(lines(lazy.text()).length, 4);
  assert.deepEqual(
    lines(lazy.text()).map((l) => JSON.stringify(l).replace(/"stack":"[^"]*"/, '')),
    lines(eager.text()).map((l) => JSON.stringify(l).replace(/"stack":"[^"]*"/, '')),
  );
  assert.ok(!lazy.text().includes('secret'));
});

test('a lazy child that is never used creates no pino child', () => {
  let children = 0;
  const parent = createLogger('info', sink().stream);
  const counting = Object.assign(Object.create(parent) as typeof parent, {
    child: (...args: Parameters<typeof parent.child>) => {
      children++;
      return parent.child(...args);
    },
  });
  const l = lazyChildLogger(counting, { reqId: 'r2' }, {});
  assert.equal(l.level, 'info');
  assert.equal(children, 0);
  l.info('now');
  l.info('again');
  assert.equal(children, 1);
});
