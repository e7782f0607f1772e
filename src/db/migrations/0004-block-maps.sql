-- Block maps: which ranges of an image (or backup) hold data, in chunks of at most 4 MiB, each
-- with its sha256 and, once compressed, its zstd frame in a cache file. Devices fetch and write
-- the chunks only, then read each back and check its sha256.

CREATE TABLE block_maps (
  id            INTEGER PRIMARY KEY,
  image_size    INTEGER NOT NULL,
  mapped_bytes  INTEGER NOT NULL,
  chunk_count   INTEGER NOT NULL,
  sparse_sha256 TEXT NOT NULL,            -- the image with unmapped ranges as zeros
  source        TEXT NOT NULL CHECK (source IN ('zeros', 'bmap')),
  cache_file    TEXT,                     -- relative to the data dir; NULL until built
  cache_bytes   INTEGER,
  created_at    INTEGER NOT NULL
);

CREATE TABLE block_map_chunks (
  map_id  INTEGER NOT NULL REFERENCES block_maps(id),
  idx     INTEGER NOT NULL,
  offset  INTEGER NOT NULL,
  length  INTEGER NOT NULL,
  sha256  TEXT NOT NULL,
  zoffset INTEGER,
  zlength INTEGER,
  PRIMARY KEY (map_id, idx)
) WITHOUT ROWID;

ALTER TABLE images ADD COLUMN block_map_id INTEGER REFERENCES block_maps(id);
ALTER TABLE backups ADD COLUMN block_map_id INTEGER REFERENCES block_maps(id);

-- How a deploy travels and is checked: 'full' (the whole image, one hash) or 'sparse' (mapped
-- chunks, each read back); the wire encoding; whether the operator asked for a full byte match.
ALTER TABLE jobs ADD COLUMN transfer_mode TEXT;
ALTER TABLE jobs ADD COLUMN encoding TEXT;
ALTER TABLE jobs ADD COLUMN full_match INTEGER NOT NULL DEFAULT 0;
-- What the device reports while it works.
ALTER TABLE jobs ADD COLUMN bytes_written INTEGER;
ALTER TABLE jobs ADD COLUMN bytes_verified INTEGER;
ALTER TABLE jobs ADD COLUMN device_rate INTEGER;
ALTER TABLE jobs ADD COLUMN discarded INTEGER;
