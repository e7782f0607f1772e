import type { Clock } from '../shared/clock.js';

/** How many password guesses the dashboard login allows. */
export interface LoginLimits {
  /** Failures from one address (each within `forgetAfterMs` of the last) before it is locked out. */
  failuresBeforeLockout: number;
  lockoutMs: number;
  forgetAfterMs: number;
  /** Failed guesses per minute over all addresses; beyond it every address waits. */
  globalFailuresPerMinute: number;
}

/**
 * One operator mistyping never meets these. One address gets 10 guesses per 15 minutes; the
 * global 30 a minute bounds guessing from many addresses (IPv6 hands out plenty) and keeps the
 * scrypt work a flood can cause to one hash every 2 s. The cost: a flood from many addresses can
 * keep the dashboard login shut; the admin token (CLI) still works.
 */
export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  failuresBeforeLockout: 10,
  lockoutMs: 15 * 60_000,
  forgetAfterMs: 15 * 60_000,
  globalFailuresPerMinute: 30,
};

/** The longest back-off; a longer wait is a lock-out. */
export const MAX_BACKOFF_MS = 8_000;
const MAX_ADDRESSES = 10_000;
const MINUTE = 60_000;

/** Why an attempt is refused before its password is even looked at, and for how long. */
export interface LoginRefusal {
  reason: 'in-flight' | 'backoff' | 'locked-out' | 'global';
  retryAfterMs: number;
}

interface AddressState {
  failures: number;
  lastFailure: number;
  /** No attempt from this address before this time. */
  notBefore: number;
}

/**
 * Limits password guessing before any hashing is done: one attempt in flight per address; after
 * a failure the next one waits 0.5 s, 1 s, 2 s … 8 s; after `failuresBeforeLockout` the address
 * is locked out; and failures over all addresses are capped per minute. A success or
 * `forgetAfterMs` without a failure forgets an address's failures.
 */
export function createLoginThrottle(clock: Clock, limits: LoginLimits = DEFAULT_LOGIN_LIMITS) {
  const addresses = new Map<string, AddressState>();
  const inFlight = new Set<string>();
  /** Times of the failures of the last minute, oldest first. */
  const recent: number[] = [];

  const stateOf = (address: string, now: number) => {
    const state = addresses.get(address);
    return state && now - state.lastFailure < limits.forgetAfterMs ? state : undefined;
  };
  const forgetOld = (now: number) => {
    while (recent.length > 0 && now - recent[0]! >= MINUTE) recent.shift();
    if (addresses.size <= MAX_ADDRESSES) return;
    for (const [address, state] of addresses) {
      if (now - state.lastFailure >= limits.forgetAfterMs || addresses.size > MAX_ADDRESSES) addresses.delete(address);
    }
  };

  return {
    /**
     * Whether `address` may have a password checked now. When it may, its attempt counts as in
     * flight until `failed`, `succeeded` or `released` is called for it.
     */
    admit(address: string): LoginRefusal | undefined {
      const now = clock.now();
      forgetOld(now);
      const state = stateOf(address, now);
      if (state && state.notBefore > now) {
        const reason = state.failures >= limits.failuresBeforeLockout ? 'locked-out' : 'backoff';
        return { reason, retryAfterMs: state.notBefore - now };
      }
      if (inFlight.has(address)) return { reason: 'in-flight', retryAfterMs: 1000 };
      if (recent.length + inFlight.size >= limits.globalFailuresPerMinute) {
        return { reason: 'global', retryAfterMs: recent.length > 0 ? recent[0]! + MINUTE - now : 1000 };
      }
      inFlight.add(address);
      return undefined;
    },
    /** Counts a wrong password; returns how long `address` must now wait before its next attempt. */
    failed(address: string): number {
      const now = clock.now();
      inFlight.delete(address);
      recent.push(now);
      const failures = (stateOf(address, now)?.failures ?? 0) + 1;
      const wait = failures >= limits.failuresBeforeLockout ? limits.lockoutMs : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (failures - 1));
      // Re-inserted so that the map's order stays oldest-first for forgetOld.
      addresses.delete(address);
      addresses.set(address, { failures, lastFailure: now, notBefore: now + wait });
      return wait;
    },
    succeeded(address: string) {
      inFlight.delete(address);
      addresses.delete(address);
    },
    /** The attempt ended without a verdict (the server was too busy to check it). */
    released(address: string) {
      inFlight.delete(address);
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
