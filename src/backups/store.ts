import type { Queries } from '../db/database.js';

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
  /** The station whose disk holds the file (issue 15); null before stations. */
  station: string | null;
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
  station: string | null;
}

export function createBackupStore(db: Queries) {
  /** Backups not deleted: the only ones anybody sees. */
  const live = () => db.selectFrom('backups').where('deleted_at', 'is', null);

  return {
    /** The files of all live backups, relative to the data folder. */
    allFiles: async (): Promise<string[]> => (await live().select('file').execute()).map((row) => row.file),
    add: async (values: NewBackup, now: number): Promise<BackupRow> =>
      (await db
        .insertInto('backups')
        .values({
          device_mac: values.mac,
          job_id: values.jobId,
          file: values.file,
          size: values.size,
          sha256: values.sha256,
          block_map_id: values.blockMapId,
          completeness: values.completeness,
          device_checked: values.deviceChecked ? 1 : 0,
          station: values.station,
          created_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow()) as BackupRow,
    get: (id: number) => live().selectAll().where('id', '=', id).executeTakeFirst() as Promise<BackupRow | undefined>,
    /** One page, newest first: backups older than `cursor` (an id); `total` match the filter, `skipped` are newer than the page. */
    async page(filter: { mac?: string; cursor?: number; limit: number }): Promise<{ rows: BackupRow[]; total: number; skipped: number; next: number | null }> {
      const matching = () => (filter.mac ? live().where('device_mac', '=', filter.mac) : live());
      const count = async (query: ReturnType<typeof matching>) => Number((await query.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
      const older = filter.cursor === undefined ? matching() : matching().where('id', '<', filter.cursor);
      const rows = (await older.selectAll().orderBy('id', 'desc').limit(filter.limit + 1).execute()) as BackupRow[];
      const more = rows.length > filter.limit;
      if (more) rows.pop();
      const total = await count(matching());
      const skipped = filter.cursor === undefined ? 0 : await count(matching().where('id', '>=', filter.cursor));
      return { rows, total, skipped, next: more ? rows.at(-1)!.id : null };
    },
    /**
     * Files of backups deleted (on any station) that station `station` holds: its disk's to free.
     * One backup when `id` is given.
     */
    deletedFilesAt: async (station: string, id?: number): Promise<Array<{ id: number; file: string }>> => {
      let query = db.selectFrom('backups').select(['id', 'file']).where('deleted_at', 'is not', null).where('station', '=', station);
      if (id !== undefined) query = query.where('id', '=', id);
      return query.orderBy('id').execute();
    },
    /** False when it was deleted already (by another request or station): one conditional statement. */
    markDeleted: async (id: number, now: number) =>
      Number((await db.updateTable('backups').set({ deleted_at: now }).where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst()).numUpdatedRows) === 1,
  };
}

export type BackupStore = ReturnType<typeof createBackupStore>;
