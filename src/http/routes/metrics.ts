/** `GET /metrics`: the Prometheus scrape, only for allowed client addresses (others get 403). */
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../observability/metrics.ts';
import { RegistryError } from '../../registry/errors.ts';
import type { AddressAllow } from '../address-allow.ts';

export function registerMetricsRoute(
  app: FastifyInstance,
  deps: { metrics: Metrics; allow?: AddressAllow },
): void {
  app.get('/metrics', async (request, reply) => {
    request.ctx.route = 'metrics';
    if (deps.allow !== undefined && !deps.allow(request.ip)) {
      throw new RegistryError('DENIED', { message: `metrics are not served to ${request.ip}` });
    }
    const { contentType, body } = await deps.metrics.scrape();
    return reply.type(contentType).send(body);
  });
}
