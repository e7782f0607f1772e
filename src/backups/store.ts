import type { Db } from '../db/open.js';

export interface BackupRow {
  id: number;
  device_mac: string;
  job_id: number | null;
  file: string;
  size: number;
  sha256: string;
  created_at: number;
  deleted_at: number | null;
  block_map_id: number | null;
}

export function createBackupStore(db: Db) {
  const insert = db.prepare<{ mac: string; jobId: number; file: string; size: number; sha256: string; blockMapId: number; now: number }>(`
    INSERT INTO backups (device_mac, job_id, file, size, sha256, block_map_id, created_at)
    VALUES (@mac, @jobId, @file, @size, @sha256, @blockMapId, @now)`);
  const byId = db.prepare<[number], BackupRow>('SELECT * FROM backups WHERE id = ? AND deleted_at IS NULL');
  const all = db.prepare<[], BackupRow>('SELECT * FROM backups WHERE deleted_at IS NULL ORDER BY id DESC');
  const forDevice = db.prepare<[string], BackupRow>(
    'SELECT * FROM backups WHERE device_mac = ? AND deleted_at IS NULL ORDER BY id DESC',
  );
  const markDeleted = db.prepare<{ id: number; now: number }>(
    'UPDATE backups SET deleted_at = @now WHERE id = @id AND deleted_at IS NULL',
  );

  const liveFiles = db.prepare<[], { file: string }>('SELECT file FROM backups WHERE deleted_at IS NULL');

  return {
    allFiles: () => liveFiles.all().map((row) => row.file),
    add(values: { mac: string; jobId: number; file: string; size: number; sha256: string; blockMapId: number }, now: number): BackupRow {
      const { lastInsertRowid } = insert.run({ ...values, now });
      return byId.get(Number(lastInsertRowid))!;
    },
    get: (id: number) => byId.get(id),
    list: (mac?: string) => (mac ? forDevice.all(mac) : all.all()),
    markDeleted: (id: number, now: number) => markDeleted.run({ id, now }).changes === 1,
  };
}

export type BackupStore = ReturnType<typeof createBackupStore>;
