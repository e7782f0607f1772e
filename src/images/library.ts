import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, insufficientStorage, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { freeBytes, removeIfPresent, STREAM_CHUNK_BYTES } from '../shared/files.js';
import { formatBytes } from '../shared/format.js';
import { StreamWriteError, writeHashed } from '../shared/hashed-write.js';
import type { ImageRow, ImageSource, ImageStore } from './store.js';

/** The library name under which the data dir's golden.img is published. */
export const GOLDEN_NAME = 'golden';
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

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
  dataDir: string;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** True while a queued or running job needs the image's bytes. */
  imageInUse: (imageId: number) => boolean;
}

export interface AddImageOptions {
  name: string;
  origin: string | null;
  source?: ImageSource;
  makeDefault?: boolean;
  expectedBytes?: number;
  /** Last check before the image becomes visible; throw to discard it (e.g. the source changed). */
  beforePublish?: () => Promise<void>;
}

export function createImageLibrary(deps: ImageLibraryDeps) {
  const { store, dataDir, clock, bus, log, imageInUse } = deps;
  const imports = new Map<string, ImportProgress>();
  const absolute = (image: Pick<ImageRow, 'file'>) => join(dataDir, image.file);

  function view(image: ImageRow): ImageView {
    return {
      id: image.id,
      name: image.name,
      size: image.size,
      sha256: image.sha256,
      source: image.source,
      origin: image.origin,
      created_at: new Date(image.created_at).toISOString(),
      default: image.name === effectiveDefaultName(),
      in_use: imageInUse(image.id),
    };
  }

  /** The explicit default if set, else golden.img's image when there is one. */
  function effectiveDefaultName(): string | undefined {
    const explicit = store.defaultName();
    if (explicit && store.byName(explicit)) return explicit;
    return store.byName(GOLDEN_NAME) ? GOLDEN_NAME : undefined;
  }

  function requireImage(name: string): ImageRow {
    const image = store.byName(name);
    if (!image) throw notFound(`there is no image named '${name}' (see: cm4prov image list)`);
    return image;
  }

  async function ensureRoom(bytes: number | undefined) {
    if (bytes === undefined) return;
    const free = await freeBytes(dataDir);
    if (free < bytes) {
      throw insufficientStorage(`not enough space in ${dataDir}: the image needs ${formatBytes(bytes)}, ${formatBytes(free)} is free`);
    }
  }

  /**
   * Streams bytes into a new immutable image file. Nothing is visible until the whole body
   * is on disk with its sha256; a failed or cut transfer leaves no row and no file.
   */
  async function addFromStream(source: Readable, options: AddImageOptions): Promise<ImageRow> {
    const { name } = options;
    checkNewName(name, options.source ?? 'upload');
    const replacing = options.source === 'golden' ? store.byName(GOLDEN_NAME) : undefined;
    await ensureRoom(options.expectedBytes);

    const file = join('images', `${randomUUID()}.img`);
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
      const written = await writeHashed(source, temp, {
        expectedBytes: options.expectedBytes,
        onProgress: (bytes) => (progress.bytes_done = bytes),
      });
      await options.beforePublish?.().catch(async (error: unknown) => {
        await removeIfPresent(temp);
        throw error;
      });
      await rename(temp, join(dataDir, file));
      let image: ImageRow;
      try {
        image = store.add(
          { name, file, size: written.bytes, sha256: written.sha256, source: options.source ?? 'upload', origin: options.origin },
          clock.now(),
          replacing?.id,
        );
      } catch (error) {
        await removeIfPresent(join(dataDir, file));
        if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw conflict(`an image named '${name}' already exists`);
        throw error;
      }
      if (options.makeDefault) store.setDefaultName(name);
      log.info({ image: name, size: image.size, sha256: image.sha256 }, 'image added');
      bus.emit('image.changed', { name });
      sweepRetired();
      return image;
    } catch (error) {
      if (error instanceof StreamWriteError) {
        if (error.failure === 'disk_full') throw insufficientStorage(`image '${name}' was not added: ${error.message}`);
        throw badRequest(`image '${name}' was not added: ${error.message}`);
      }
      throw error;
    } finally {
      imports.delete(temp);
    }
  }

  function checkNewName(name: string, source: ImageSource) {
    if (!NAME_PATTERN.test(name)) {
      throw badRequest(`'${name}' is not a usable image name: use letters, digits, '.', '_', '+' or '-' (at most 128)`);
    }
    if (name === GOLDEN_NAME && source !== 'golden') {
      throw conflict(`the name '${GOLDEN_NAME}' is kept for the golden.img file in the data folder; choose another`);
    }
    if (source !== 'golden' && store.byName(name)) {
      throw conflict(`an image named '${name}' already exists (remove it first, or choose another name)`);
    }
  }

  /** Deletes the files of retired images that no active job still streams. */
  function sweepRetired() {
    for (const image of store.retiredWithFiles()) {
      if (imageInUse(image.id)) continue;
      removeIfPresent(absolute(image))
        .then(() => store.markFileRemoved(image.id))
        .catch((error: Error) => log.warn({ image: image.name, err: error }, 'could not remove a retired image file'));
    }
  }

  /**
   * Publishes an existing immutable file whose size and sha256 are already known (a backup):
   * hard-linked when it is on the same filesystem (no copy, no re-hash), else copied and checked.
   */
  async function adoptVerifiedFile(path: string, facts: { name: string; size: number; sha256: string; origin: string }): Promise<ImageRow> {
    checkNewName(facts.name, 'backup');
    const file = join('images', `${randomUUID()}.img`);
    try {
      await link(path, join(dataDir, file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      const copied = await addFromStream(createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES }), {
        name: facts.name,
        origin: facts.origin,
        source: 'backup',
        expectedBytes: facts.size,
      });
      if (copied.sha256 !== facts.sha256) {
        remove(facts.name);
        throw conflict(`the copy of ${facts.origin} does not hash to its recorded sha256; the file is damaged`);
      }
      return copied;
    }
    let image: ImageRow;
    try {
      image = store.add({ name: facts.name, file, size: facts.size, sha256: facts.sha256, source: 'backup', origin: facts.origin }, clock.now());
    } catch (error) {
      await removeIfPresent(join(dataDir, file));
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw conflict(`an image named '${facts.name}' already exists`);
      throw error;
    }
    log.info({ image: facts.name, origin: facts.origin }, 'image added from a backup');
    bus.emit('image.changed', { name: facts.name });
    return image;
  }

  function remove(name: string) {
    const image = requireImage(name);
    if (imageInUse(image.id)) {
      throw conflict(`image '${name}' is in use by a queued or running deploy; cancel or wait for it first`);
    }
    store.retire(image.id, clock.now());
    if (store.defaultName() === name) store.setDefaultName(null);
    sweepRetired();
    bus.emit('image.changed', { name });
    log.info({ image: name }, 'image removed');
  }

  return {
    list: () => store.list().map(view),
    adoptVerifiedFile,
    imports: () => [...imports.values()],
    view,
    get: (id: number) => store.get(id),
    pathOf: absolute,
    requireImage,
    addFromStream,
    /** Copies a file on this host into the library (used for golden.img). */
    async importFile(path: string, options: AddImageOptions & { expectedBytes: number }) {
      return addFromStream(createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES }), {
        ...options,
        origin: options.origin ?? basename(path),
      });
    },
    /** The image a deploy uses: the one named, else the default, else a sentence saying what to do. */
    resolveForDeploy(name: string | undefined): ImageRow {
      if (name) return requireImage(name);
      const fallback = effectiveDefaultName();
      if (!fallback) {
        throw conflict(`there is no image to deploy: add one (cm4prov image add FILE --default) or put golden.img in ${dataDir}`);
      }
      return requireImage(fallback);
    },
    setDefault(name: string) {
      requireImage(name);
      store.setDefaultName(name);
      bus.emit('image.changed', { name });
    },
    remove,
    sweepRetired,
  };
}

export type ImageLibrary = ReturnType<typeof createImageLibrary>;
