/**
 * A unique index refused the row: SQLite says SQLITE_CONSTRAINT_UNIQUE (or _PRIMARYKEY), PostgreSQL
 * SQLSTATE 23505 (https://www.postgresql.org/docs/current/errcodes-appendix.html). Two stations
 * racing for the same slot meet here: one wins, the other gets this.
 */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/**
 * PostgreSQL cannot be reached or is going away: its server is down, restarting or out of
 * connections (SQLSTATE classes 08 and 53, and 57P01–57P03), or node-postgres lost the socket.
 * A request that meets this is answered "try again" (503 with Retry-After), never with a guess.
 */
export function isDatabaseUnreachable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (/^(08|53)[0-9A-Z]{3}$/.test(code) || /^57P0[123]$/.test(code))) return true;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOENT' && /\.s\.PGSQL\./.test(String(message))) return true;
  return typeof message === 'string' && /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(message);
}

/** The two databases' "another transaction got in the way; run it again" (serialization failure, deadlock). */
export function isRetryableConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}
