import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';

/** Random bytes (incompressible, so no layer can cheat) with a few zero runs like a real disk. */
export function writeImageFile(path: string, bytes: number): string {
  const data = randomBytes(bytes);
  data.fill(0, Math.floor(bytes / 3), Math.floor(bytes / 2));
  writeFileSync(path, data);
  return createHash('sha256').update(data).digest('hex');
}

/** A file standing in for an eMMC: `bytes` long, all zeros (sparse). */
export async function makeFakeEmmc(path: string, bytes: number): Promise<void> {
  writeFileSync(path, '');
  await truncate(path, bytes);
}

/** sha256 of a file's first `bytes` bytes (all of it when omitted). */
export function sha256OfFile(path: string, bytes?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, bytes === undefined ? {} : { start: 0, end: bytes - 1 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
