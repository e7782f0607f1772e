import type { onRequestHookHandler } from 'fastify';
import { AppError } from '../shared/errors.js';
import { tokensEqual } from '../shared/tokens.js';
import { adminTokenPath } from './token.js';

/** Requires `Authorization: Bearer <admin token>` on every admin API request. */
export function requireAdminToken(token: string, dataDir: string): onRequestHookHandler {
  return async (request, reply) => {
    const header = request.headers.authorization;
    if (!header) {
      reply.header('www-authenticate', 'Bearer');
      throw new AppError(401, 'unauthorized', `this admin API needs "Authorization: Bearer <token>"; the token is in ${adminTokenPath(dataDir)}`);
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match || !tokensEqual(token, match[1])) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new AppError(401, 'unauthorized', 'the bearer token is not valid for this server');
    }
  };
}
