import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync } from 'node:fs';
import { rm, statfs } from 'node:fs/promises';

/** 1 MiB chunks: Node's 64 KiB default halves streaming throughput for multi-GB images. */
export const STREAM_CHUNK_BYTES = 1024 * 1024;

/** Creates a folder (and its parents) readable by this user only: data folders hold backups and tokens. */
export function ensureDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  return path;
}

/** Removes a file if it is there; a clean-up path must never throw over a missing file. */
export async function removeIfPresent(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Bytes an unprivileged writer may still use on the filesystem holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const stats = await statfs(path);
  return stats.bavail * stats.bsize;
}

/** The sha256 of a whole file, in hex. */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES, signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
