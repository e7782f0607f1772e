-- Issue 15: image files are named by their content (images/sha256/<hex>.img), so rows with the
-- same bytes share one file; these find the rows that share a file, and the images whose bytes
-- a station may already hold. Rows made before keep their images/<uuid>.img name.
CREATE INDEX images_file ON images(file);
CREATE INDEX images_sha256 ON images(sha256);

-- Why this station's copy of an image cannot be deployed (missing, truncated, changed); NULL
-- while intact. With several stations, a damaged file marks only that station's copy: the others
-- keep deploying the image, and this one fetches its copy again (images.broken is a station
-- alone's word).
ALTER TABLE image_copies ADD COLUMN broken TEXT;
