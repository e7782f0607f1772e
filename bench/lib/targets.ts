import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { MIB } from './stats.js';

/** Fresh sparse target files (image size + 16 MiB, as an eMMC is larger than its image) for one run; removed after it. */
export async function withTargets<T>(targets: string[], imageBytes: number, body: () => Promise<T>): Promise<T> {
  for (const target of targets) {
    rmSync(target, { force: true });
    writeFileSync(target, '');
    truncateSync(target, imageBytes + 16 * MIB);
  }
  try {
    return await body();
  } finally {
    for (const target of targets) rmSync(target, { force: true });
  }
}
