/**
 * `GET /-/dashboard` (the page) and `GET /-/api/stats` (its read model). Who may see them: with
 * client authentication on or `dashboard.users` set, those users by HTTP Basic; otherwise the
 * client addresses in `dashboard.allow`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { basicCredentials } from '../../auth/basic-credentials.ts';
import type { UserStore } from '../../auth/htpasswd.ts';
import { dashboardPage } from '../../dashboard/page.ts';
import type { Stats } from '../../dashboard/stats.ts';
import { RegistryError } from '../../registry/errors.ts';
import type { AddressAllow } from '../address-allow.ts';

export interface DashboardAccess {
  /** Basic-auth users: any user of the store, or only the named ones. */
  readonly users?: { readonly store: UserStore; readonly only: readonly string[] };
  /** Otherwise these client addresses. */
  readonly allow: AddressAllow;
}

export function registerDashboardRoutes(
  app: FastifyInstance,
  deps: { stats: Stats; access: DashboardAccess },
): void {
  const { access } = deps;
  async function check(request: FastifyRequest): Promise<void> {
    request.ctx.route = 'dashboard';
    const users = access.users;
    if (users === undefined) {
      if (!access.allow(request.ip))
        throw new RegistryError('DENIED', { message: `the dashboard is not served to ${request.ip}` });
      return;
    }
    const creds = basicCredentials(request.headers.authorization);
    const challenge = { 'www-authenticate': 'Basic realm="Docxy dashboard", charset="UTF-8"' };
    if (creds === undefined) throw new RegistryError('UNAUTHORIZED', { headers: challenge });
    const ok = await users.store.verify(creds.user, creds.password);
    if (!ok) throw new RegistryError('UNAUTHORIZED', { headers: challenge });
    if (users.only.length > 0 && !users.only.includes(creds.user))
      throw new RegistryError('DENIED', { message: 'this user may not see the dashboard' });
    request.ctx.user = creds.user;
  }
  app.get('/-/dashboard', async (request, reply) => {
    await check(request);
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'self'; img-src data:; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
      )
      .send(dashboardPage);
  });
  app.get('/-/api/stats', async (request, reply) => {
    await check(request);
    return reply.header('cache-control', 'no-store').send(deps.stats.snapshot());
  });
}
