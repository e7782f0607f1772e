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
