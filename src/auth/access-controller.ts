/**
 * Client-side access control for `/v2/` and Docxy's token endpoint.
 *
 * Open mirror (`auth.anonymous: true`, the default): every client is anonymous; the policy still
 * applies, and a denied repository is 403 before any upstream contact or cache read.
 *
 * Authenticated mirror (`auth.anonymous: false`): `/auth/token` checks Basic credentials against
 * htpasswd and config users (failed logins slowed down and audited) and issues Docxy's own token
 * with the access the policy grants; `/v2/*` requires such a token whose `access` covers the
 * request: otherwise 401 with a challenge naming the needed scope, or 403 DENIED when the
 * principal is known but not allowed.
 */
import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import { withLibraryPrefix } from '../routing/library-prefix.ts';
import type { UpstreamRuntime } from '../upstream/runtime.ts';
import type { UserStore } from './htpasswd.ts';
import type { Policy, Principal } from './policy.ts';
import type { RateLimiter } from './rate-limit.ts';
import { parseScopes } from './scopes.ts';
import type { AccessEntry, TokenService } from './token-service.ts';

export interface AccessController {
  /** True when clients must present Docxy tokens (their Authorization is then never sent upstream). */
  readonly authenticated: boolean;
  /**
   * May this request pull `clientName` (the repository as the client named it) from `up`?
   * Without a name: may it use the registry at all (`/v2/`). Throws 401/403/429.
   */
  authorize(request: FastifyRequest, up: UpstreamRuntime, clientName?: string): Promise<Principal>;
  /** Answers `/auth/token` when the mirror is authenticated. */
  issueToken(
    request: FastifyRequest,
    up: UpstreamRuntime,
    params: URLSearchParams,
  ): Promise<Record<string, unknown>>;
}

export interface AccessControllerDeps {
  readonly authenticated: boolean;
  readonly service: string;
  /** Docxy's token signer (a promise: the key is imported asynchronously at start). */
  readonly tokens?: Promise<TokenService>;
  readonly users: UserStore;
  readonly policy: Policy;
  readonly limiter: RateLimiter;
  readonly publicUrl: () => string;
  readonly log: Logger;
}

/** The repository at the upstream, from the name a client used in a scope or path. */
export function remoteNameFor(up: UpstreamRuntime, clientName: string): string {
  const prefixed = clientName.startsWith(`${up.config.prefix}/`)
    ? clientName.slice(up.config.prefix.length + 1)
    : clientName;
  return withLibraryPrefix(prefixed, up.config.libraryPrefix);
}

