-- Dashboard login sessions. Only a hash of the cookie value is stored.
CREATE TABLE sessions (
  id_hash      TEXT PRIMARY KEY,
  csrf_token   TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
