import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Logger } from 'pino';
import { conflict } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { sha256OfFile } from '../shared/files.js';
import type { ImageRow, ImageStore } from './store.js';

const EDGE_BYTES = 1024 * 1024;
export const CHECKING = 'its file was modified after import (new inode or mtime): its whole sha256 is being checked again';
const MISMATCH = "its file no longer hashes to the image's sha256: it was changed after import";

/** What the cheap check compares: "inode:mtime(ns)" and the sha256 of the first and last MiB. */
export interface FileFacts {
  identity: string;
  edgesSha256: string;
}

/**
 * Looks at a stored image file: there, a regular file, `size` bytes long, and its facts.
 * Synchronous on purpose (a stat and at most two 1 MiB reads, about a millisecond from the page
 * cache), so that a deploy order is checked before it is accepted, in the same call.
 */
export function examineFile(path: string, size: number): { facts: FileFacts } | { problem: string } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? 'its file is missing from the data folder' : `its file cannot be opened (${code})` };
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) return { problem: 'its file is not a regular file' };
    if (Number(stats.size) !== size) {
      return { problem: `its file has ${stats.size} bytes, not the ${size} it was imported with (truncated or overwritten)` };
    }
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(Math.min(EDGE_BYTES, size));
    for (const start of new Set([0, Math.max(0, size - EDGE_BYTES)])) {
      for (let done = 0; done < buffer.length; ) {
        const n = readSync(fd, buffer, done, buffer.length - done, start + done);
        if (n === 0) return { problem: 'its file changed while it was being checked' };
        done += n;
      }
      hash.update(buffer);
    }
    return { facts: { identity: `${stats.ino}:${stats.mtimeNs}`, edgesSha256: hash.digest('hex') } };
  } finally {
    closeSync(fd);
  }
}

/** The facts of a file just written: what later checks compare against. */
export function baselineOf(path: string, size: number): FileFacts {
  const examined = examineFile(path, size);
  if ('problem' in examined) throw new Error(`the image file just written is not as written: ${examined.problem}`);
  return examined.facts;
}


/**
 * Where this station keeps what its own file looked like when it was last known intact. The
 * inode and mtime differ from disk to disk: alone, the image row holds them; with several
 * stations, each station's copy row does (images/local-copy.ts).
 */
export interface FileBaseline {
  identityOf(image: ImageRow): Promise<string | null>;
  save(image: ImageRow, facts: FileFacts): Promise<void>;
  /** Why this station's file was last found unfit to deploy; null while intact. */
  brokenOf(image: ImageRow): Promise<string | null>;
  /** Records a verdict (`pending`: a re-hash is under way); true when this changed it. */
  setBroken(image: ImageRow, reason: string | null, pending: boolean): Promise<boolean>;
}

export interface IntegrityDeps {
  store: ImageStore;
  pathOf: (image: ImageRow) => string;
  bus: EventBus;
  log: Logger;
  /** The image row's, unless given. */
  baseline?: FileBaseline;
}

/**
 * Notices image files deleted, truncated or changed behind the server's back (at start and
 * before each deploy) and marks those images broken, with the reason, until they are intact.
 * Size and the first and last MiB are checked every time; a new inode or mtime with those intact
 * means "changed somewhere, maybe": the whole sha256 is checked again in the background.
 */
export function createIntegrityChecker({ store, pathOf, bus, log, baseline = rowBaseline(store) }: IntegrityDeps) {
  const verifying = new Map<number, Promise<void>>();
  /** Per image, the identity whose whole sha256 was found wrong: no use hashing it again. */
  const failed = new Map<number, string>();

  async function mark(image: ImageRow, reason: string | null) {
    if ((await baseline.brokenOf(image)) === reason) return;
    const changed = await baseline.setBroken(image, reason, reason === CHECKING);
    if (!changed) return; // another check (request or station) marked it and said so
    if (reason) log.warn({ image: image.name, reason }, 'image file is broken: it is not deployed');
    else log.info({ image: image.name }, 'image file is intact again');
    bus.emit('image.changed', { name: image.name });
  }

  async function verdict(image: ImageRow): Promise<string | null> {
    if (image.size === 0) return 'it is empty (0 bytes): there is nothing to deploy';
    const identity = await baseline.identityOf(image);
    const examined = examineFile(pathOf(image), image.size);
    if ('problem' in examined) return examined.problem;
    const { facts } = examined;
    if (failed.get(image.id) === facts.identity) return (await baseline.brokenOf(image)) ?? MISMATCH;
    if (image.edges_sha256 === null) {
      verifyWhole(image, facts); // imported before these checks: its baseline once it hashes right
      return baseline.brokenOf(image);
    }
    if (facts.edgesSha256 !== image.edges_sha256) return 'its file was changed: its first or last MiB differ from what was imported';
    if (facts.identity === identity) return null;
    verifyWhole(image, facts);
    return CHECKING;
  }

  function verifyWhole(image: ImageRow, before: FileFacts) {
    if (verifying.has(image.id)) return;
    const run = (async () => {
      const sha256 = await sha256OfFile(pathOf(image));
      const after = examineFile(pathOf(image), image.size);
      const current = await store.get(image.id);
      if (!current || current.retired_at !== null) return;
      if ('problem' in after) return mark(current, after.problem);
      if (after.facts.identity !== before.identity) return; // changed again meanwhile: the next check looks
      if (sha256 !== current.sha256) {
        failed.set(image.id, after.facts.identity);
        return mark(current, MISMATCH);
      }
      await baseline.save(current, after.facts);
      failed.delete(image.id);
      await mark(current, null);
    })()
      .catch((error: Error) => log.warn({ image: image.name, err: error }, 'could not check an image file'))
      .finally(() => verifying.delete(image.id));
    verifying.set(image.id, run);
  }

  /** Checks one image's file now; returns why it is broken, or null. */
  async function check(image: ImageRow): Promise<string | null> {
    const reason = await verdict(image);
    await mark(image, reason);
    return reason;
  }

  return {
    check,
    /** Why the image's file cannot be deployed now, or null; `checking`: a re-hash is under way, ask again later. */
    async problemOf(image: ImageRow): Promise<{ reason: string; checking: boolean } | null> {
      const reason = await check(image);
      return reason === null ? null : { reason, checking: reason === CHECKING };
    },
    /** Throws a 409 naming the image and why, unless its file is intact. */
    async assertDeployable(image: ImageRow) {
      const reason = await check(image);
      if (!reason) return;
      const next = reason === CHECKING ? 'try again once the check is done (cm4prov image list)' : 'put its file back, or remove it and add it again';
      throw conflict(`image '${image.name}' cannot be deployed: ${reason}; ${next}`);
    },
    /** Resolves once background checks have finished (for tests and shutdown). */
    idle: async () => {
      while (verifying.size > 0) await Promise.all(verifying.values());
    },
  };
}

export type IntegrityChecker = ReturnType<typeof createIntegrityChecker>;

/** A station alone: its file's identity and verdict are the image row's. */
export function rowBaseline(store: ImageStore): FileBaseline {
  return {
    identityOf: async (image) => image.file_identity,
    save: (image, facts) => store.setBaseline(image.id, facts.identity, facts.edgesSha256),
    brokenOf: async (image) => image.broken,
    async setBroken(image, reason) {
      const changed = await store.setBroken(image.id, reason);
      image.broken = reason;
      return changed;
    },
  };
}
