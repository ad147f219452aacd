/** `GET /health`: liveness for load balancers and orchestrators. */
import type { FastifyInstance } from 'fastify';
import { version } from '../../version.ts';

export function registerHealthRoute(app: FastifyInstance): void {
  app.get('/health', (_request, reply) => reply.send({ status: 'ok', version }));
}
