import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import { forbidden } from '../shared/errors.js';

const originOf = (url: string) => {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
};

/** This server's origin as the request's browser saw it: scheme and Host (RFC 6454 §4). */
const ownOrigin = (request: FastifyRequest) => originOf(`${request.protocol}://${request.host}`);

/**
 * Refuses device-API requests that a browser marks as coming from a page of another origin, so a
 * web page an operator opens cannot drive the device API from inside the LAN: Fetch Metadata's
 * `Sec-Fetch-Site: cross-site|same-site` (W3C Fetch Metadata §2.1), or an `Origin` header
 * (RFC 6454 §7) other than this server's. curl and busybox send neither header.
 */
export function crossOriginGuard(): onRequestHookHandler {
  return async (request) => {
    const site = request.headers['sec-fetch-site'];
    const origin = request.headers.origin;
    const foreign =
      site === 'cross-site' || site === 'same-site' || (origin !== undefined && (originOf(origin) ?? 'null') !== ownOrigin(request));
    if (foreign) throw forbidden('the device API does not answer requests from web pages of another site; devices call it directly');
  };
}
