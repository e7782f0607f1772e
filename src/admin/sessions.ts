import { createHash } from 'node:crypto';
import type { Db } from '../db/open.js';
import type { Clock } from '../shared/clock.js';
import { newToken } from '../shared/tokens.js';

export const SESSION_COOKIE = 'cm4prov_session';
/** A session ends after this long without use: about one factory shift. */
export const SESSION_IDLE_MS = 12 * 60 * 60 * 1000;

export interface Session {
  csrfToken: string;
  expiresAt: number;
}

const digest = (token: string) => createHash('sha256').update(token).digest('hex');

/** Dashboard sessions: the cookie holds a random token, the database only its hash. */
export function createSessionStore(db: Db, clock: Clock) {
  const insert = db.prepare<{ id: string; csrf: string; now: number; expires: number }>(
    'INSERT INTO sessions (id_hash, csrf_token, created_at, last_seen_at, expires_at) VALUES (@id, @csrf, @now, @now, @expires)',
  );
  const find = db.prepare<[string], { csrf_token: string; last_seen_at: number; expires_at: number }>(
    'SELECT csrf_token, last_seen_at, expires_at FROM sessions WHERE id_hash = ?',
  );
  const extend = db.prepare<{ id: string; now: number; expires: number }>(
    'UPDATE sessions SET last_seen_at = @now, expires_at = @expires WHERE id_hash = @id',
  );
  const remove = db.prepare<[string]>('DELETE FROM sessions WHERE id_hash = ?');
  const purge = db.prepare<[number]>('DELETE FROM sessions WHERE expires_at < ?');

  return {
    create(): { token: string; session: Session } {
      const now = clock.now();
      purge.run(now);
      const token = newToken();
      const session = { csrfToken: newToken(), expiresAt: now + SESSION_IDLE_MS };
      insert.run({ id: digest(token), csrf: session.csrfToken, now, expires: session.expiresAt });
      return { token, session };
    },
    /** The live session for a cookie value, its idle timer restarted (written at most once a minute). */
    lookup(token: string | undefined): Session | undefined {
      if (!token) return undefined;
      const now = clock.now();
      const id = digest(token);
      const row = find.get(id);
      if (!row || row.expires_at < now) return undefined;
      let expiresAt = row.expires_at;
      if (now - row.last_seen_at > 60_000) {
        expiresAt = now + SESSION_IDLE_MS;
        extend.run({ id, now, expires: expiresAt });
      }
      return { csrfToken: row.csrf_token, expiresAt };
    },
    destroy(token: string | undefined) {
      if (token) remove.run(digest(token));
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
