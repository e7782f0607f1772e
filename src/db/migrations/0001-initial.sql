-- Times are milliseconds since the epoch (UTC). Files are paths relative to the data dir.

CREATE TABLE devices (
  mac            TEXT PRIMARY KEY,             -- lower-case, colon form
  ip             TEXT,
  serial         TEXT,
  model          TEXT,
  storage_bytes  INTEGER,
  client_version TEXT,
  first_seen_at  INTEGER NOT NULL,
  last_seen_at   INTEGER NOT NULL
);

CREATE TABLE images (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL,
  file         TEXT NOT NULL,
  size         INTEGER NOT NULL,
  sha256       TEXT NOT NULL,
  source       TEXT NOT NULL CHECK (source IN ('upload', 'golden', 'backup')),
  origin       TEXT,                           -- original file name, or the backup it came from
  created_at   INTEGER NOT NULL,
  retired_at   INTEGER,                        -- removed or superseded: hidden, kept for history
  file_removed INTEGER NOT NULL DEFAULT 0      -- 1 once no job needs the bytes any more
);
CREATE UNIQUE INDEX images_one_active_name ON images(name) WHERE retired_at IS NULL;

CREATE TABLE backups (
  id          INTEGER PRIMARY KEY,
  device_mac  TEXT NOT NULL REFERENCES devices(mac),
  job_id      INTEGER,
  file        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  deleted_at  INTEGER
);
CREATE INDEX backups_by_device ON backups(device_mac, id);

CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  device_mac       TEXT NOT NULL REFERENCES devices(mac),
  kind             TEXT NOT NULL CHECK (kind IN ('deploy', 'backup')),
  state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ok', 'failed', 'cancelled')),
  token            TEXT NOT NULL,
  image_id         INTEGER REFERENCES images(id),
  backup_id        INTEGER REFERENCES backups(id),
  phase            TEXT,
  bytes_total      INTEGER,
  bytes_done       INTEGER NOT NULL DEFAULT 0,
  sha256           TEXT,                       -- what the device reported it wrote or read
  error            TEXT,
  upload_bytes     INTEGER,                    -- a received backup body awaiting the device's checksum
  upload_sha256    TEXT,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  ended_at         INTEGER,
  last_activity_at INTEGER
);
CREATE INDEX jobs_by_device ON jobs(device_mac, id);
CREATE INDEX jobs_by_state ON jobs(state);
-- A device runs one job at a time; the database itself refuses a second active one.
CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_mac) WHERE state IN ('queued', 'running');

CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
