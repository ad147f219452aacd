/**
 * The request-path counters are plain numbers handed to prom-client at scrape time; the scrape
 * (parsed with a Prometheus text parser) must still show exactly what was recorded, by label.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseScrape } from '../../test/helpers/prometheus.ts';
import { createMetrics, type RequestSample } from './metrics.ts';

const sample = (over: Partial<RequestSample>): RequestSample => ({
  route: 'manifest',
  method: 'GET',
  status: 200,
  cache: 'hit',
  bytes: 0,
  seconds: 0.002,
  ...over,
});

async function scrapeOf(m: ReturnType<typeof createMetrics>) {
  return parseScrape((await m.scrape()).body);
}

describe('metrics', () => {
  it('counts requests by route, method, status class and cache result', async () => {
    const m = createMetrics({ maxSizeBytes: 1024, processMetrics: false });
    for (let i = 0; i < 3; i++) m.request(sample({ bytes: 100 }));
    m.request(sample({ route: 'blob', cache: 'miss', bytes: 5000, seconds: 0.3 }));
    m.request(sample({ status: 404, cache: 'none' }));
    m.request(sample({ method: 'HEAD', status: 304, cache: 'revalidated' }));
    m.request(sample({ status: 200, cache: 'stale', bytes: 7 }));
    m.request(sample({ route: 'token', status: 503, cache: 'bogus' as never }));
    const s = await scrapeOf(m);
    const req = 'docxy_http_requests_total';
    assert.equal(s.value(req), 8);
    assert.equal(s.value(req, { route: 'manifest', method: 'GET', status_class: '2xx', cache: 'hit' }), 3);
    assert.equal(s.value(req, { route: 'blob', status_class: '2xx', cache: 'miss' }), 1);
    assert.equal(s.value(req, { route: 'manifest', status_class: '4xx', cache: 'none' }), 1);
    assert.equal(s.value(req, { method: 'HEAD', status_class: '3xx', cache: 'revalidated' }), 1);
    assert.equal(s.value(req, { route: 'token', status_class: '5xx', cache: 'none' }), 1);
    assert.equal(s.value('docxy_http_response_bytes_total', { source: 'cache' }), 307);
    assert.equal(s.value('docxy_http_response_bytes_total', { source: 'upstream' }), 5000);
    assert.equal(s.value('docxy_stale_responses_total', { route: 'manifest' }), 1);
  });

  it('times requests in the duration histogram', async () => {
    const m = createMetrics({ maxSizeBytes: 1024, processMetrics: false });
    m.request(sample({ route: 'blob', seconds: 0.3 }));
    m.request(sample({ route: 'blob', seconds: 0.004 }));
    const s = await scrapeOf(m);
    const hist = s.families.find((f) => f.name === 'docxy_http_request_duration_seconds');
    // The parser keeps a histogram's buckets (cumulative counts by upper bound).
    const buckets = (hist?.metrics[0] as { buckets?: Record<string, string> } | undefined)?.buckets;
    assert.deepEqual(
      [buckets?.['0.001'], buckets?.['0.005'], buckets?.['0.25'], buckets?.['0.5'], buckets?.['+Inf']],
      ['0', '1', '1', '2', '2'],
    );
  });

  it('keeps counting across scrapes (totals, never deltas)', async () => {
    const m = createMetrics({ maxSizeBytes: 1024, processMetrics: false });
    m.request(sample({}));
    assert.equal((await scrapeOf(m)).value('docxy_http_requests_total'), 1);
    m.request(sample({}));
    m.request(sample({ route: 'blob' }));
    const s = await scrapeOf(m);
    assert.equal(s.value('docxy_http_requests_total'), 3);
    assert.equal(s.value('docxy_http_requests_total', { route: 'manifest' }), 2);
  });

  it('reports Redis coordination state and fallbacks by operation', async () => {
    const m = createMetrics({ maxSizeBytes: 1, processMetrics: false });
    m.coordination.redisUp(false);
    m.coordination.fallback('lease');
    m.coordination.fallback('lease');
    m.coordination.fallback('counters');
    let s = await scrapeOf(m);
    assert.equal(s.value('docxy_coordination_redis_up'), 0);
    assert.equal(s.value('docxy_coordination_fallback_total', { op: 'lease' }), 2);
    assert.equal(s.value('docxy_coordination_fallback_total', { op: 'counters' }), 1);
    m.coordination.redisUp(true);
    s = await scrapeOf(m);
    assert.equal(s.value('docxy_coordination_redis_up'), 1);
  });

  it('exports the Node process metrics unless told not to', async () => {
    const on = await scrapeOf(createMetrics({ maxSizeBytes: 1 }));
    assert.ok(on.has('docxy_process_cpu_seconds_total'));
    assert.ok(on.has('docxy_nodejs_eventloop_lag_seconds'));
    const off = await scrapeOf(createMetrics({ maxSizeBytes: 1, processMetrics: false }));
    assert.ok(!off.has('docxy_process_cpu_seconds_total'));
    assert.equal(off.value('docxy_cache_max_size_bytes'), 1);
  });
});
