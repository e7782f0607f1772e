import { createHash } from 'node:crypto';
import type { Queries } from '../db/database.js';
import type { Clock } from '../shared/clock.js';
import { newToken } from '../shared/tokens.js';

export const SESSION_COOKIE = 'cm4prov_session';
/** A session ends after this long without use: about one factory shift. */
export const SESSION_IDLE_MS = 12 * 60 * 60 * 1000;
/** A session's idle timer is written at most this often: a page's requests cost one read each. */
const EXTEND_EVERY_MS = 60_000;

export interface Session {
  csrfToken: string;
  expiresAt: number;
}

const digest = (token: string) => createHash('sha256').update(token).digest('hex');

/** Dashboard sessions: the cookie holds a random token, the database only its hash. */
export function createSessionStore(db: Queries, clock: Clock) {
  return {
    async create(): Promise<{ token: string; session: Session }> {
      const now = clock.now();
      await db.deleteFrom('sessions').where('expires_at', '<', now).execute();
      const token = newToken();
      const session = { csrfToken: newToken(), expiresAt: now + SESSION_IDLE_MS };
      await db
        .insertInto('sessions')
        .values({ id_hash: digest(token), csrf_token: session.csrfToken, created_at: now, last_seen_at: now, expires_at: session.expiresAt })
        .execute();
      return { token, session };
    },
    /** The live session for a cookie value, its idle timer restarted (written at most once a minute). */
    async lookup(token: string | undefined): Promise<Session | undefined> {
      if (!token) return undefined;
      const now = clock.now();
      const id = digest(token);
      const row = await db
        .selectFrom('sessions')
        .select(['csrf_token', 'last_seen_at', 'expires_at'])
        .where('id_hash', '=', id)
        .where('expires_at', '>=', now)
        .executeTakeFirst();
      if (!row) return undefined;
      let expiresAt = row.expires_at;
      if (now - row.last_seen_at > EXTEND_EVERY_MS) {
        expiresAt = now + SESSION_IDLE_MS;
        // Conditional: of a page's requests that all find the timer old, one writes; none moves
        // an expiry back, and a session logged out meanwhile stays gone.
        await db
          .updateTable('sessions')
          .set({ last_seen_at: now, expires_at: expiresAt })
          .where('id_hash', '=', id)
          .where('last_seen_at', '<', now - EXTEND_EVERY_MS)
          .execute();
      }
      return { csrfToken: row.csrf_token, expiresAt };
    },
    async destroy(token: string | undefined): Promise<void> {
      if (token) await db.deleteFrom('sessions').where('id_hash', '=', digest(token)).execute();
    },
  };
}

export type SessionStore = ReturnType<typeof createSessionStore>;

/**
 * Reads one cookie from a Cookie header (RFC 6265 §4.2); no dependency needed for that. A value
 * that is not valid percent-encoding (`%zz`) is not one we set: it counts as absent.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const index = part.indexOf('=');
    if (index <= 0 || part.slice(0, index).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(index + 1).trim());
    } catch {
      // URIError: look for another cookie of that name.
    }
  }
  return undefined;
}

/** HttpOnly so page scripts cannot read it; SameSite=Strict so other sites cannot send it. */
export function sessionCookie(token: string, options: { secure: boolean; maxAgeSeconds: number }): string {
  return [
    `${SESSION_COOKIE}=${encodeURIComponent(token)}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${options.maxAgeSeconds}`,
    ...(options.secure ? ['Secure'] : []),
  ].join('; ');
}
