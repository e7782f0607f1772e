import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, insufficientStorage, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { removeIfPresent, STREAM_CHUNK_BYTES } from '../shared/files.js';
import { almostFull } from '../shared/free-space.js';
import { StreamWriteError } from '../shared/stream-errors.js';
import { BmapError, parseBmap, type Bmap } from '../blockmap/bmap.js';
import type { CacheBuilder } from '../blockmap/cache-builder.js';
import { consumeDecoded, DecodeError, decodeImage } from '../blockmap/decode.js';
import { writeBlockImage, type BlockImage } from '../blockmap/image-writer.js';
import { cacheOnDisk, type BlockMapRow, type BlockMapStore } from '../blockmap/store.js';
import { contentFile, createContentFiles } from './content-files.js';
import type { ImageCopyStore } from './copies-store.js';
import { createIntegrityChecker, examineFile, rowBaseline, type FileFacts } from './integrity.js';
import { aloneCopy, type LocalCopy } from './local-copy.js';
import type { ImageRow, ImageSource, ImageStore, NewImage } from './store.js';

/** The library name under which the data dir's golden.img is published. */
export const GOLDEN_NAME = 'golden';
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const noSuchImage = (name: string) => notFound(`there is no image named '${name}' (see: cm4prov image list)`);

export interface ImageView {
  id: number;
  name: string;
  size: number;
  sha256: string;
  source: ImageSource;
  origin: string | null;
  created_at: string;
  default: boolean;
  in_use: boolean;
  /** Why its stored file cannot be deployed (missing, truncated, changed); null while intact. */
  broken: string | null;
  /** What a device must write: the ranges that hold data (the rest it may leave discarded). */
  block_map: BlockMapView | null;
  /** Each station's copy of its file (several stations on one PostgreSQL; issue 15). */
  copies: CopyView[];
}

export interface CopyView {
  station: string;
  state: 'fetching' | 'complete' | 'failed';
  bytes_done: number;
  bytes_total: number | null;
  error: string | null;
  /** Where it was fetched from: null where the image was added, that station itself when made from its own file of the same bytes. */
  source_station: string | null;
  /** Why that station's file cannot be deployed there (it fetches it again); null while intact. */
  broken: string | null;
}

export interface BlockMapView {
  source: 'zeros' | 'bmap';
  mapped_bytes: number;
  chunks: number;
  /** zstd cache: ready (with its size), building (chunks done), or queued. */
  compression: { state: 'ready'; bytes: number } | { state: 'building' | 'queued'; done: number; total: number } | { state: 'none' };
}

/** How a deploy travels, decided when it is handed to a device that said what it can do. */
export interface TransferPlan {
  mode: 'full' | 'sparse';
  encoding: 'zstd' | 'identity';
  /** What the progress bar counts to: the image size, or the mapped bytes. */
  bytesTotal: number;
}

export interface ImportProgress {
  name: string;
  origin: string;
  bytes_done: number;
  bytes_total: number | null;
  started_at: string;
}

export interface ImageLibraryDeps {
  store: ImageStore;
  blockMaps: BlockMapStore;
  caches: CacheBuilder;
  dataDir: string;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** True while a queued or running job needs the image's bytes. */
  imageInUse: (imageId: number) => Promise<boolean>;
  /** This station: an image added here has its copy recorded complete with its row. */
  station?: string;
  /** Every station's copies, for the views and the sweep of retired files. */
  copies?: ImageCopyStore;
  /** Whether this station holds an image's file yet; alone, it holds them all. */
  local?: LocalCopy;
}

export interface AddImageOptions {
  name: string;
  origin: string | null;
  source?: ImageSource;
  makeDefault?: boolean;
  expectedBytes?: number;
  /** Last check before the image becomes visible; throw to discard it (e.g. the source changed). */
  beforePublish?: () => Promise<void>;
  /** The image's bmap (bmaptool format): its ranges are the block map, their checksums checked. */
  bmap?: Bmap;
}

