-- What a cheap check of a stored image file compares against (its size is recorded already):
-- the file's identity ("inode:mtime in ns") and the sha256 of its first and last MiB, taken at
-- import. NULL for images imported before this: their baseline is set once their whole sha256
-- has been checked again. `broken` says why the file cannot be deployed; NULL while it is intact.
ALTER TABLE images ADD COLUMN file_identity TEXT;
ALTER TABLE images ADD COLUMN edges_sha256 TEXT;
ALTER TABLE images ADD COLUMN broken TEXT;
