import { freeBytes } from './files.js';
import { formatBytes } from './format.js';

/**
 * Below this a transfer is refused before it starts. Above it, a transfer is let through even
 * when its announced size is larger than the free space: images and backups are stored sparse
 * (empty MiBs take no disk), and a disk that does fill fails the transfer cleanly (ENOSPC).
 */
export const MIN_FREE_BYTES = 64 * 1024 * 1024;

/** A sentence when the disk holding `path` is (almost) full, else undefined. */
export async function almostFull(path: string): Promise<string | undefined> {
  const free = await freeBytes(path);
  return free < MIN_FREE_BYTES ? `the server's disk is almost full (${formatBytes(free)} free)` : undefined;
}
