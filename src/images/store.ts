import type { Db } from '../db/open.js';

export type ImageSource = 'upload' | 'golden' | 'backup';

export interface ImageRow {
  id: number;
  name: string;
  file: string;
  size: number;
  sha256: string;
  source: ImageSource;
  origin: string | null;
  created_at: number;
  retired_at: number | null;
  file_removed: number;
  /** Its block map (chunks and their sha256); null only for images added before maps existed. */
  block_map_id: number | null;
  /** The stored file as imported, for the cheap check (integrity.ts); null for older images. */
  file_identity: string | null;
  edges_sha256: string | null;
  /** Why the stored file cannot be deployed (missing, truncated, changed); null while intact. */
  broken: string | null;
}

export type NewImage = Pick<ImageRow, 'name' | 'file' | 'size' | 'sha256' | 'source' | 'origin' | 'block_map_id' | 'file_identity' | 'edges_sha256'>;

const DEFAULT_IMAGE_KEY = 'default_image';
const GOLDEN_VERSION_KEY = 'golden_version';

export function createImageStore(db: Db) {
  const insert = db.prepare<NewImage & { now: number }>(`
    INSERT INTO images (name, file, size, sha256, source, origin, block_map_id, file_identity, edges_sha256, created_at)
    VALUES (@name, @file, @size, @sha256, @source, @origin, @block_map_id, @file_identity, @edges_sha256, @now)`);
  const byId = db.prepare<[number], ImageRow>('SELECT * FROM images WHERE id = ?');
  const activeByName = db.prepare<[string], ImageRow>('SELECT * FROM images WHERE name = ? AND retired_at IS NULL');
  const active = db.prepare<[], ImageRow>('SELECT * FROM images WHERE retired_at IS NULL ORDER BY name');
  const retire = db.prepare<{ id: number; now: number }>(
    'UPDATE images SET retired_at = @now WHERE id = @id AND retired_at IS NULL',
  );
  const retiredWithFiles = db.prepare<[], ImageRow>(
    'SELECT * FROM images WHERE retired_at IS NOT NULL AND file_removed = 0',
  );
  const markFileRemoved = db.prepare<[number]>('UPDATE images SET file_removed = 1 WHERE id = ?');
  const getSetting = db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE key = ?');
  const setSetting = db.prepare<[string, string]>(
    'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  const deleteSetting = db.prepare<[string]>('DELETE FROM settings WHERE key = ?');
  const unmapped = db.prepare<[], ImageRow>('SELECT * FROM images WHERE retired_at IS NULL AND block_map_id IS NULL');
  const setMap = db.prepare<[number, number]>('UPDATE images SET block_map_id = ? WHERE id = ?');
  const setBaseline = db.prepare<[string, string, number]>('UPDATE images SET file_identity = ?, edges_sha256 = ? WHERE id = ?');
  const setBroken = db.prepare<[string | null, number]>('UPDATE images SET broken = ? WHERE id = ?');

  return {
    /** Adds an image; when `replacing` is given that version is retired in the same transaction. */
    add: db.transaction((image: NewImage, now: number, replacing?: number): ImageRow => {
      if (replacing !== undefined) retire.run({ id: replacing, now });
      const { lastInsertRowid } = insert.run({ ...image, now });
      return byId.get(Number(lastInsertRowid))!;
    }),
    get: (id: number) => byId.get(id),
    byName: (name: string) => activeByName.get(name),
    list: () => active.all(),
    retire: (id: number, now: number) => retire.run({ id, now }).changes === 1,
    retiredWithFiles: () => retiredWithFiles.all(),
    withoutBlockMap: () => unmapped.all(),
    setBlockMap: (imageId: number, mapId: number) => setMap.run(mapId, imageId),
    markFileRemoved: (id: number) => markFileRemoved.run(id),
    setBaseline: (id: number, identity: string, edgesSha256: string) => setBaseline.run(identity, edgesSha256, id),
    setBroken: (id: number, reason: string | null) => setBroken.run(reason, id),
    defaultName: () => getSetting.get(DEFAULT_IMAGE_KEY)?.value,
    setDefaultName: (name: string | null) =>
      name === null ? deleteSetting.run(DEFAULT_IMAGE_KEY) : setSetting.run(DEFAULT_IMAGE_KEY, name),
    /** Identity (inode, size, mtime) of the golden.img version last imported, to spot a replacement. */
    goldenVersion: () => getSetting.get(GOLDEN_VERSION_KEY)?.value,
    setGoldenVersion: (version: string) => setSetting.run(GOLDEN_VERSION_KEY, version),
  };
}

export type ImageStore = ReturnType<typeof createImageStore>;
