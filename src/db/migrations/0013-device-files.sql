-- Per-device files (src/device-files/): templates rendered for each device at order time and
-- written by the client into the deployed image's partitions after the image is verified.

-- A profile is a named set of files; `files` is its JSON list of { partition, fs, path, mode,
-- template }. `next_sequence` is the {{sequence}} the next order with this profile gets.
CREATE TABLE device_profiles (
  name TEXT PRIMARY KEY,
  files TEXT NOT NULL,
  next_sequence INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

-- The imported device table: one row per device, keyed by serial or by MAC (key_kind), its
-- values as a JSON object of column → text. Importing replaces the whole table.
CREATE TABLE device_table_rows (
  key TEXT PRIMARY KEY,
  key_kind TEXT NOT NULL CHECK (key_kind IN ('serial', 'mac')),
  row_values TEXT NOT NULL
);
CREATE TABLE device_table_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  key_column TEXT NOT NULL,
  columns TEXT NOT NULL,
  imported_at INTEGER NOT NULL
);

-- The files rendered for one deploy. `content` is only kept while the job is active (it may hold
-- secrets from the device table); the hashes stay as the record of what was written.
-- read_back_sha256: what the device reported reading back after writing.
CREATE TABLE job_files (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  profile TEXT NOT NULL,
  partition INTEGER NOT NULL,
  fs TEXT NOT NULL,
  path TEXT NOT NULL,
  mode TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  length INTEGER NOT NULL,
  content BLOB,
  read_back_sha256 TEXT,
  PRIMARY KEY (job_id, idx)
);
