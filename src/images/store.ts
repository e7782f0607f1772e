import { sql } from 'kysely';
import { inTransaction, type Queries } from '../db/database.js';
import { isUniqueViolation } from '../db/errors.js';
import { createImageCopyStore } from './copies-store.js';

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

export function createImageStore(db: Queries) {
  const images = () => db.selectFrom('images').selectAll();
  const retire = async (q: Queries, id: number, now: number) =>
    Number((await q.updateTable('images').set({ retired_at: now }).where('id', '=', id).where('retired_at', 'is', null).executeTakeFirst()).numUpdatedRows) === 1;
  const setting = async (key: string) => (await db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst())?.value;

  return {
    /**
     * Adds an image; when `replacing` is given that version is retired in the same transaction,
     * and with `station` that station's copy is recorded complete in it too (its file is in place).
     * Undefined when an active image holds the name already (the unique index images_one_active_name:
     * another request or station added it first); then nothing changed.
     */
    async add(image: NewImage, now: number, replacing?: number, station?: string): Promise<ImageRow | undefined> {
      try {
        return await inTransaction(db, async (tx) => {
          if (replacing !== undefined) await retire(tx, replacing, now);
          const { name, file, size, sha256, source, origin, block_map_id, file_identity, edges_sha256 } = image;
          const added = (await tx
            .insertInto('images')
            .values({ name, file, size, sha256, source, origin, block_map_id, file_identity, edges_sha256, created_at: now })
            .returningAll()
            .executeTakeFirstOrThrow()) as ImageRow;
          if (station !== undefined) await createImageCopyStore(tx).addComplete(added.id, station, size, file_identity, now);
          return added;
        });
      } catch (error) {
        if (isUniqueViolation(error)) return undefined;
        throw error;
      }
    },
    get: (id: number) => images().where('id', '=', id).executeTakeFirst() as Promise<ImageRow | undefined>,
    byName: (name: string) => images().where('name', '=', name).where('retired_at', 'is', null).executeTakeFirst() as Promise<ImageRow | undefined>,
    list: () => images().where('retired_at', 'is', null).orderBy('name').execute() as Promise<ImageRow[]>,
    /** False when it was retired already. */
    retire: (id: number, now: number) => retire(db, id, now),
    retiredWithFiles: () => images().where('retired_at', 'is not', null).where('file_removed', '=', 0).execute() as Promise<ImageRow[]>,
    /** Every row, retired or not, whose file is `file` (relative): rows with the same bytes share one. */
    namingFile: (file: string) => images().where('file', '=', file).orderBy('id').execute() as Promise<ImageRow[]>,
    /** Active images with these bytes. */
    withBytes: (sha256: string) => images().where('sha256', '=', sha256).where('retired_at', 'is', null).orderBy('id').execute() as Promise<ImageRow[]>,
    withoutBlockMap: () => images().where('retired_at', 'is', null).where('block_map_id', 'is', null).execute() as Promise<ImageRow[]>,
    /**
     * Gives an image a new map, if its map is still `previous`: the map is made in a long scan
     * of the file, meanwhile another station may have mapped it. False when it had.
     */
    setBlockMap: async (imageId: number, mapId: number, previous: number | null) => {
      const result = await db
        .updateTable('images')
        .set({ block_map_id: mapId })
        .where('id', '=', imageId)
        .where('block_map_id', 'is not distinct from', previous)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    markFileRemoved: async (id: number) => {
      await db.updateTable('images').set({ file_removed: 1 }).where('id', '=', id).execute();
    },
    setBaseline: async (id: number, identity: string, edgesSha256: string) => {
      await db.updateTable('images').set({ file_identity: identity, edges_sha256: edgesSha256 }).where('id', '=', id).execute();
    },
    /** What the first and last MiB hash to: the same on every station's copy. */
    setEdges: async (id: number, edgesSha256: string) => {
      await db.updateTable('images').set({ edges_sha256: edgesSha256 }).where('id', '=', id).execute();
    },
    /** True when this changed it: of two checks finding the same, only one says so. */
    setBroken: async (id: number, reason: string | null) => {
      const result = await db.updateTable('images').set({ broken: reason }).where('id', '=', id).where('broken', 'is distinct from', reason).executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    defaultName: () => setting(DEFAULT_IMAGE_KEY),
    /**
     * Makes `name` the default if an active image has it, in one statement: an image removed
     * meanwhile does not become the default again. False when none has it.
     */
    setDefaultName: async (name: string) => {
      const result = await db
        .insertInto('settings')
        .columns(['key', 'value'])
        .expression(db.selectFrom('images').select([sql.lit(DEFAULT_IMAGE_KEY).as('key'), 'name']).where('name', '=', name).where('retired_at', 'is', null))
        .onConflict((oc) => oc.column('key').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })))
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows) === 1;
    },
    /** Unsets the default if it is still `name` (one statement: a default set meanwhile stays). */
    clearDefaultName: async (name: string) => {
      await db.deleteFrom('settings').where('key', '=', DEFAULT_IMAGE_KEY).where('value', '=', name).execute();
    },
    /**
     * Identity (inode, size, mtime) of the version of `station`'s golden.img last imported or
     * found equal to the golden image, to spot a replacement. Each station has its own file (its
     * inode differs even where the bytes are the same); the key without a station is what a
     * server kept before stations, read until it has its own.
     */
    goldenVersion: async (station: string) => (await setting(`${GOLDEN_VERSION_KEY}:${station}`)) ?? setting(GOLDEN_VERSION_KEY),
    setGoldenVersion: async (station: string, version: string) => {
      await db
        .insertInto('settings')
        .values({ key: `${GOLDEN_VERSION_KEY}:${station}`, value: version })
        .onConflict((oc) => oc.column('key').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })))
        .execute();
    },
  };
}

export type ImageStore = ReturnType<typeof createImageStore>;
