import type { Clock } from '../shared/clock.js';

const FORGET_AFTER_MS = 15 * 60 * 1000;
const MAX_DELAY_MS = 8_000;

/**
 * Slows password guessing: each failed login from an address doubles the wait before the next
 * answer (0.5 s, 1 s, 2 s … up to 8 s); a success or 15 quiet minutes forgets the failures.
 */
export function createLoginThrottle(clock: Clock) {
  const failures = new Map<string, { count: number; last: number }>();

  return {
    /** How long to hold the answer to a failed attempt from `address` (it counts the failure). */
    failed(address: string): number {
      const now = clock.now();
      const previous = failures.get(address);
      const count = previous && now - previous.last < FORGET_AFTER_MS ? previous.count + 1 : 1;
      failures.set(address, { count, last: now });
      if (failures.size > 10_000) failures.clear();
      return Math.min(MAX_DELAY_MS, 500 * 2 ** (count - 1));
    },
    succeeded(address: string) {
      failures.delete(address);
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
