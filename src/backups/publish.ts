import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockImage } from '../blockmap/image-writer.js';
import { inTransaction } from '../db/database.js';
import type { JobRow } from '../jobs/store.js';
import { conflict } from '../shared/errors.js';
import { ensureDir, removeIfPresent } from '../shared/files.js';
import type { IntakeDeps } from './intake.js';
import { createBackupStore, type BackupCompleteness, type BackupRow } from './store.js';

/** How a stored backup was proven, which decides how its job ends. */
export interface Proof {
  /** The device sent the sha256 of what it read, and it matched. */
  deviceChecked: boolean;
  completeness: BackupCompleteness;
}

/**
 * Publishes a whole, checked body: atomic rename into backups/, then the backup row and its job's
 * end in one transaction. The job ends ok when the body is known to be the whole eMMC, else
 * unconfirmed; what was checked, and by whom, goes with it. The file is in place before its row:
 * a process that dies in between leaves a file without a row, which the next start removes
 * (sweepLeftovers), and its job still running, which the stall timeout ends (or the device's
 * report, finding no body). Never a row without its file, nor a backup of a job that goes on.
 */
export function createPublisher(deps: Pick<IntakeDeps, 'db' | 'jobs' | 'caches' | 'dataDir' | 'clock' | 'bus' | 'log'>) {
  const { db, jobs, caches, dataDir, clock, bus, log } = deps;

  return async function publish(job: JobRow, temp: string, image: Pick<BlockImage, 'size' | 'sha256'>, mapId: number, proof: Proof): Promise<BackupRow> {
    const { size: bytes, sha256 } = image;
    const stamp = new Date(clock.now()).toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const folder = job.device_mac.replaceAll(':', '');
    const file = join('backups', folder, `${stamp}-job${job.id}.img`);
    ensureDir(join(dataDir, 'backups', folder));
    await rename(temp, join(dataDir, file));
    const whole = proof.completeness === 'whole';
    let stored: { backup: BackupRow; announce(): Promise<void> };
    try {
      stored = await inTransaction(db, async (tx) => {
        // The station that served the job received the body: its disk holds the file.
        const values = { mac: job.device_mac, jobId: job.id, file, size: bytes, sha256, blockMapId: mapId, station: job.station, ...proof };
        const backup = await createBackupStore(tx).add(values, clock.now());
        const ended = await jobs.finishWithin(tx, job.id, {
          state: whole ? 'ok' : 'unconfirmed',
          error: whole ? null : 'the device never gave its eMMC size: the server cannot tell whether the body it received is the whole eMMC',
          sha256,
          bytesDone: bytes,
          backupId: backup.id,
          verified: proof.deviceChecked && whole ? 'device_sha256' : whole ? 'server_sha256' : 'size_unknown',
          verifiedBytes: bytes,
        });
        // Thrown inside the transaction, so the row goes too: a job that ended meanwhile keeps no backup.
        if (!ended) throw conflict(`job ${job.id} ended before its backup could be stored`);
        return { backup, announce: ended.announce };
      });
    } catch (error) {
      await removeIfPresent(join(dataDir, file));
      throw error;
    }
    const { backup } = stored;
    await stored.announce();
    log.info({ backup: backup.id, job: job.id, mac: job.device_mac, size: bytes, sha256 }, 'backup stored');
    // Compressed in the background, so it can be deployed back as fast as any image.
    caches.enqueue({ mapId, rawPath: join(dataDir, file) });
    bus.emit('backup.changed', { backupId: backup.id });
    return backup;
  };
}
