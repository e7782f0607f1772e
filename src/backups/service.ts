import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { FileToSend } from '../http/send-file.js';
import type { ImageLibrary } from '../images/library.js';
import { AppError, conflict, notFound } from '../shared/errors.js';
import { removeIfPresent } from '../shared/files.js';
import { formatBytes } from '../shared/format.js';
import { normalizeMac } from '../shared/mac.js';
import { createBackupIntake, type IntakeDeps } from './intake.js';
import type { BackupCompleteness, BackupRow } from './store.js';

export type { UploadOptions } from './intake.js';

export interface BackupServiceDeps extends IntakeDeps {
  /** Where a backup goes when the operator turns it into an image. */
  images: Pick<ImageLibrary, 'adoptVerifiedFile' | 'addFromStream' | 'remove' | 'view'>;
  /** This station: a backup received by another one is on that one's disk. */
  station?: string;
  /** Asks the station that holds a backup for it (stations/service.ts fromStation). */
  fromStation?: (station: string, path: string, what: string, options: { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; signal?: AbortSignal }) => Promise<Response>;
}

/** What a download answers with: the file on this station, or the answer of the station that holds it. */
export type BackupDownload = { file: FileToSend } | { relayed: Response };

export interface BackupView {
  id: number;
  device_mac: string;
  job_id: number | null;
  size: number;
  sha256: string;
  created_at: string;
  /** What is known of it: whether it is the whole eMMC, and who checked its sha256. */
  verification: { completeness: BackupCompleteness; device_checked: boolean; summary: string };
}

/** A page of the backup list: `skipped` newer ones come before it, `next` is the cursor of the one after. */
export interface BackupPage {
  backups: BackupView[];
  total: number;
  skipped: number;
  next: string | null;
}

/** Lists show this many backups unless asked for another number (at most MAX_BACKUP_PAGE). */
export const BACKUP_PAGE_SIZE = 100;
export const MAX_BACKUP_PAGE = 500;

function proofSummary(backup: Pick<BackupRow, 'size' | 'completeness' | 'device_checked'>): string {
  if (backup.completeness === 'size_unknown') {
    return `${formatBytes(backup.size)} received; the device never gave its eMMC size, so whether this is the whole eMMC is not known`;
  }
  return backup.device_checked
    ? 'whole eMMC; sha256 verified: the device read what arrived'
    : 'whole eMMC received; sha256 computed by the server (the device sent no checksum)';
}

