/** Runs the Coordination conformance suite against the in-process implementation. */
import { createMemoryCoordination } from '../../src/coordination/memory/memory-coordination.ts';
import { runCoordinationConformance, testClock } from './coordination-suite.ts';

runCoordinationConformance('in-process', () => {
  // One process is the whole fleet: both replicas' views are the one instance.
  const c = createMemoryCoordination({ now: testClock });
  return Promise.resolve({ a: c, b: c, settle: () => Promise.resolve(), cleanup: () => c.close() });
});
