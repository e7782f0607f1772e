import type { FastifyInstance } from 'fastify';

/**
 * For a plugin scope whose routes take stream bodies (images, backups): no parser reads the
 * body, whatever its Content-Type, and no body-size limit applies; the handler streams
 * `request.raw` to disk itself.
 */
export function acceptRawBodies(scope: FastifyInstance): void {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
}
