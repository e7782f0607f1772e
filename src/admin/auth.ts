import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { AppError } from '../shared/errors.js';
import { tokensEqual } from '../shared/tokens.js';
import { readCookie, SESSION_COOKIE, type Session, type SessionStore } from './sessions.js';
import { ADMIN_TOKEN_FILE } from './token.js';

export type Operator = { via: 'token' } | { via: 'session'; session: Session };

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FIELD = '_csrf';

/**
 * Who may use the admin API: a client with the bearer token (CLI, scripts), or a dashboard
 * session. A session's state-changing requests must also carry its CSRF token (header
 * X-CSRF-Token, or the `_csrf` form field for plain forms), which another site cannot read.
 */
export function createAdminAuth(deps: { adminToken: string; sessions: SessionStore }) {
  const { adminToken, sessions } = deps;

  /** The request's dashboard session, if its cookie names a live one (every page and API call asks: one read). */
  async function sessionOf(request: FastifyRequest): Promise<{ token: string; session: Session } | undefined> {
    const token = readCookie(request.headers.cookie, SESSION_COOKIE);
    const session = await sessions.lookup(token);
    return session && token ? { token, session } : undefined;
  }

  async function operator(request: FastifyRequest, reply: FastifyReply): Promise<Operator> {
    const header = request.headers.authorization;
    if (header) {
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      if (!match || !tokensEqual(adminToken, match[1])) {
        reply.header('www-authenticate', 'Bearer error="invalid_token"');
        throw new AppError(401, 'unauthorized', 'the bearer token is not valid for this server');
      }
      return { via: 'token' };
    }
    const found = await sessionOf(request);
    if (!found) {
      reply.header('www-authenticate', 'Bearer');
      throw new AppError(
        401,
        'unauthorized',
        // Where the token is, without the server's own path (error bodies never show paths).
        `this admin API needs "Authorization: Bearer <token>" (the token is in the ${ADMIN_TOKEN_FILE} file of the server's data folder) or a dashboard login`,
      );
    }
    return { via: 'session', session: found.session };
  }

  /** For a session, checks the CSRF token of a state-changing request. */
  function checkCsrf(request: FastifyRequest, session: Session, formValue?: unknown) {
    if (SAFE_METHODS.has(request.method)) return;
    const header = request.headers[CSRF_HEADER];
    const given = typeof header === 'string' ? header : typeof formValue === 'string' ? formValue : undefined;
    if (!tokensEqual(session.csrfToken, given)) {
      throw new AppError(403, 'csrf', 'this request lacks the CSRF token of your session; reload the page and try again');
    }
  }

  return {
    sessionOf,
    checkCsrf,
    /** onRequest hook of the admin API. */
    requireOperator: (async (request, reply) => {
      const who = await operator(request, reply);
      if (who.via === 'session') checkCsrf(request, who.session);
    }) as onRequestHookHandler,
  };
}

export type AdminAuth = ReturnType<typeof createAdminAuth>;
