-- Issue 15, "Several stations, one PostgreSQL": each server is a station on its own LAN. A device
-- belongs to the station it last registered or polled at; a job is served by the station that
-- handed it out; a backup's bytes stay on the station that received it. NULL: before stations
-- (a single server's rows, which `cm4prov db migrate` names after the station it moves).
ALTER TABLE devices ADD COLUMN station TEXT;
ALTER TABLE jobs ADD COLUMN station TEXT;
ALTER TABLE backups ADD COLUMN station TEXT;

-- The stations that share this database: when each was last heard from, and where the others
-- reach it (its --station-url) to fetch image copies and backups.
CREATE TABLE stations (
  name          TEXT PRIMARY KEY,
  url           TEXT,
  started_at    INTEGER NOT NULL,
  last_seen_at  INTEGER NOT NULL
);

-- Each station keeps its own copy of every image in its own data folder (the image rows and
-- block maps are shared): where an image is added its copy is complete at once; the other
-- stations fetch theirs from a station that has one (src/stations/copy-fetcher.ts). A deploy
-- is handed out only where the copy is complete.
CREATE TABLE image_copies (
  image_id        INTEGER NOT NULL REFERENCES images(id),
  station         TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('fetching', 'complete', 'failed')),
  bytes_done      INTEGER NOT NULL DEFAULT 0,
  bytes_total     INTEGER,
  source_station  TEXT,
  error           TEXT,
  -- "inode:mtime" of this station's file, for its cheap integrity check (images.file_identity
  -- is the first station's: inodes differ from disk to disk).
  file_identity   TEXT,
  updated_at      INTEGER NOT NULL,
  PRIMARY KEY (image_id, station)
);