/** The user and password of an `Authorization: Basic` header. */
export function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  if (header?.toLowerCase().startsWith('basic ') !== true) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i < 0 ? undefined : { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

export function createAccessController(deps: AccessControllerDeps): AccessController {
  const { log } = deps;

  function audit(request: FastifyRequest, event: string, fields: Record<string, unknown>): void {
    log.warn({ audit: true, event, ip: request.ip, reqId: request.id, ...fields }, 'audit');
  }

  function challenge(
    up: UpstreamRuntime,
    clientName: string | undefined,
    error?: string,
  ): Record<string, string> {
    const scope = clientName === undefined ? '' : `,scope="repository:${clientName}:pull"`;
    const err = error === undefined ? '' : `,error="${error}"`;
    return {
      'www-authenticate': `Bearer realm="${deps.publicUrl()}${up.tokenPath}",service="${deps.service}"${scope}${err}`,
    };
  }

  function deny(
    request: FastifyRequest,
    principal: Principal,
    up: UpstreamRuntime,
    repository: string,
  ): RegistryError {
    audit(request, 'denied', {
      user: principal.kind === 'user' ? principal.name : undefined,
      upstream: up.name,
      repository,
      reason: 'policy',
    });
    return new RegistryError('DENIED', {
      message: `access to ${repository} is denied`,
      detail: { repository },
    });
  }

  return {
    authenticated: deps.authenticated,

    async authorize(request, up, clientName) {
      const remote = clientName === undefined ? undefined : remoteNameFor(up, clientName);
      const tokens = await deps.tokens;
      if (!deps.authenticated || tokens === undefined) {
        const anon: Principal = { kind: 'anonymous' };
        deps.limiter.request(request.ip, undefined);
        if (remote !== undefined && !deps.policy.allows(anon, up.name, remote))
          throw deny(request, anon, up, remote);
        return anon;
      }
      const header = request.headers.authorization;
      if (header?.startsWith('Bearer ') !== true) {
        deps.limiter.request(request.ip, undefined);
        throw new RegistryError('UNAUTHORIZED', { headers: challenge(up, clientName) });
      }
      let verified;
      try {
        verified = await tokens.verify(header.slice(7).trim());
      } catch (err) {
        deps.limiter.request(request.ip, undefined);
        audit(request, 'auth_failed', {
          upstream: up.name,
          repository: remote,
          reason: `invalid token: ${(err as Error).message}`,
        });
        throw new RegistryError('UNAUTHORIZED', {
          message: 'invalid or expired token',
          headers: challenge(up, clientName, 'invalid_token'),
        });
      }
      const principal: Principal =
        verified.subject === '' ? { kind: 'anonymous' } : { kind: 'user', name: verified.subject };
      deps.limiter.request(request.ip, principal.kind === 'user' ? principal.name : undefined);
      if (verified.upstream !== up.name) {
        audit(request, 'auth_failed', {
          user: verified.subject,
          upstream: up.name,
          reason: `token is for upstream ${verified.upstream}`,
        });
        throw new RegistryError('UNAUTHORIZED', {
          message: 'token is for another upstream',
          headers: challenge(up, clientName, 'invalid_token'),
        });
      }
      if (clientName === undefined || remote === undefined) return principal;
      const covered = verified.access.some(
        (a) => a.type === 'repository' && a.name === clientName && a.actions.includes('pull'),
      );
      if (!deps.policy.allows(principal, up.name, remote)) throw deny(request, principal, up, remote);
      if (!covered)
        throw new RegistryError('UNAUTHORIZED', {
          message: 'token does not cover this repository',
          headers: challenge(up, clientName, 'insufficient_scope'),
        });
      return principal;
    },

    async issueToken(request, up, params) {
      const tokens = await deps.tokens;
      if (tokens === undefined) throw new RegistryError('NOT_FOUND');
      // Docker's OAuth2 form (POST) carries the credentials in the body; GET uses Basic.
      const form = typeof request.body === 'string' ? new URLSearchParams(request.body) : undefined;
      const creds =
        basicCredentials(request.headers.authorization) ??
        (form?.get('grant_type') === 'password'
          ? { user: form.get('username') ?? '', password: form.get('password') ?? '' }
          : undefined);
      const wait = deps.limiter.loginDelay(request.ip, creds?.user);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      let principal: Principal = { kind: 'anonymous' };
      if (creds !== undefined) {
        if (!(await deps.users.verify(creds.user, creds.password))) {
          deps.limiter.loginFailed(request.ip, creds.user);
          audit(request, 'auth_failed', {
            user: creds.user,
            upstream: up.name,
            reason: 'wrong user or password',
          });
          throw new RegistryError('UNAUTHORIZED', { message: 'wrong user name or password' });
        }
        principal = { kind: 'user', name: creds.user };
      }
      const requested = parseScopes([...params.getAll('scope'), ...(form?.getAll('scope') ?? [])]);
      const access: AccessEntry[] = [];
      for (const s of requested) {
        if (s.type !== 'repository') continue;
        // Docxy is read-only: only pull is ever granted, and only where the policy allows it.
        if (!s.actions.includes('pull')) continue;
        const remote = remoteNameFor(up, s.name);
        if (deps.policy.allows(principal, up.name, remote))
          access.push({ type: 'repository', name: s.name, actions: ['pull'] });
        else
          audit(request, 'denied', {
            user: principal.kind === 'user' ? principal.name : undefined,
            upstream: up.name,
            repository: remote,
            reason: 'policy (token)',
          });
      }
      const t = await tokens.issue({
        subject: principal.kind === 'user' ? principal.name : '',
        upstream: up.name,
        access,
      });
      return { token: t.token, access_token: t.token, expires_in: t.expiresIn, issued_at: t.issuedAt };
    },
  };
}
