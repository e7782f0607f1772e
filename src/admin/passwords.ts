import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Queries } from '../db/database.js';
import { AppError } from '../shared/errors.js';
import { createWorkLimiter, LimiterFullError } from './work-limiter.js';

// scrypt parameters (RFC 7914): N=2^15, r=8 costs ~32 MiB and ~50-100 ms per guess here.
const PARAMS = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const KEY_BYTES = 32;
const SETTING = 'admin_password';
export const MIN_PASSWORD_LENGTH = 8;
/**
 * scrypt runs on libuv's threadpool (4 threads by default), which every fs call of an image
 * download or backup upload shares: one hash at a time leaves the others to file I/O. A short
 * queue covers a few operators logging in together (~0.1 s each); beyond it an attempt is refused.
 */
const HASH_LIMITS = { concurrency: 1, queue: 8 };

function derive(password: string, salt: Buffer, params: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, params, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** `scrypt$N$r$p$salt$key` (base64): self-describing, so parameters can grow later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, PARAMS);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64');
  const actual = await derive(password, Buffer.from(salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p), maxmem: PARAMS.maxmem });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export function passwordProblem(password: string): string | undefined {
  if (password.length < MIN_PASSWORD_LENGTH) return `the password must have at least ${MIN_PASSWORD_LENGTH} characters`;
  return undefined;
}

const passwordCheckBusy = () =>
  new AppError(503, 'busy', 'the server is checking other login attempts; try again in a few seconds');

/** The admin password hash lives in the database, so the CLI can set it while the server runs. */
export function createPasswordStore(db: Queries) {
  const read = async () => (await db.selectFrom('settings').select('value').where('key', '=', SETTING).executeTakeFirst())?.value;
  const limiter = createWorkLimiter(HASH_LIMITS);
  let checks = 0;
  return {
    hash: read,
    isSet: async () => (await read()) !== undefined,
    async set(password: string): Promise<void> {
      const value = await hashPassword(password);
      await db
        .insertInto('settings')
        .values({ key: SETTING, value })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: (eb) => eb.ref('excluded.value') }))
        .execute();
    },
    /** Whether `password` is the admin password; an AppError 503 when too many checks are waiting. */
    async check(password: string): Promise<boolean> {
      const stored = await read();
      if (stored === undefined) return false;
      try {
        return await limiter.run(() => {
          checks += 1;
          return verifyPassword(stored, password);
        });
      } catch (error) {
        if (error instanceof LimiterFullError) throw passwordCheckBusy();
        throw error;
      }
    },
    /** How many password hashes `check` has computed, and how many are running or waiting now. */
    stats: () => ({ checks, running: limiter.running, waiting: limiter.waiting }),
  };
}

export type PasswordStore = ReturnType<typeof createPasswordStore>;
