import { randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 random bits, URL-safe: unguessable job and admin tokens. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison, so a token cannot be guessed byte by byte from response timing. */
export function tokensEqual(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
