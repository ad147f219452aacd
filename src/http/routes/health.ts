/**
 * `GET /health`: liveness for load balancers and orchestrators. `GET /health/ready`: readiness
 * (storage writable; per-upstream state reported), 200 or 503 with the same JSON shape.
 */
import type { FastifyInstance } from 'fastify';
import type { Readiness } from '../../app-readiness.ts';
import { version } from '../../version.ts';

export function registerHealthRoute(app: FastifyInstance, ready: Readiness): void {
  app.get('/health', (_request, reply) => reply.send({ status: 'ok', version }));
  app.get('/health/ready', async (_request, reply) => {
    const { status, body } = await ready.check();
    return reply.code(status).header('cache-control', 'no-store').send(body);
  });
}
