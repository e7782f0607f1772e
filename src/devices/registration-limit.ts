import type { Clock } from '../shared/clock.js';
import { tooManyRequests } from '../shared/errors.js';

export interface RegistrationLimit {
  /** New devices (MACs not seen before) one source address may add per window; 0: no limit. */
  perAddress: number;
  windowMs: number;
}

export const DEFAULT_REGISTRATION_LIMIT: RegistrationLimit = { perAddress: 20, windowMs: 60_000 };

/** Addresses held before expired ones are dropped; then again each time the map doubles. */
const PRUNE_ABOVE = 1_000;

/**
 * Counts the new devices each source address adds in a sliding window. The device API needs no
 * login: without this, one host could fill the registry with made-up MACs. A known MAC costs
 * nothing here (a device's client registers again at every start).
 */
export function createRegistrationLimiter(limit: RegistrationLimit, clock: Clock) {
  const recent = new Map<string, number[]>(); // address → when it added each device in the window
  let pruneAbove = PRUNE_ABOVE;

  function prune(now: number) {
    for (const [address, times] of recent) if (times.at(-1)! <= now - limit.windowMs) recent.delete(address);
    pruneAbove = Math.max(PRUNE_ABOVE, recent.size * 2);
  }

  return {
    /** Counts one new device from `address`, or throws 429 when it has added its share already. */
    admit(address: string): void {
      if (limit.perAddress <= 0) return;
      const now = clock.now();
      const times = (recent.get(address) ?? []).filter((at) => at > now - limit.windowMs);
      if (times.length >= limit.perAddress) {
        const retryAfter = Math.max(1, Math.ceil((times[0]! + limit.windowMs - now) / 1000));
        throw tooManyRequests(
          `${address} added ${times.length} new devices in the last ${limit.windowMs / 1000} s, the most allowed; try again in ${retryAfter} s`,
          retryAfter,
        );
      }
      times.push(now);
      recent.set(address, times);
      if (recent.size > pruneAbove) prune(now);
    },
  };
}

export type RegistrationLimiter = ReturnType<typeof createRegistrationLimiter>;