export function createImageLibrary(deps: ImageLibraryDeps) {
  const { store, blockMaps, caches, dataDir, clock, bus, log, imageInUse, station, copies, local = aloneCopy } = deps;
  const imports = new Map<string, ImportProgress>();
  /** bmaps uploaded ahead of their image (two requests: the XML, then the image naming it). */
  const pendingBmaps = new Map<string, { bmap: Bmap; expires: number }>();
  const absolute = (image: Pick<ImageRow, 'file'>) => join(dataDir, image.file);
  const baseline = local.baseline ?? rowBaseline(store);
  const integrity = createIntegrityChecker({ store, pathOf: absolute, bus, log, baseline });
  /** Whether this station's copy is complete and intact: only then is its file read, checked or sent. */
  const isLocal = async (image: ImageRow) => (await local.waiting(image)) === null;
  const files = createContentFiles({ dataDir, rowsNaming: store.namingFile, imageInUse, intactFacts });
  /** Whether a map's zstd cache is in this station's data folder (with several stations, it may be only on another's). */
  const cacheHere = (map: BlockMapRow) => cacheOnDisk(dataDir, map);

  /**
   * The facts of a file in place, if an active image naming it that this station holds, complete
   * and not known damaged, last saw it so (size, first and last MiB, inode and mtime).
   */
  async function intactFacts(file: string, size: number): Promise<FileFacts | undefined> {
    for (const row of await store.namingFile(file)) {
      if (row.retired_at !== null || row.size !== size || row.edges_sha256 === null) continue;
      if (!(await isLocal(row)) || (await baseline.brokenOf(row)) !== null) continue;
      const examined = examineFile(join(dataDir, file), size);
      if ('problem' in examined) return undefined;
      if (examined.facts.edgesSha256 === row.edges_sha256 && examined.facts.identity === (await baseline.identityOf(row))) return examined.facts;
    }
    return undefined;
  }

  /**
   * Images with the same bytes share one block map, and so one zstd cache, when the map made now
   * is the one they have (a map of zeros is made the same from the same bytes; a bmap's is not).
   * Alone, a map whose cache is not built yet is being built here; with several stations it may
   * be being built on another, whose frames this one's would have to match: then a new map.
   */
  async function mapFor(written: BlockImage): Promise<number> {
    if (written.mapSource === 'zeros') {
      for (const other of await store.withBytes(written.sha256)) {
        const map = other.block_map_id === null ? undefined : await blockMaps.get(other.block_map_id);
        if (!map || map.source !== 'zeros' || map.needs_recheck || !(await isLocal(other))) continue;
        if (!(map.cache_file === null ? local === aloneCopy : cacheHere(map))) continue;
        if (sameChunks(await blockMaps.plainChunks(map.id), written.chunks)) return map.id;
      }
    }
    return blockMaps.add(written, clock.now());
  }

  async function viewWith(image: ImageRow, defaultName: string | undefined): Promise<ImageView> {
    return {
      id: image.id,
      name: image.name,
      size: image.size,
      sha256: image.sha256,
      source: image.source,
      origin: image.origin,
      created_at: new Date(image.created_at).toISOString(),
      default: image.name === defaultName,
      in_use: await imageInUse(image.id),
      broken: image.broken,
      block_map: image.block_map_id === null ? null : await mapView(image.block_map_id),
      copies: (await copies?.ofImage(image.id))?.map(({ station, state, bytes_done, bytes_total, error, source_station, broken }) => ({ station, state, bytes_done, bytes_total, error, source_station, broken })) ?? [],
    };
  }

  const view = async (image: ImageRow) => viewWith(image, await effectiveDefaultName());

  async function mapView(mapId: number): Promise<BlockMapView | null> {
    const map = await blockMaps.get(mapId);
    if (!map) return null;
    const building = caches.progressOf(mapId);
    return {
      source: map.source,
      mapped_bytes: map.mapped_bytes,
      chunks: map.chunk_count,
      compression: map.cache_file
        ? { state: 'ready', bytes: map.cache_bytes! }
        : building
          ? { state: building.state, done: building.done, total: building.total }
          : { state: 'none' },
    };
  }

  /** The explicit default if set, else golden.img's image when there is one. */
  async function effectiveDefaultName(): Promise<string | undefined> {
    const explicit = await store.defaultName();
    if (explicit && (await store.byName(explicit))) return explicit;
    return (await store.byName(GOLDEN_NAME)) ? GOLDEN_NAME : undefined;
  }

  async function requireImage(name: string): Promise<ImageRow> {
    const image = await store.byName(name);
    if (!image) throw noSuchImage(name);
    return image;
  }

  async function ensureRoom() {
    const full = await almostFull(dataDir);
    if (full) throw insufficientStorage(`the image was not added: ${full}`);
  }

  /**
   * Streams bytes (raw, or .gz/.xz/.zst/.bz2/.lz4/.zip, told apart by content) into a new
   * immutable image file, recording its size, sha256 and block map on the way, and what the
   * integrity checks compare against once it is stored. Nothing is visible until all of that
   * is on disk; a failed or cut transfer leaves no row and no file. The compressed chunk cache
   * follows in the background.
   */
  async function addFromStream(source: Readable, options: AddImageOptions): Promise<ImageRow> {
    const { name } = options;
    await checkNewName(name, options.source ?? 'upload');
    const replacing = options.source === 'golden' ? await store.byName(GOLDEN_NAME) : undefined;
    await ensureRoom();

    const temp = join(dataDir, 'tmp', `image-${randomUUID()}.part`);
    const progress: ImportProgress = {
      name,
      origin: options.origin ?? name,
      bytes_done: 0,
      bytes_total: options.expectedBytes ?? null,
      started_at: new Date(clock.now()).toISOString(),
    };
    imports.set(temp, progress);
    try {
      const decoded = await decodeImage(source, { spoolDir: join(dataDir, 'tmp') });
      const written = await consumeDecoded(decoded, (raw) =>
        writeBlockImage(raw, temp, {
          bmap: options.bmap,
          // A compressed upload's Content-Length is not the image's size.
          expectedBytes: decoded.encoding === 'raw' ? options.expectedBytes : undefined,
          onProgress: (bytes) => (progress.bytes_done = bytes),
        }),
      );
      if (written.size === 0) throw new DecodeError(`the ${decoded.encoding} data holds no bytes: the image is empty`);
      await options.beforePublish?.();
      const file = contentFile(written.sha256);
      let sharing = false;
      const image = await files.place(temp, file, written.size, async (facts, shared) => {
        sharing = shared;
        return addRow(
          {
            name,
            file,
            size: written.size,
            sha256: written.sha256,
            source: options.source ?? 'upload',
            origin: options.origin,
            block_map_id: await mapFor(written),
            file_identity: facts.identity,
            edges_sha256: facts.edgesSha256,
          },
          replacing?.id,
        );
      });
      if (options.makeDefault) await store.setDefaultName(name);
      log.info({ image: name, size: image.size, sha256: image.sha256, mapped: written.mappedBytes, from: decoded.encoding, shares_file: sharing }, 'image added');
      const map = await blockMaps.get(image.block_map_id!);
      if (map && !map.cache_file) caches.enqueue({ mapId: map.id, rawPath: absolute(image) });
      bus.emit('image.changed', { name });
      await sweepRetired();
      return image;
    } catch (error) {
      await removeIfPresent(temp);
      if (error instanceof StreamWriteError) {
        if (error.failure === 'disk_full') throw insufficientStorage(`image '${name}' was not added: ${error.message}`);
        throw badRequest(`image '${name}' was not added: ${error.message}`);
      }
      if (error instanceof BmapError || error instanceof DecodeError) throw badRequest(`image '${name}' was not added: ${error.message}`);
      throw error;
    } finally {
      imports.delete(temp);
    }
  }

  /**
   * The row of a file already in place. The name was checked free before the bytes came, but
   * another request or station may have taken it since: the unique index decides, and the loser
   * gets the same sentence as an early refusal.
   */
  async function addRow(image: NewImage, replacing?: number): Promise<ImageRow> {
    const added = await store.add(image, clock.now(), replacing, station);
    if (!added) throw conflict(`an image named '${image.name}' already exists`);
    return added;
  }

  async function checkNewName(name: string, source: ImageSource) {
    if (!NAME_PATTERN.test(name)) {
      throw badRequest(`'${name}' is not a usable image name: use letters, digits, '.', '_', '+' or '-' (at most 128)`);
    }
    if (name === GOLDEN_NAME && source !== 'golden') {
      throw conflict(`the name '${GOLDEN_NAME}' is kept for the golden.img file in the data folder; choose another`);
    }
    if (source !== 'golden' && (await store.byName(name))) {
      throw conflict(`an image named '${name}' already exists (remove it first, or choose another name)`);
    }
  }

  /**
   * Deletes the files of retired images that no active job still streams (the deletions go on in
   * the background), unless an active image shares the file (the same bytes). Each station
   * deletes its own copy's: a row of it stays until it has.
   */
  async function sweepRetired() {
    const retired = new Map((await store.retiredWithFiles()).map((image) => [image.id, image]));
    if (copies && station !== undefined) for (const image of await copies.retiredAt(station)) retired.set(image.id, image);
    for (const image of retired.values()) {
      if (await imageInUse(image.id)) continue;
      files
        .release(image.file)
        .then(() => store.markFileRemoved(image.id))
        .then(() => (station === undefined ? undefined : copies?.remove(image.id, station)))
        .catch((error: Error) => log.warn({ image: image.name, err: error }, 'could not remove a retired image file'));
    }
  }

  /**
   * Publishes an existing immutable file whose size and sha256 are already known (a backup):
   * hard-linked when it is on the same filesystem (no copy, no re-hash), else copied and checked.
   */
  async function adoptVerifiedFile(
    path: string,
    facts: { name: string; size: number; sha256: string; origin: string; blockMapId: number | null },
  ): Promise<ImageRow> {
    await checkNewName(facts.name, 'backup');
    const file = contentFile(facts.sha256);
    let image: ImageRow;
    try {
      image = await files.placeLink(path, file, facts.size, (baseline) =>
        addRow({
          name: facts.name,
          file,
          size: facts.size,
          sha256: facts.sha256,
          source: 'backup',
          origin: facts.origin,
          block_map_id: facts.blockMapId,
          file_identity: baseline.identity,
          edges_sha256: baseline.edgesSha256,
        }),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      const copied = await addFromStream(createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES }), {
        name: facts.name,
        origin: facts.origin,
        source: 'backup',
        expectedBytes: facts.size,
      });
      if (copied.sha256 !== facts.sha256) {
        await remove(facts.name);
        throw conflict(`the copy of ${facts.origin} does not hash to its recorded sha256; the file is damaged`);
      }
      return copied;
    }
    log.info({ image: facts.name, origin: facts.origin }, 'image added from a backup');
    bus.emit('image.changed', { name: facts.name });
    return image;
  }

  async function remove(name: string) {
    const image = await requireImage(name);
    if (await imageInUse(image.id)) {
      throw conflict(`image '${name}' is in use by a queued or running deploy; cancel or wait for it first`);
    }
    // Conditional: of two removals at once, one retires it, the other finds it gone.
    if (!(await store.retire(image.id, clock.now()))) throw noSuchImage(name);
    await store.clearDefaultName(name);
    await sweepRetired();
    bus.emit('image.changed', { name });
    log.info({ image: name }, 'image removed');
  }

  /** Images stored before block maps existed get theirs, in the background, once. */
  async function mapOldImages() {
    for (const image of await store.withoutBlockMap()) {
      if (!(await isLocal(image))) continue; // mapped where its file is
      try {
        const scanned = await writeBlockImage(createReadStream(absolute(image), { highWaterMark: STREAM_CHUNK_BYTES }), null);
        const mapId = await blockMaps.add(scanned, clock.now());
        if (!(await store.setBlockMap(image.id, mapId, null))) continue; // mapped meanwhile (another station)
        caches.enqueue({ mapId, rawPath: absolute(image) });
        bus.emit('image.changed', { name: image.name });
      } catch (error) {
        log.warn({ err: error, image: image.name }, 'could not map an image; it is deployed whole');
      }
    }
  }

  return {
    async list(): Promise<ImageView[]> {
      const images = await store.list();
      const defaultName = await effectiveDefaultName();
      return Promise.all(images.map((image) => viewWith(image, defaultName)));
    },
    /**
     * A client that can write chunks at offsets (`sparse`) gets only the mapped ranges, zstd
     * frames from the cache if it can decompress them (`zstd`) and the cache is built; any other
     * client gets the whole image, as the original protocol had it.
     */
    async transferPlan(image: ImageRow, features: ReadonlySet<string>): Promise<TransferPlan> {
      const map = image.block_map_id === null ? undefined : await blockMaps.get(image.block_map_id);
      if (!map || !features.has('sparse')) return { mode: 'full', encoding: 'identity', bytesTotal: image.size };
      // Frames only from a cache on this disk: a copy made from this station's own file of the
      // same bytes may have its map's cache still to fetch (stations/copy-fetcher.ts).
      const zstd = features.has('zstd') && cacheHere(map);
      return { mode: 'sparse', encoding: zstd ? 'zstd' : 'identity', bytesTotal: map.mapped_bytes };
    },
    blockMapOf: async (image: ImageRow) => (image.block_map_id === null ? undefined : blockMaps.get(image.block_map_id)),
    chunksOf: async (image: ImageRow) => (image.block_map_id === null ? [] : blockMaps.chunks(image.block_map_id)),
    /** Keeps a parsed bmap for an hour; the image upload names it with `?bmap=ID`. */
    addPendingBmap(xml: string) {
      let bmap: Bmap;
      try {
        bmap = parseBmap(xml);
      } catch (error) {
        if (error instanceof BmapError) throw badRequest(`bmap refused: ${error.message}`);
        throw error;
      }
      const now = clock.now();
      for (const [key, entry] of pendingBmaps) if (entry.expires < now) pendingBmaps.delete(key);
      const id = randomUUID();
      pendingBmaps.set(id, { bmap, expires: now + 3600_000 });
      return { id, bmap };
    },
    takePendingBmap(id: string): Bmap {
      const entry = pendingBmaps.get(id);
      if (!entry || entry.expires < clock.now()) throw badRequest(`there is no uploaded bmap '${id}' (upload it first; it is kept for an hour)`);
      pendingBmaps.delete(id);
      return entry.bmap;
    },
    mapOldImages,
    mapView,
    adoptVerifiedFile,
    imports: () => [...imports.values()],
    view,
    get: (id: number) => store.get(id),
    pathOf: absolute,
    dataPath: (relativePath: string) => join(dataDir, relativePath),
    requireImage,
    addFromStream,
    /** Copies a file on this host into the library (used for golden.img). */
    async importFile(path: string, options: AddImageOptions & { expectedBytes: number }) {
      const file = createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES });
      return addFromStream(file, { ...options, origin: options.origin ?? basename(path) }).finally(() => file.destroy());
    },
    /**
     * The image a deploy uses: the one named, else the default, else a sentence saying what to
     * do. Its stored file is checked first (there, its size, its first and last MiB, its inode
     * and mtime; a millisecond or so): a 409 names the image and the reason unless it is intact,
     * and a broken one is marked (ImageView.broken) and logged once.
     */
    async resolveForDeploy(name: string | undefined): Promise<ImageRow> {
      const fallback = name || (await effectiveDefaultName());
      if (!fallback) {
        throw conflict("there is no image to deploy: add one (cm4prov image add FILE --default) or put golden.img in the server's data folder");
      }
      const image = await requireImage(fallback);
      // Not on this station yet: its deploy is accepted and waits here for the copy. Found
      // damaged here while another station has it intact: it is fetched again, and waits too.
      if (!(await isLocal(image))) return image;
      if ((await integrity.check(image)) !== null && (await local.repairable?.(image))) return image;
      await integrity.assertDeployable(image);
      return image;
    },
    /**
     * Why a deploy of the image cannot be handed out here now, or null. `checking`: it waits
     * (a re-hash under way, or this station's copy not complete yet); ask again later.
     */
    async fileProblem(image: ImageRow): Promise<{ reason: string; checking: boolean } | null> {
      const waiting = await local.waiting(image);
      if (waiting) return { reason: waiting, checking: true };
      const problem = await integrity.problemOf(image);
      if (problem && !problem.checking && (await local.repairable?.(image))) return { reason: (await local.waiting(image)) ?? problem.reason, checking: true };
      return problem;
    },
    isLocal,
    /** This station's image files, shared by content (the copy fetcher places its copies with it). */
    files,
    intactFacts,
    cacheHere,
    /** At start: checks the file of every image this station holds; returns how many are broken. */
    async checkFiles(): Promise<number> {
      let broken = 0;
      for (const image of await store.list()) if ((await isLocal(image)) && (await integrity.check(image)) !== null) broken += 1;
      return broken;
    },
    /** Resolves when background re-hashes of changed files have finished. */
    integrityIdle: () => integrity.idle(),
    async setDefault(name: string) {
      if (!(await store.setDefaultName(name))) throw noSuchImage(name);
      bus.emit('image.changed', { name });
    },
    remove,
    sweepRetired,
  };
}

export type ImageLibrary = ReturnType<typeof createImageLibrary>;

function sameChunks(a: Array<{ offset: number; length: number; sha256: string }>, b: Array<{ offset: number; length: number; sha256: string }>): boolean {
  return a.length === b.length && a.every((chunk, i) => chunk.offset === b[i]!.offset && chunk.length === b[i]!.length && chunk.sha256 === b[i]!.sha256);
}
