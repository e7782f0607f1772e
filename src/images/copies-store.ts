import type { Queries } from '../db/database.js';
import type { ImageRow } from './store.js';

export type CopyState = 'fetching' | 'complete' | 'failed';

/** One station's copy of an image (migration 0020): its file in that station's data folder. */
export interface ImageCopyRow {
  image_id: number;
  station: string;
  state: CopyState;
  bytes_done: number;
  bytes_total: number | null;
  /** The station it is fetched from; null where the image was added. */
  source_station: string | null;
  error: string | null;
  file_identity: string | null;
  /** Why this station's file cannot be deployed (migration 0021); null while intact. */
  broken: string | null;
  updated_at: number;
}

/** A station that holds a complete copy and can be asked for it. */
export interface CopySource {
  name: string;
  url: string;
}

/** Which stations hold which images' files, and how far each fetch has come. */
export function createImageCopyStore(db: Queries) {
  const copy = (imageId: number, station: string) => db.updateTable('image_copies').where('image_id', '=', imageId).where('station', '=', station);
  /** Active images whose copy at `station` is complete and not known damaged, by id. */
  const held = (station: string) =>
    db
      .selectFrom('images as i')
      .innerJoin('image_copies as c', 'c.image_id', 'i.id')
      .selectAll('i')
      .where('i.retired_at', 'is', null)
      .where('c.station', '=', station)
      .where('c.state', '=', 'complete')
      .where('c.broken', 'is', null)
      .orderBy('i.id');

  return {
    /** The copy where the image was added: complete from the start (written with the image row). */
    addComplete: async (imageId: number, station: string, bytes: number, fileIdentity: string | null, now: number) => {
      const values = { state: 'complete' as const, bytes_done: bytes, bytes_total: bytes, source_station: null, error: null, file_identity: fileIdentity, broken: null, updated_at: now };
      await db
        .insertInto('image_copies')
        .values({ image_id: imageId, station, ...values })
        .onConflict((oc) => oc.columns(['image_id', 'station']).doUpdateSet(values))
        .execute();
    },
    /**
     * Complete at once from a file this station holds already: another image's copy with the same
     * sha256 (the copy fetcher checked it). `source_station` names this station: no other was asked.
     */
    completeFromOwnFile: async (imageId: number, station: string, bytes: number, fileIdentity: string, now: number) => {
      const values = { state: 'complete' as const, bytes_done: bytes, bytes_total: bytes, source_station: station, error: null, file_identity: fileIdentity, broken: null, updated_at: now };
      await db
        .insertInto('image_copies')
        .values({ image_id: imageId, station, ...values })
        .onConflict((oc) => oc.columns(['image_id', 'station']).doUpdateSet(values))
        .execute();
    },
    /**
     * A fetch begins (or begins again); false when the copy is complete and intact already, and
     * then nothing changed. A damaged copy keeps its `broken` reason until the new file is in place.
     */
    startFetch: async (imageId: number, station: string, source: string, bytesTotal: number, now: number) => {
      const values = { state: 'fetching' as const, bytes_done: 0, bytes_total: bytesTotal, source_station: source, error: null, updated_at: now };
      const result = await db
        .insertInto('image_copies')
        .values({ image_id: imageId, station, ...values })
        .onConflict((oc) =>
          oc
            .columns(['image_id', 'station'])
            .doUpdateSet(values)
            .where((eb) => eb.or([eb('image_copies.state', '<>', 'complete'), eb('image_copies.broken', 'is not', null)])),
        )
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows) === 1;
    },
    progress: async (imageId: number, station: string, bytesDone: number, now: number) => {
      await copy(imageId, station).set({ bytes_done: bytesDone, updated_at: now }).where('state', '=', 'fetching').execute();
    },
    /** The fetched file is in place: false unless the copy was being fetched. */
    complete: async (imageId: number, station: string, bytes: number, fileIdentity: string, now: number) => {
      const result = await copy(imageId, station)
        .set({ state: 'complete', bytes_done: bytes, bytes_total: bytes, error: null, file_identity: fileIdentity, broken: null, updated_at: now })
        .where('state', '=', 'fetching')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    /** A fetch failed: never over a complete copy. */
    fail: async (imageId: number, station: string, error: string, now: number) => {
      await copy(imageId, station).set({ state: 'failed', error, updated_at: now }).where('state', '<>', 'complete').execute();
    },
    /** Marks this station's copy damaged (a reason) or intact (null); true when this changed it. */
    setBroken: async (imageId: number, station: string, reason: string | null) => {
      const result = await copy(imageId, station).set({ broken: reason }).where('broken', 'is distinct from', reason).executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    setIdentity: async (imageId: number, station: string, fileIdentity: string) => {
      await copy(imageId, station).set({ file_identity: fileIdentity }).execute();
    },
    get: (imageId: number, station: string) =>
      db.selectFrom('image_copies').selectAll().where('image_id', '=', imageId).where('station', '=', station).executeTakeFirst() as Promise<ImageCopyRow | undefined>,
    ofImage: (imageId: number) =>
      db.selectFrom('image_copies').selectAll().where('image_id', '=', imageId).orderBy('station').execute() as Promise<ImageCopyRow[]>,
    /** Active images this station has no complete and intact copy of, oldest first. */
    missingAt: (station: string) =>
      db
        .selectFrom('images as i')
        .selectAll('i')
        .where('i.retired_at', 'is', null)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('image_copies as c')
                .select('c.image_id')
                .whereRef('c.image_id', '=', 'i.id')
                .where('c.station', '=', station)
                .where('c.state', '=', 'complete')
                .where('c.broken', 'is', null),
            ),
          ),
        )
        .orderBy('i.id')
        .execute() as Promise<ImageRow[]>,
    /** Active images whose copy here is complete and not known damaged, oldest first. */
    heldAt: (station: string) => held(station).execute() as Promise<ImageRow[]>,
    /** Active images with these bytes whose copy here is complete and not known damaged. */
    heldWithBytes: (sha256: string, station: string) => held(station).where('i.sha256', '=', sha256).execute() as Promise<ImageRow[]>,
    /** Whether another station holds a complete copy not known damaged (up or not). */
    intactElsewhere: async (imageId: number, except: string) =>
      (await db
        .selectFrom('image_copies')
        .select('image_id')
        .where('image_id', '=', imageId)
        .where('station', '<>', except)
        .where('state', '=', 'complete')
        .where('broken', 'is', null)
        .executeTakeFirst()) !== undefined,
    /** Other stations with a complete, intact copy, heard from at or after `upSince` and reachable (a url). */
    sourcesOf: (imageId: number, except: string, upSince: number) =>
      db
        .selectFrom('image_copies as c')
        .innerJoin('stations as s', 's.name', 'c.station')
        .select(['s.name', 's.url'])
        .where('c.image_id', '=', imageId)
        .where('c.state', '=', 'complete')
        .where('c.broken', 'is', null)
        .where('c.station', '<>', except)
        .where('s.url', 'is not', null)
        .where('s.last_seen_at', '>=', upSince)
        .orderBy('s.name')
        .execute() as Promise<CopySource[]>,
    /** Retired images whose file this station may still hold: its copy's row is there until the file is gone. */
    retiredAt: (station: string) =>
      db
        .selectFrom('images as i')
        .innerJoin('image_copies as c', 'c.image_id', 'i.id')
        .selectAll('i')
        .where('c.station', '=', station)
        .where('i.retired_at', 'is not', null)
        .orderBy('i.id')
        .execute() as Promise<ImageRow[]>,
    remove: async (imageId: number, station: string) => {
      await db.deleteFrom('image_copies').where('image_id', '=', imageId).where('station', '=', station).execute();
    },
  };
}

export type ImageCopyStore = ReturnType<typeof createImageCopyStore>;
