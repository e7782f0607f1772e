-- The block map of a backup body that has arrived but waits for the device's checksum.
ALTER TABLE jobs ADD COLUMN upload_map_id INTEGER REFERENCES block_maps(id);
