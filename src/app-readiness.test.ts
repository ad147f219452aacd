import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { upstreamReadiness } from './app-readiness.ts';

describe('upstream readiness', () => {
  const base = {
    name: 'u',
    lastErrorMessage: undefined,
    latencyMs: undefined,
    ratelimitRemaining: undefined,
    ratelimitLimit: undefined,
  };
  it('unknown before any answer, then whichever came last', () => {
    assert.equal(
      upstreamReadiness({ ...base, lastSuccess: undefined, lastError: undefined }).reachable,
      null,
    );
    assert.equal(
      upstreamReadiness({ ...base, lastSuccess: '2026-01-01T00:00:01.000Z', lastError: undefined }).reachable,
      true,
    );
    assert.equal(
      upstreamReadiness({ ...base, lastSuccess: undefined, lastError: '2026-01-01T00:00:01.000Z' }).reachable,
      false,
    );
    const both = { ...base, lastSuccess: '2026-01-01T00:00:01.000Z', lastError: '2026-01-01T00:00:02.000Z' };
    assert.equal(upstreamReadiness(both).reachable, false);
    assert.equal(upstreamReadiness({ ...both, lastSuccess: '2026-01-01T00:00:03.000Z' }).reachable, true);
  });
});
