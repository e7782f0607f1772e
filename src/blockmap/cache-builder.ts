import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { buildChunkCache } from './chunk-cache.js';
import type { BlockMapStore } from './store.js';

export interface CacheJob {
  mapId: number;
  /** The raw image (absolute path). */
  rawPath: string;
}

export interface CacheProgress {
  state: 'queued' | 'building';
  done: number;
  total: number;
}

/**
 * Compresses block maps' chunks into their zstd caches, one map at a time, in the background.
 * Until its cache is ready an image is still deployable, sent uncompressed.
 */
export function createCacheBuilder(deps: { store: BlockMapStore; dataDir: string; log: Logger; onReady?: (mapId: number) => void }) {
  const { store, dataDir, log } = deps;
  const cacheDir = join(dataDir, 'cache');
  const queue: CacheJob[] = [];
  const progress = new Map<number, CacheProgress>();
  let running: Promise<void> | undefined;
  const stopping = new AbortController();

  async function drain() {
    while (queue.length && !stopping.signal.aborted) {
      const job = queue.shift()!;
      const state: CacheProgress = { state: 'building', done: 0, total: 0 };
      progress.set(job.mapId, state);
      const file = join('cache', `map-${job.mapId}.zst`);
      // Everything, the database reads included, inside the try: this runs in the background,
      // where an escaping error would end the process.
      try {
        const chunks = await store.plainChunks(job.mapId);
        state.total = chunks.length;
        mkdirSync(cacheDir, { recursive: true });
        const built = await buildChunkCache(job.rawPath, chunks, join(dataDir, file), {
          onProgress: (done) => (state.done = done),
          signal: stopping.signal,
        });
        await store.saveCache(job.mapId, file, built.bytes, built.chunks);
        const map = (await store.get(job.mapId))!;
        log.info({ map: job.mapId, mapped: map.mapped_bytes, compressed: built.bytes }, 'compressed chunk cache ready');
        deps.onReady?.(job.mapId);
      } catch (error) {
        if (stopping.signal.aborted) return; // finished at the next start
        log.warn({ err: error, map: job.mapId }, 'could not build the compressed chunk cache; the image is sent uncompressed');
      } finally {
        progress.delete(job.mapId);
      }
    }
  }

  return {
    enqueue(job: CacheJob) {
      if (progress.has(job.mapId) || queue.some((queued) => queued.mapId === job.mapId)) return;
      queue.push(job);
      progress.set(job.mapId, { state: 'queued', done: 0, total: 0 });
      running ??= drain().finally(() => (running = undefined));
    },
    progressOf: (mapId: number) => progress.get(mapId),
    async stop() {
      stopping.abort();
      await running;
    },
    /** Resolves when nothing is queued or building (tests, benchmarks). */
    idle: async () => {
      while (running) await running;
    },
  };
}

export type CacheBuilder = ReturnType<typeof createCacheBuilder>;
