import type { ImageCopyRow, ImageCopyStore } from './copies-store.js';
import type { FileBaseline } from './integrity.js';
import type { ImageRow, ImageStore } from './store.js';

/**
 * This station's own copy of each image. A station alone (SQLite) holds every image's file
 * itself; a station sharing PostgreSQL holds those whose copy is complete here, and fetches the
 * rest (stations/copy-fetcher.ts): until then a deploy of one waits, and no check of a file it
 * does not have yet marks the shared image broken.
 */
export interface LocalCopy {
  /** Null when this station's copy is complete; else why a deploy of the image waits here. */
  waiting(image: ImageRow): Promise<string | null>;
  /** Where its file's identity is kept; the image row's when undefined. */
  baseline?: FileBaseline;
}

export const aloneCopy: LocalCopy = { waiting: async () => null };

/** "fetching 45% from line-a", or why no fetch runs. */
export function describeWait(copy: ImageCopyRow | undefined, note: string | undefined): string {
  if (copy?.state === 'fetching') {
    const percent = copy.bytes_total ? Math.floor((100 * copy.bytes_done) / copy.bytes_total) : 0;
    return `fetching ${percent}% from ${copy.source_station}`;
  }
  if (copy?.state === 'failed') return `fetching it from ${copy.source_station} failed (${copy.error}); it is tried again`;
  return note ?? 'waiting to fetch it from a station that has it';
}

export function sharedCopy(deps: {
  copies: ImageCopyStore;
  images: ImageStore;
  station: string;
  /** The fetcher's word on an image it is not fetching (no station up that has it, …). */
  note: (imageId: number) => string | undefined;
}): LocalCopy {
  const { copies, images, station } = deps;
  return {
    async waiting(image) {
      const copy = await copies.get(image.id, station);
      return copy?.state === 'complete' ? null : describeWait(copy, deps.note(image.id));
    },
    baseline: {
      identityOf: async (image) => (await copies.get(image.id, station))?.file_identity ?? null,
      async save(image, facts) {
        await copies.setIdentity(image.id, station, facts.identity);
        if (image.edges_sha256 !== facts.edgesSha256) await images.setEdges(image.id, facts.edgesSha256);
      },
    },
  };
}
