import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';
import { AppError } from '../shared/errors.js';
import { sha256OfFile } from '../shared/files.js';
import { GOLDEN_NAME, type ImageLibrary } from './library.js';
import type { ImageStore } from './store.js';

export const GOLDEN_FILE = 'golden.img';

/** The library refused what the file holds; the same version would be refused again. */
const isRefusal = (error: unknown) => error instanceof AppError && error.statusCode === 400;

export interface GoldenWatcherDeps {
  library: ImageLibrary;
  store: ImageStore;
  /** This station: stations sharing a database each watch their own golden.img. */
  station: string;
  dataDir: string;
  clock: Clock;
  log: Logger;
  /** A file modified more recently than this is taken to be still being written. */
  settleMs?: number;
  /** Re-check interval, for filesystems where inotify misses changes (bind mounts, NFS). */
  pollMs?: number;
}

/**
 * Publishes `<data-dir>/golden.img` as the image named "golden", once per version of the file.
 * The bytes are copied into the library (so a later `cp` over golden.img never changes a
 * running deploy) and hashed during that copy: never on a device's request.
 *
 * Stations sharing a database share the one "golden" image: a version of a station's file that
 * holds the golden image's bytes already (the same file copied to every station) is only
 * recorded, and a new one replaces the golden image for all. So the last golden.img replaced on
 * any station is the golden image, and two stations never take turns replacing it.
 */
export function createGoldenWatcher(deps: GoldenWatcherDeps) {
  const { library, store, station, dataDir, clock, log } = deps;
  const settleMs = deps.settleMs ?? 2000;
  const pollMs = deps.pollMs ?? 30_000;
  const path = join(dataDir, GOLDEN_FILE);
  let watcher: FSWatcher | undefined;
  let poller: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  /** A version refused for what it holds (empty, a .7z…): said once, not retried until replaced. */
  let refused: string | undefined;

  const versionOf = (s: { ino: number; size: number; mtimeMs: number }) => `${s.ino}:${s.size}:${Math.trunc(s.mtimeMs)}`;

  async function importIfChanged(): Promise<void> {
    const before = await stat(path).catch(() => undefined);
    if (!before?.isFile()) return;
    const version = versionOf(before);
    const current = await store.byName(GOLDEN_NAME);
    if (version === refused || (version === (await store.goldenVersion(station)) && current)) return;
    const age = clock.now() - before.mtimeMs;
    if (age < settleMs) {
      scheduleRetry(settleMs - age + 50);
      return;
    }
    if (current?.size === before.size && (await sha256OfFile(path)) === current.sha256) {
      if (versionOf(await stat(path)) !== version) return scheduleRetry(settleMs); // changed while hashed
      log.info({ file: path }, 'golden.img holds the golden image already');
      await store.setGoldenVersion(station, version);
      return;
    }
    log.info({ file: path, size: before.size }, 'importing a new version of golden.img');
    await library
      .importFile(path, {
        name: GOLDEN_NAME,
        source: 'golden',
        origin: path,
        makeDefault: false,
        expectedBytes: before.size,
        beforePublish: async () => {
          const after = await stat(path);
          if (versionOf(after) !== version) throw new Error('golden.img changed while it was being copied');
        },
      })
      .catch((error: unknown) => {
        if (isRefusal(error)) refused = version;
        throw error;
      });
    await store.setGoldenVersion(station, version);
  }

  function scheduleRetry(ms: number) {
    clearTimeout(retry);
    retry = setTimeout(() => void check(), ms);
  }

  /** Looks at golden.img now; concurrent calls coalesce into one more pass. */
  function check(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = importIfChanged()
      .catch((error: Error) => {
        if (isRefusal(error)) return log.warn({ file: GOLDEN_FILE }, `golden.img is not imported (until it is replaced): ${error.message}`);
        log.warn({ err: error, file: path }, `golden.img not imported yet: ${error.message}`);
        scheduleRetry(settleMs);
      })
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          void check();
        }
      });
    return running;
  }

  return {
    check,
    start() {
      watcher = watch(dataDir, (_event, file) => {
        if (file === GOLDEN_FILE) scheduleRetry(200);
      });
      watcher.on('error', (error) => log.warn({ err: error }, 'cannot watch the data folder; polling only'));
      poller = setInterval(() => void check(), pollMs);
      poller.unref();
      return check();
    },
    async stop() {
      watcher?.close();
      clearInterval(poller);
      clearTimeout(retry);
      await running;
    },
  };
}

export type GoldenWatcher = ReturnType<typeof createGoldenWatcher>;
