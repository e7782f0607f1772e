-- Block maps made from a bmap before this version hashed the gaps they merged between mapped
-- ranges as zeros, while devices are sent the image's real bytes there: where a gap held
-- bytes, every deploy of that image fails its read-back. Each such map is checked once against
-- its image file at start; one that does not match is replaced by a map of the non-zero blocks.
ALTER TABLE block_maps ADD COLUMN needs_recheck INTEGER NOT NULL DEFAULT 0;
UPDATE block_maps SET needs_recheck = 1 WHERE source = 'bmap';
