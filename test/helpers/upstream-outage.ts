/**
 * The fake hub taken down entirely — registry AND token service — for the tests that pull from the
 * cache alone, and the check that it then saw nothing: no registry access-log line, no CDN
 * request, no token request.
 */
import assert from 'node:assert/strict';

import { need } from './client-steps.ts';
import { parseRegistryLog, type FakeHub } from './fake-hub.ts';

export interface UpstreamOutage {
  /** Fails unless the registry is still stopped and neither it, the CDN nor the token service was asked anything. */
  assertUntouched(): void;
}

/** Stops the hub's registry and token service (the CDN stays up, to count what reaches it). */
export async function stopUpstream(hub: FakeHub): Promise<UpstreamOutage> {
  // Flushed while the registry still runs, so the count is complete.
  const registryBefore = (await hub.registryRequests()).length;
  await hub.stopRegistry();
  await hub.token.stop();
  const cdn = need(hub.cdn, 'the CDN stand-in');
  const cdnBefore = cdn.requests.length;
  const tokenBefore = hub.token.requests.length;
  return {
    assertUntouched() {
      // A stopped registry writes no access log (and cannot be flushed), so its log stands still.
      assert.equal(hub.registryPid(), undefined, 'the registry is still stopped');
      assert.equal(parseRegistryLog(hub.registryLog()).length, registryBefore, 'registry access log');
      assert.deepEqual(
        cdn.requests.slice(cdnBefore).map((r) => `${r.method} ${r.path}`),
        [],
        'no CDN request while the upstream was down',
      );
      assert.equal(hub.token.requests.length, tokenBefore, 'no token request reached the token service');
    },
  };
}
