-- What a finished job proved, in one word, so that every surface (API, dashboard, CLI, CSV)
-- says the same and never more than was checked (see src/jobs/verification.ts):
--   image          deploy: the device read back the whole image and it hashed to the image
--   target         deploy (full match): the whole target hashed to the image, unmapped as zeros
--   mapped_ranges  deploy: every mapped range was read back and matched its own sha256
--   sent           deploy: the whole image was sent; the device confirmed nothing
--   device_sha256  backup: the device's own sha256 of what it read equals what arrived
--   server_sha256  backup: the whole eMMC's length arrived; only the server hashed it
--   size_unknown   backup: a body arrived, but nobody knows the eMMC's size to call it whole
-- Also: device_ip, the device's address when it took the job (its job URLs answer only there);
-- client_reports, 1 when the poll that took the job said what the client can do (`features`),
-- so it reports a result (clients of the original contract send nothing and may never report);
-- image_sent_at, when the last byte of the whole image had been sent (full-image transfers).
-- A job whose work was handed over but never confirmed ends 'unconfirmed', not 'ok' or
-- 'failed'. SQLite cannot alter a CHECK constraint, so the table is rebuilt (no table
-- references jobs, so foreign keys stay intact).
CREATE TABLE jobs_new (
  id               INTEGER PRIMARY KEY,
  device_mac       TEXT NOT NULL REFERENCES devices(mac),
  kind             TEXT NOT NULL CHECK (kind IN ('deploy', 'backup')),
  state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ok', 'unconfirmed', 'failed', 'cancelled')),
  token            TEXT NOT NULL,
  image_id         INTEGER REFERENCES images(id),
  backup_id        INTEGER REFERENCES backups(id),
  phase            TEXT,
  bytes_total      INTEGER,
  bytes_done       INTEGER NOT NULL DEFAULT 0,
  sha256           TEXT,
  error            TEXT,
  upload_bytes     INTEGER,
  upload_sha256    TEXT,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  ended_at         INTEGER,
  last_activity_at INTEGER,
  after_success    TEXT NOT NULL DEFAULT 'emmc' CHECK (after_success IN ('emmc', 'netboot')),
  transfer_mode    TEXT,
  encoding         TEXT,
  full_match       INTEGER NOT NULL DEFAULT 0,
  bytes_written    INTEGER,
  bytes_verified   INTEGER,
  device_rate      INTEGER,
  discarded        INTEGER,
  upload_map_id    INTEGER REFERENCES block_maps(id),
  verified         TEXT,
  verified_bytes   INTEGER,
  verified_ranges  INTEGER,
  device_ip        TEXT,
  client_reports   INTEGER NOT NULL DEFAULT 0,
  image_sent_at    INTEGER
);
INSERT INTO jobs_new SELECT
  id, device_mac, kind, state, token, image_id, backup_id, phase, bytes_total, bytes_done, sha256, error,
  upload_bytes, upload_sha256, created_at, started_at, ended_at, last_activity_at, after_success,
  transfer_mode, encoding, full_match, bytes_written, bytes_verified, device_rate, discarded, upload_map_id,
  -- Jobs that ended ok before this migration proved what their mode proved; of a backup, which
  -- clients did not always send a checksum for, only what the server itself knew is claimed.
  CASE WHEN state <> 'ok' THEN NULL WHEN kind = 'backup' THEN 'server_sha256'
       WHEN transfer_mode = 'sparse' AND full_match = 0 THEN 'mapped_ranges' WHEN transfer_mode = 'sparse' THEN 'target' ELSE 'image' END,
  NULL, NULL, NULL, 1, NULL
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_by_device ON jobs(device_mac, id);
CREATE INDEX jobs_by_state ON jobs(state);
CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_mac) WHERE state IN ('queued', 'running');

-- What is known of a stored backup's completeness: 'whole' (its length is the eMMC's size) or
-- 'size_unknown' (a body arrived; the device never said how large its eMMC is).
ALTER TABLE backups ADD COLUMN completeness TEXT NOT NULL DEFAULT 'whole';
-- Whether the device's own sha256 of what it read was checked against what arrived.
ALTER TABLE backups ADD COLUMN device_checked INTEGER NOT NULL DEFAULT 0;
