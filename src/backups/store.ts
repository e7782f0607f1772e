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
  /** 'whole': its length is the device's eMMC size; 'size_unknown': the device never gave its size. */
  completeness: BackupCompleteness;
  /** 1: the device's own sha256 of what it read was checked against what arrived. */
  device_checked: number;
}

export type BackupCompleteness = 'whole' | 'size_unknown';

export interface NewBackup {
  mac: string;
  jobId: number;
  file: string;
  size: number;
  sha256: string;
  blockMapId: number;
  completeness: BackupCompleteness;
  deviceChecked: boolean;
}

export function createBackupStore(db: Db) {
  const insert = db.prepare<Omit<NewBackup, 'deviceChecked'> & { deviceChecked: number; now: number }>(`
    INSERT INTO backups (device_mac, job_id, file, size, sha256, block_map_id, completeness, device_checked, created_at)
    VALUES (@mac, @jobId, @file, @size, @sha256, @blockMapId, @completeness, @deviceChecked, @now)`);
  const byId = db.prepare<[number], BackupRow>('SELECT * FROM backups WHERE id = ? AND deleted_at IS NULL');
  const markDeleted = db.prepare<{ id: number; now: number }>(
    'UPDATE backups SET deleted_at = @now WHERE id = @id AND deleted_at IS NULL',
  );

  const liveFiles = db.prepare<[], { file: string }>('SELECT file FROM backups WHERE deleted_at IS NULL');

  return {
    allFiles: () => liveFiles.all().map((row) => row.file),
    add(values: NewBackup, now: number): BackupRow {
      const { lastInsertRowid } = insert.run({ ...values, deviceChecked: values.deviceChecked ? 1 : 0, now });
      return byId.get(Number(lastInsertRowid))!;
    },
    get: (id: number) => byId.get(id),
    /** One page, newest first: backups older than `cursor` (an id); `total` match the filter, `skipped` are newer than the page. */
    page(filter: { mac?: string; cursor?: number; limit: number }): { rows: BackupRow[]; total: number; skipped: number; next: number | null } {
      const where = ['deleted_at IS NULL', ...(filter.mac ? ['device_mac = @mac'] : [])];
      const params = { mac: filter.mac, cursor: filter.cursor, limit: filter.limit + 1 };
      const after = filter.cursor === undefined ? where : [...where, 'id < @cursor'];
      const rows = db.prepare(`SELECT * FROM backups WHERE ${after.join(' AND ')} ORDER BY id DESC LIMIT @limit`).all(params) as BackupRow[];
      const more = rows.length > filter.limit;
      if (more) rows.pop();
      const count = (clauses: string[]) => (db.prepare(`SELECT count(*) AS n FROM backups WHERE ${clauses.join(' AND ')}`).get(params) as { n: number }).n;
      const total = count(where);
      const skipped = filter.cursor === undefined ? 0 : count([...where, 'id >= @cursor']);
      return { rows, total, skipped, next: more ? rows.at(-1)!.id : null };
    },
    markDeleted: (id: number, now: number) => markDeleted.run({ id, now }).changes === 1,
  };
}

export type BackupStore = ReturnType<typeof createBackupStore>;
