import { link, mkdir, rename } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { removeIfPresent } from '../shared/files.js';
import { baselineOf, type FileFacts } from './integrity.js';
import type { ImageRow } from './store.js';

/**
 * Where an image's bytes are stored from now on: named by their sha256, so that every image row
 * with those bytes shares one file, and a station fetching an image names its copy as the
 * station that added it did. Rows made before this keep their `images/<uuid>.img`: the row is
 * shared by every station, and no station can rename the others' files.
 */
export const contentFile = (sha256: string) => join('images', 'sha256', `${sha256}.img`);

export interface ContentFilesDeps {
  dataDir: string;
  /** Every image row (retired or not) naming a file. */
  rowsNaming: (file: string) => Promise<ImageRow[]>;
  /** True while a queued or running job needs the image's bytes. */
  imageInUse: (imageId: number) => Promise<boolean>;
  /**
   * The facts of the file in place, if one of the images naming it that this station holds
   * (complete, not known damaged) last saw it so: its cheap identity check (integrity.ts).
   */
  intactFacts: (file: string, size: number) => Promise<FileFacts | undefined>;
}

/**
 * The image files of this station's data folder, shared by content. Placing one and deleting one
 * both run under a lock per file name, and the decision to delete is made inside it: a place
 * (file in position, then the row or copy that names it recorded) and a delete (no active row
 * names it, no job streams it, then unlink) never interleave, so no file is deleted under a row
 * recorded by this station. Rows recorded by other stations say nothing of this station's files:
 * a copy is complete here only once recorded here, under the same lock. One server process owns a
 * data folder, so an in-process lock is the whole of it.
 */
export function createContentFiles(deps: ContentFilesDeps) {
  const { dataDir } = deps;
  const tails = new Map<string, Promise<unknown>>();
  const absolute = (file: string) => join(dataDir, file);

  async function exclusive<T>(file: string, work: () => Promise<T>): Promise<T> {
    const run = (tails.get(file) ?? Promise.resolve()).then(work);
    const tail = run.catch(() => undefined);
    tails.set(file, tail);
    try {
      return await run;
    } finally {
      if (tails.get(file) === tail) tails.delete(file);
    }
  }

  /** No active image names the file, and no job streams a retired one that does. */
  async function unneeded(file: string): Promise<boolean> {
    for (const row of await deps.rowsNaming(file)) {
      if (row.retired_at === null || (await deps.imageInUse(row.id))) return false;
    }
    return true;
  }

  async function removeUnneeded(file: string): Promise<boolean> {
    if (!(await unneeded(file))) return false;
    await removeIfPresent(absolute(file));
    return true;
  }

  /**
   * Puts a checked temp file (its bytes hash to the image's sha256) at `file`, unless an intact
   * file with those bytes is there already: then the temp is dropped and no second file is made.
   * A damaged one is replaced (a rename: a deploy streaming it keeps reading the old inode).
   * `record` writes the row or copy naming it, inside the lock; if it throws, a file nothing
   * else needs is removed again. `shared`: the file was there already.
   */
  async function place<T>(temp: string, file: string, size: number, record: (facts: FileFacts, shared: boolean) => Promise<T>): Promise<T> {
    return exclusive(file, async () => {
      let facts = await deps.intactFacts(file, size);
      const shared = facts !== undefined;
      if (facts) await removeIfPresent(temp);
      else {
        facts = baselineOf(temp, size); // a rename keeps the inode and mtime
        await mkdir(dirname(absolute(file)), { recursive: true });
        await rename(temp, absolute(file));
      }
      try {
        return await record(facts, shared);
      } catch (error) {
        await removeUnneeded(file);
        throw error;
      }
    });
  }

  return {
    exclusive,
    place,
    intactFacts: deps.intactFacts,
    /**
     * A hard link of `source` (on this data folder's filesystem, else EXDEV) placed at `file`
     * as `place` does.
     */
    async placeLink<T>(source: string, file: string, size: number, record: (facts: FileFacts, shared: boolean) => Promise<T>): Promise<T> {
      const temp = join(dataDir, 'tmp', `link-${randomUUID()}.part`);
      await link(source, temp);
      try {
        return await place(temp, file, size, record);
      } finally {
        await removeIfPresent(temp);
      }
    },
    /** Deletes the file unless an active image names it or a job streams it; true when it is gone. */
    release: (file: string) => exclusive(file, () => removeUnneeded(file)),
  };
}

export type ContentFiles = ReturnType<typeof createContentFiles>;
