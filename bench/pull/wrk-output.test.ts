// Scenario D reads wrk's text output: requests, duration, errors, and the --latency percentiles.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWrk, wrkMs } from './scenario-d.ts';

const OUTPUT = `Running 10s test @ http://127.0.0.1:40435/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.02ms  30.12ms   90.12%
    Req/Sec    13.35k     1.20k   15.80k    70.00%
  Latency Distribution
     50%  850.00us
     75%    2.71ms
     90%    3.28ms
     99%    1.02s
  265734 requests in 10.00s, 250.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  26573.40
Transfer/sec:     25.01MB
`;

test('wrk output: requests, seconds, every kind of error, p50 and p99 in ms', () => {
  assert.deepEqual(parseWrk(OUTPUT), { requests: 265734, secs: 10, errors: 6, p50Ms: 0.85, p99Ms: 1020 });
});

test('wrk output without errors or with a duration in minutes', () => {
  const clean = OUTPUT.replace(/ {2}Socket errors.*\n {2}Non-2xx.*\n/, '').replace('in 10.00s', 'in 1.50m');
  assert.deepEqual(parseWrk(clean), { requests: 265734, secs: 90, errors: 0, p50Ms: 0.85, p99Ms: 1020 });
});

test('wrk output without --latency or totals is refused, not read as zero', () => {
  assert.throws(() => parseWrk(OUTPUT.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, '')), /unreadable/);
  assert.throws(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused'), /unreadable/);
  assert.ok(Number.isNaN(wrkMs('12parsecs')));
});
