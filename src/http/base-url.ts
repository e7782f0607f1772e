import type { FastifyRequest } from 'fastify';

/**
 * The base URL to put in links handed to devices: `--public-url` when set, else the host the
 * device itself used to reach us (so a device on the provisioning LAN gets a LAN address).
 */
export function baseUrlFor(request: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ?? `${request.protocol}://${request.host}`;
}
