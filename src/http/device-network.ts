import type { onRequestHookHandler } from 'fastify';
import { forbidden } from '../shared/errors.js';
import type { AddressAllowList } from '../shared/network.js';
import { plainAddress } from '../shared/network.js';

/** Refuses device-API requests from outside `--device-network` (when it is set). */
export function deviceNetworkGuard(allowList: AddressAllowList): onRequestHookHandler {
  return async (request) => {
    if (allowList.cidrs.length === 0 || allowList.allows(request.ip)) return;
    throw forbidden(
      `${plainAddress(request.ip)} is not in the device network (${allowList.cidrs.join(', ')}); the device API only answers there`,
    );
  };
}
