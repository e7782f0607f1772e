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
  /** Null when this station's copy is complete and intact; else why a deploy of the image waits here. */
  waiting(image: ImageRow): Promise<string | null>;
  /** Where its file's identity and verdict are kept; the image row's when undefined. */
  baseline?: FileBaseline;
  /**
   * Whether a damaged file of the image is fetched again from another station (which holds an
   * intact copy): then a deploy of it waits here instead of being refused.
   */
  repairable?(image: ImageRow): Promise<boolean>;
}

export const aloneCopy: LocalCopy = { waiting: async () => null };

/** "fetching 45% from line-a", or why no fetch runs. */
function describeFetch(copy: ImageCopyRow | undefined, note: string | undefined, again: boolean): string {
  if (copy?.state === 'fetching') {
    const percent = copy.bytes_total ? Math.floor((100 * copy.bytes_done) / copy.bytes_total) : 0;
    return again ? `fetching it again from ${copy.source_station} (${percent}%)` : `fetching ${percent}% from ${copy.source_station}`;
  }
  if (copy?.state === 'failed') return `fetching it ${again ? 'again ' : ''}from ${copy.source_station} failed (${copy.error}); it is tried again`;
  return note ?? `waiting to fetch it ${again ? 'again ' : ''}from a station that has it`;
}

/** Why a deploy waits for this station's copy: not here yet, or here but damaged and fetched again. */
export function describeWait(copy: ImageCopyRow | undefined, note: string | undefined): string {
  if (copy?.broken) return `this station's copy is damaged (${copy.broken}); ${describeFetch(copy, note, true)}`;
  return `not on this station yet: ${describeFetch(copy, note, false)}`;
}

export function sharedCopy(deps: {
  copies: ImageCopyStore;
  images: ImageStore;
  station: string;
  /** The fetcher's word on an image it is not fetching (no station up that has it, …). */
  note: (imageId: number) => string | undefined;
  /** This station's copy of an image was found damaged: it is to be fetched again. */
  onDamaged: (image: ImageRow) => void;
}): LocalCopy {
  const { copies, images, station } = deps;
  return {
    async waiting(image) {
      const copy = await copies.get(image.id, station);
      if (copy?.state !== 'complete') return describeWait(copy, deps.note(image.id));
      // Damaged with no intact copy elsewhere to fetch: held here as a station alone holds its
      // files, checked before each deploy (refused while broken, intact again if put back).
      if (copy.broken === null || !(await copies.intactElsewhere(image.id, station))) return null;
      return describeWait(copy, deps.note(image.id));
    },
    baseline: {
      identityOf: async (image) => (await copies.get(image.id, station))?.file_identity ?? null,
      async save(image, facts) {
        await copies.setIdentity(image.id, station, facts.identity);
        if (image.edges_sha256 !== facts.edgesSha256) await images.setEdges(image.id, facts.edgesSha256);
      },
      brokenOf: async (image) => (await copies.get(image.id, station))?.broken ?? null,
      // Only this station's copy: the image, and the other stations' copies, stay deployable.
      // A re-hash under way is no verdict: deploys wait for it (integrity.ts), nothing is marked.
      async setBroken(image, reason, pending) {
        const changed = await copies.setBroken(image.id, station, pending ? null : reason);
        if (changed && reason !== null && !pending) deps.onDamaged(image);
        return changed;
      },
    },
    repairable: (image) => copies.intactElsewhere(image.id, station),
  };
}
