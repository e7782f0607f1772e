import { mkdir, readdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { cacheOnDisk, type BlockMapRow, type BlockMapStore } from '../blockmap/store.js';
import type { ContentFiles } from '../images/content-files.js';
import type { ImageCopyStore } from '../images/copies-store.js';
import type { ImageRow, ImageStore } from '../images/store.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { removeIfPresent } from '../shared/files.js';
import type { StationClient } from './client.js';
import { bytesToFetch, CopyError, fetchCache, fetchCopy, type CopyJob, type FetchedCopy } from './copy-fetch.js';
import { STATION_DOWN_AFTER_MS } from './service.js';

export interface CopyFetcherDeps {
  copies: ImageCopyStore;
  images: Pick<ImageStore, 'get'>;
  blockMaps: BlockMapStore;
  /** This station's image files (images/content-files.ts): copies are placed, and shared, through it. */
  files: ContentFiles;
  client: StationClient;
  station: string;
  dataDir: string;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** A copy became complete here: deploys of it waiting on this station can be handed out. */
  onComplete: (image: ImageRow) => void;
  /** After a failure the image is tried again after `first`, doubling up to `max`. */
  retryMs?: { first: number; max: number };
  /** How often it looks for work without being told (a station that has a copy came up). */
  scanEveryMs?: number;
}

/** The copy row's progress is written (and announced) at most this often. */
const PROGRESS_MS = 1000;

/**
 * Fetches, in the background and one at a time, every active image this station has no
 * complete copy of, from an up station that has one (copy-fetch.ts). Woken when an image is
 * added or changes on any station, at start, by its own retry timer and by a slow scan; a
 * failure is recorded on the copy (state failed, the error) and tried again later, from another
 * station when there is one. Stopping cuts the fetch under way: its temp files are removed and
 * it starts over at the next start.
 */
export function createCopyFetcher(deps: CopyFetcherDeps) {
  const { copies, images, blockMaps, files, client, station, dataDir, clock, bus, log } = deps;
  const retry = deps.retryMs ?? { first: 1000, max: 60_000 };
  /** Why an image is not being fetched now, for the deploys that wait for it. */
  const notes = new Map<number, string>();
  const backoff = new Map<number, { failures: number; at: number; peer: string }>();
  const stopping = new AbortController();
  let running: Promise<void> | undefined;
  let again = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let scanTimer: NodeJS.Timeout | undefined;

  const cacheHere = (map: BlockMapRow) => cacheOnDisk(dataDir, map);

  /**
   * Makes the copy complete at once from a file this station holds already with the image's
   * sha256 (another image's complete copy, intact by its cheap check): no byte is fetched. The
   * same name is the same file; an older row's name is hard-linked. Under the source file's lock,
   * so that it is not deleted meanwhile.
   */
  async function fromOwnFile(image: ImageRow): Promise<boolean> {
    for (const other of await copies.heldWithBytes(image.sha256, station)) {
      if (other.id === image.id || other.size !== image.size) continue;
      const record = async (facts: { identity: string }) => {
        await copies.completeFromOwnFile(image.id, station, image.size, facts.identity, clock.now());
        return true;
      };
      const made = await files.exclusive(other.file, async () => {
        const facts = await files.intactFacts(other.file, other.size);
        if (!facts) return false;
        if (other.file === image.file) return record(facts);
        return files.placeLink(join(dataDir, other.file), image.file, image.size, record);
      });
      if (!made) continue;
      backoff.delete(image.id);
      notes.delete(image.id);
      log.info({ image: image.name, from_image: other.name }, 'image copy complete from a file this station holds with the same bytes');
      bus.emit('image.changed', { name: image.name });
      deps.onComplete(image);
      return true;
    }
    return false;
  }

  async function nextJob(): Promise<CopyJob | undefined> {
    const now = clock.now();
    const missing = await copies.missingAt(station);
    for (const id of notes.keys()) if (!missing.some((image) => image.id === id)) notes.delete(id);
    for (const image of missing) {
      const failed = backoff.get(image.id);
      if (failed && failed.at > now) continue;
      if (await fromOwnFile(image)) continue;
      const map = image.block_map_id === null ? undefined : await blockMaps.get(image.block_map_id);
      if (!map) notes.set(image.id, 'waiting for its block map, made where it was added');
      else if (!map.cache_file) notes.set(image.id, 'waiting for its chunks to be compressed where it was added');
      else {
        const peers = await copies.sourcesOf(image.id, station, now - STATION_DOWN_AFTER_MS);
        if (peers.length === 0) {
          notes.set(image.id, 'no station that has it is up with a --station-url');
          continue;
        }
        notes.delete(image.id);
        const peer = peers.find((candidate) => candidate.name !== failed?.peer) ?? peers[0]!;
        return { image, map, chunks: await blockMaps.chunks(map.id), peer: { name: peer.name, url: peer.url } };
      }
    }
    // Copies made from this station's own file under another map: that map's cache, fetched.
    // Not built here: the frames' offsets are recorded once, in the shared map, by the station
    // that built them, and this station's zstd output need not match them byte for byte.
    for (const image of await copies.heldAt(station)) {
      const failed = backoff.get(image.id);
      if (failed && failed.at > now) continue;
      const map = image.block_map_id === null ? undefined : await blockMaps.get(image.block_map_id);
      if (!map?.cache_file || cacheHere(map)) continue;
      const peers = await copies.sourcesOf(image.id, station, now - STATION_DOWN_AFTER_MS);
      const peer = peers.find((candidate) => candidate.name !== failed?.peer) ?? peers[0];
      if (peer) return { image, map, chunks: await blockMaps.chunks(map.id), peer: { name: peer.name, url: peer.url }, cacheOnly: true };
    }
    return undefined;
  }

  /** Moves the checked files into place and marks the copy complete. */
  async function install(job: CopyJob, fetched: FetchedCopy, bytes: number) {
    const { image, map } = job;
    const current = await images.get(image.id);
    if (!current || current.retired_at !== null) throw new CopyError('the image was removed while it was being fetched');
    if (current.block_map_id !== map.id) throw new CopyError('the image got a new block map while it was being fetched');
    const cachePath = join(dataDir, map.cache_file!);
    await mkdir(dirname(cachePath), { recursive: true });
    await rename(fetched.cachePath, cachePath);
    // Its content-addressed name may hold the same bytes already (another image's copy): then
    // that file is kept; a damaged one is replaced, only now that the new one is checked whole.
    await files.place(fetched.imagePath, image.file, image.size, async (facts) => {
      if (!(await copies.complete(image.id, station, bytes, facts.identity, clock.now()))) throw new CopyError('its copy was removed while it was being fetched');
    });
  }

  /** Only the zstd cache of a copy made here from this station's own file. */
  async function fetchCacheOf(job: CopyJob) {
    const { image, map, peer } = job;
    let path: string | undefined;
    try {
      path = await fetchCache(job, { client, dataDir, signal: stopping.signal });
      const current = await images.get(image.id);
      if (current?.block_map_id !== map.id) throw new CopyError('the image got a new block map while its chunks were being fetched');
      await mkdir(dirname(join(dataDir, map.cache_file!)), { recursive: true });
      await rename(path, join(dataDir, map.cache_file!));
      path = undefined;
      backoff.delete(image.id);
      log.info({ image: image.name, from: peer.name, bytes: map.cache_bytes }, "image's compressed chunks fetched (its bytes were here already)");
      bus.emit('image.changed', { name: image.name });
    } catch (error) {
      if (stopping.signal.aborted) return;
      const failures = (backoff.get(image.id)?.failures ?? 0) + 1;
      const delay = Math.min(retry.max, retry.first * 2 ** (failures - 1));
      backoff.set(image.id, { failures, at: clock.now() + delay, peer: peer.name });
      log.warn({ image: image.name, from: peer.name, retry_in_s: delay / 1000 }, `could not fetch the compressed chunks of an image (it is deployed uncompressed meanwhile): ${(error as Error).message}`);
    } finally {
      if (path) await removeIfPresent(path);
    }
  }

  async function fetchOne(job: CopyJob) {
    const { image, map, peer } = job;
    const bytes = bytesToFetch(image, map);
    if (!(await copies.startFetch(image.id, station, peer.name, bytes, clock.now()))) return;
    bus.emit('image.changed', { name: image.name });
    const started = clock.now();
    let lastReport = started;
    let reporting: Promise<void> | undefined;
    const onProgress = (done: number) => {
      const now = clock.now();
      if (reporting || now - lastReport < PROGRESS_MS) return;
      lastReport = now;
      reporting = copies
        .progress(image.id, station, done, now)
        .then(() => bus.emit('image.changed', { name: image.name }))
        .catch((error: Error) => log.warn({ err: error, image: image.name }, 'could not record the progress of an image copy'))
        .finally(() => (reporting = undefined));
    };
    let fetched: FetchedCopy | undefined;
    try {
      fetched = await fetchCopy(job, { client, dataDir, signal: stopping.signal, onProgress });
      await reporting;
      await install(job, fetched, bytes);
      backoff.delete(image.id);
      const seconds = Math.max(0.001, (clock.now() - started) / 1000);
      log.info({ image: image.name, from: peer.name, bytes, seconds, mb_per_s: Math.round(bytes / seconds / 1e5) / 10 }, 'image copy complete');
      bus.emit('image.changed', { name: image.name });
      deps.onComplete(image);
    } catch (error) {
      await reporting;
      const stopped = stopping.signal.aborted;
      const reason = stopped ? 'the station stopped in the middle of the fetch; it starts over when it is back' : (error as Error).message;
      await copies.fail(image.id, station, reason, clock.now()).catch((failure: Error) => log.warn({ err: failure, image: image.name }, 'could not record a failed image copy'));
      if (!stopped) {
        const failures = (backoff.get(image.id)?.failures ?? 0) + 1;
        const delay = Math.min(retry.max, retry.first * 2 ** (failures - 1));
        backoff.set(image.id, { failures, at: clock.now() + delay, peer: peer.name });
        log.warn({ image: image.name, from: peer.name, retry_in_s: delay / 1000 }, `could not fetch a copy of the image: ${reason}`);
      }
      bus.emit('image.changed', { name: image.name });
    } finally {
      if (fetched) await Promise.all([removeIfPresent(fetched.imagePath), removeIfPresent(fetched.cachePath)]);
    }
  }

  async function pass() {
    for (let job = await nextJob(); job && !stopping.signal.aborted; job = await nextJob()) await (job.cacheOnly ? fetchCacheOf(job) : fetchOne(job));
    // The next failed image's turn comes by itself.
    const due = Math.min(...[...backoff.values()].map((entry) => entry.at));
    clearTimeout(retryTimer);
    if (Number.isFinite(due) && !stopping.signal.aborted) retryTimer = setTimeout(trigger, Math.max(0, due - clock.now()) + 10).unref();
  }

  /** Looks for work now; calls during a pass make one more pass after it. */
  function trigger() {
    if (stopping.signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    running = pass()
      .catch((error: Error) => log.warn({ err: error }, 'could not look for images to fetch from other stations; looking again later'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          trigger();
        }
      });
  }

  return {
    trigger,
    /** Why the image's copy is not being fetched now, when known. */
    noteOf: (imageId: number) => notes.get(imageId),
    async start(scanEveryMs = deps.scanEveryMs ?? 15_000) {
      // What a fetch cut by a crash left in tmp/: it starts over.
      const leftovers = (await readdir(join(dataDir, 'tmp'))).filter((name) => name.startsWith('copy-'));
      await Promise.all(leftovers.map((name) => removeIfPresent(join(dataDir, 'tmp', name))));
      scanTimer = setInterval(trigger, scanEveryMs);
      scanTimer.unref();
      trigger();
    },
    async stop() {
      stopping.abort();
      clearInterval(scanTimer);
      clearTimeout(retryTimer);
      await running;
    },
    /** Resolves when no pass runs (tests). */
    idle: async () => {
      while (running) await running;
    },
  };
}

export type CopyFetcher = ReturnType<typeof createCopyFetcher>;
