import type { Logger } from 'pino';
import type { LeaseBook } from '../netboot/leases.js';
import type { Clock } from '../shared/clock.js';
import { forbidden } from '../shared/errors.js';
import { plainAddress } from '../shared/network.js';

/** A refused impersonation is logged once per MAC and address in this time, not per poll. */
const LOG_EVERY_MS = 60_000;

/**
 * Binds a device's calls to its DHCP lease. The device API needs no login, so any host on the
 * LAN could claim another device's MAC and take its job. Where this server hands out the
 * addresses, it knows which MAC holds which IP: a MAC may only speak from the address it leased,
 * and an address only for the MAC that leased it. Hosts outside the subnet, and addresses with
 * no lease at all (a static IP), are not bound: see the README for what that leaves open.
 */
export function createIdentityCheck(deps: { leases: LeaseBook | undefined; clock: Clock; log: Logger }) {
  const { leases, clock, log } = deps;
  const logged = new Map<string, number>();

  function refuse(mac: string, from: string, message: string): never {
    const key = `${mac} ${from}`;
    const now = clock.now();
    if ((logged.get(key) ?? 0) + LOG_EVERY_MS <= now) {
      if (logged.size > 10_000) logged.clear();
      logged.set(key, now);
      log.warn({ mac, from }, `refused a device call that does not match the DHCP leases: ${message}`);
    }
    throw forbidden(message);
  }

  return (mac: string, sourceIp: string) => {
    const from = plainAddress(sourceIp);
    if (!leases?.manages(from)) return;
    const leased = leases.ipOf(mac);
    if (leased !== undefined && leased !== from) {
      refuse(mac, from, `${mac} holds the DHCP lease for ${leased}, but this request came from ${from}: a device may only speak for itself`);
    }
    const holder = leases.macAt(from);
    if (holder !== undefined && holder !== mac) {
      refuse(mac, from, `${from} is leased to ${holder}, not to ${mac}: a device may only speak for itself`);
    }
  };
}

export type IdentityCheck = ReturnType<typeof createIdentityCheck>;
