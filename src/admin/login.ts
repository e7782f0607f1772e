import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../shared/errors.js';
import { MAX_BACKOFF_MS, type LoginRefusal, type LoginThrottle } from './login-throttle.js';
import type { PasswordStore } from './passwords.js';
import type { SessionStore } from './sessions.js';

export type LoginOutcome =
  | { ok: true; token: string }
  | { ok: false; status: 401 | 409 | 429 | 503; message: string; retryAfterSeconds?: number; noPassword?: boolean };

/** "4 s", "2 min": how long to wait, rounded up, as the login page says it. */
export function waitText(ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  return seconds < 60 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`;
}

const REFUSALS: Record<LoginRefusal['reason'], string> = {
  'in-flight': 'Another login attempt from your address is being checked',
  backoff: 'Too many attempts',
  'locked-out': 'Too many wrong passwords from your address',
  global: 'Too many failed logins on this server',
};

/**
 * A dashboard login attempt, in the order that keeps a flood cheap: the throttle decides first
 * (no hashing for a refused attempt), then the password is checked in the bounded hash queue.
 * A wrong password is answered once its back-off has passed, so a person who waits for the
 * answer never meets a refusal; attempts sent meanwhile get 429 without any hashing.
 */
export function createLogin(deps: { passwords: PasswordStore; throttle: LoginThrottle; sessions: SessionStore }) {
  const { passwords, throttle, sessions } = deps;

  const refused = (status: 401 | 429 | 503, message: string, retryAfterMs: number): LoginOutcome => ({
    ok: false,
    status,
    message: `${message}; try again in ${waitText(retryAfterMs)}.`,
    retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
  });

  return {
    async attempt(address: string, password: string): Promise<LoginOutcome> {
      if (!(await passwords.isSet())) return { ok: false, status: 409, message: 'No admin password is set yet.', noPassword: true };
      if (!password) return { ok: false, status: 401, message: 'Enter the admin password.' };
      const refusal = throttle.admit(address);
      if (refusal) return refused(429, REFUSALS[refusal.reason], refusal.retryAfterMs);
      let right: boolean;
      try {
        right = await passwords.check(password);
      } catch (error) {
        throttle.released(address);
        if (error instanceof AppError && error.statusCode === 503) return refused(503, 'The server is busy checking other logins', 2000);
        throw error;
      }
      if (!right) {
        const wait = throttle.failed(address);
        if (wait > MAX_BACKOFF_MS) return refused(401, `Wrong password. ${REFUSALS['locked-out']}`, wait);
        // Unref'd: a held answer must not keep a stopping server's process alive.
        await sleep(wait, undefined, { ref: false });
        return { ok: false, status: 401, message: 'Wrong password. Try again.' };
      }
      throttle.succeeded(address);
      return { ok: true, token: (await sessions.create()).token };
    },
  };
}

export type Login = ReturnType<typeof createLogin>;
