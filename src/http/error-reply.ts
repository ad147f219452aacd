/**
 * The one error renderer: every error becomes the OCI error body with its status; nothing else
 * (no stack, no internal message) reaches a client.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../registry/errors.ts';

/** Maps errors fastify itself raises (body too large, bad content) onto the error table. */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const fe = err as Partial<FastifyError> | null;
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status === 404) return new RegistryError('NOT_FOUND');
  if (status === 413)
    return new RegistryError('SIZE_INVALID', { status: 413, message: 'request body too large' });
  if (status >= 400 && status < 500)
    return new RegistryError('UNSUPPORTED', { status, message: 'bad request' });
  return new RegistryError('UNKNOWN');
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const re = toRegistryError(err);
  if (re.code === 'UNKNOWN') request.log.error({ err }, 'internal error');
  return reply
    .code(re.status)
    .headers({ ...re.headers, 'docker-distribution-api-version': 'registry/2.0' })
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(re.toBody()));
}

/** The same body on a plain `node:http` listener (the metrics and cluster listeners). */
export function sendRawError(res: ServerResponse, err: RegistryError): void {
  const body = JSON.stringify(err.toBody());
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