/** Stored backups: intake (intake.ts), the list, promotion to an image, deletion. */
export function createBackupService(deps: BackupServiceDeps) {
  const { store, images, dataDir, clock, bus, log } = deps;
  const intake = createBackupIntake(deps);

  function view(backup: BackupRow): BackupView {
    return {
      id: backup.id,
      device_mac: backup.device_mac,
      job_id: backup.job_id,
      size: backup.size,
      sha256: backup.sha256,
      created_at: new Date(backup.created_at).toISOString(),
      verification: { completeness: backup.completeness, device_checked: backup.device_checked === 1, summary: proofSummary(backup) },
    };
  }

  async function get(id: number): Promise<BackupRow> {
    const backup = await store.get(id);
    if (!backup) throw notFound(`there is no backup ${id}`);
    return backup;
  }

  /** The station whose disk holds the backup, when it is not this one (null: it is here). */
  const elsewhere = (backup: BackupRow) => (backup.station !== null && deps.station !== undefined && backup.station !== deps.station ? backup.station : null);

  const fileOf = (backup: BackupRow): FileToSend => ({
    path: join(dataDir, backup.file),
    size: backup.size,
    etag: `sha256:${backup.sha256}`,
    downloadName: `backup-${backup.device_mac.replaceAll(':', '')}-${backup.id}.img`,
  });

  return {
    ...intake,
    view,
    /** One page of stored backups, newest first (of one device, when given); `next` is the cursor of the page after. */
    async page(filter: { mac?: string; cursor?: number; limit?: number }): Promise<BackupPage> {
      const { rows, total, skipped, next } = await store.page({
        mac: filter.mac === undefined ? undefined : normalizeMac(filter.mac),
        cursor: filter.cursor,
        limit: filter.limit ?? BACKUP_PAGE_SIZE,
      });
      return { backups: rows.map(view), total, skipped, next: next === null ? null : String(next) };
    },
    get,
    pathOf: (backup: BackupRow) => join(dataDir, backup.file),
    /**
     * A download, from any station: the file when it is here, else streamed from the station
     * that received it (Range, If-Range and the method passed on), so an operator gets any
     * backup wherever they are logged in.
     */
    async download(id: number, request: { method: 'GET' | 'HEAD'; headers: Record<string, string>; signal?: AbortSignal }): Promise<BackupDownload> {
      const backup = await get(id);
      const station = elsewhere(backup);
      if (station === null || !deps.fromStation) return { file: fileOf(backup) };
      return { relayed: await deps.fromStation(station, `/api/station/backups/${id}`, `backup ${id}`, request) };
    },
    /** A backup whose file is on this station, for another station's request. */
    async localFile(id: number): Promise<FileToSend> {
      const backup = await get(id);
      const station = elsewhere(backup);
      if (station !== null) throw conflict(`backup ${id} is on station ${station}, not on ${deps.station}`);
      return fileOf(backup);
    },

    /**
     * Makes a backup deployable to other devices, as an image named `name`. Here the image is a
     * hard link to the backup's file (or a checked copy), so a delete of the backup meanwhile
     * cannot take its bytes from the image. A backup on another station is streamed from it into
     * this station's library and must hash to the backup's sha256; the other stations then fetch
     * the image as any other.
     */
    async promoteToImage(id: number, name: string) {
      const backup = await get(id);
      const origin = `backup ${backup.id} of ${backup.device_mac}`;
      const station = elsewhere(backup);
      if (station === null || !deps.fromStation) {
        const image = await images.adoptVerifiedFile(join(dataDir, backup.file), { name, size: backup.size, sha256: backup.sha256, origin, blockMapId: backup.block_map_id });
        return images.view(image);
      }
      const reply = await deps.fromStation(station, `/api/station/backups/${id}`, `backup ${id}`, {});
      if (!reply.ok || !reply.body) {
        await reply.body?.cancel();
        throw new AppError(502, 'station_error', `station ${station}, which holds backup ${id}, answered ${reply.status} when asked for it`);
      }
      const image = await images.addFromStream(Readable.fromWeb(reply.body as WebReadableStream<Uint8Array>), { name, origin, source: 'backup', expectedBytes: backup.size });
      if (image.sha256 !== backup.sha256) {
        await images.remove(name);
        throw conflict(`backup ${id} arrived from station ${station} with another sha256 than it was stored with: its file there is damaged, and no image was made`);
      }
      return images.view(image);
    },

    async remove(id: number) {
      const backup = await get(id);
      // Of two deletes (requests or stations) one marks it; the other is told it is gone.
      if (!(await store.markDeleted(id, clock.now()))) throw notFound(`there is no backup ${id}`);
      // A backup on another station's disk is removed there, when it hears of this (removeDeletedFiles).
      if (elsewhere(backup) === null) await removeIfPresent(join(dataDir, backup.file));
      bus.emit('backup.changed', { backupId: id });
      log.info({ backup: id }, 'backup removed');
    },

    /**
     * Frees this station's disk of backups deleted on another station: the one a change from
     * there names, or all of them (after this station was cut off from the others' word).
     */
    async removeDeletedFiles(id?: number): Promise<void> {
      if (deps.station === undefined) return;
      for (const deleted of await store.deletedFilesAt(deps.station, id)) {
        const removed = await unlink(join(dataDir, deleted.file)).then(
          () => true,
          (error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT') return false;
            throw error;
          },
        );
        if (removed) log.info({ backup: deleted.id }, 'file of a backup deleted on another station removed');
      }
    },
  };
}

export type BackupService = ReturnType<typeof createBackupService>;
