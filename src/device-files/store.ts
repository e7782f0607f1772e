import type { Db } from '../db/open.js';

export type FileSystem = 'vfat' | 'ext4';

/** One file of a profile: where it goes and the template of its content. */
export interface ProfileFile {
  partition: number;
  fs: FileSystem;
  /** Absolute path inside the partition's file system, e.g. `/user-data`. */
  path: string;
  /** Octal permission bits (ext4 only; FAT has none). */
  mode: string;
  /** The rendered text is appended to the image's existing file instead of replacing it. */
  append: boolean;
  template: string;
}

/** How a job's file is written: whole (null), appended at the end, or to the first line (cmdline.txt). */
export type AppendTo = 'end' | 'first_line' | null;

export interface ProfileRow {
  name: string;
  files: ProfileFile[];
  next_sequence: number;
  created_at: number;
  updated_at: number;
}

export interface DeviceTable {
  key_column: 'serial' | 'mac';
  columns: string[];
  imported_at: number;
  rows: number;
}

/** A rendered file of one job; `content` is null once the job has ended. */
export interface JobFileRow {
  job_id: number;
  idx: number;
  profile: string;
  partition: number;
  fs: FileSystem;
  path: string;
  mode: string;
  sha256: string;
  length: number;
  content: Buffer | null;
  /** Appended: `sha256` and `length` are of the appended text, not of the resulting file. */
  append: AppendTo;
  read_back_sha256: string | null;
  /** The length of the whole file the device read back (reported for appended files). */
  read_back_length: number | null;
}

export type NewJobFile = Omit<JobFileRow, 'job_id' | 'read_back_sha256' | 'read_back_length'>;

/** SQL for profiles, the device table and the files rendered for each job (0013, 0016). */
export function createDeviceFilesStore(db: Db) {
  // Profiles saved before 0016 have no `append` in their JSON: they write every file whole.
  const toProfile = (row: Omit<ProfileRow, 'files'> & { files: string }): ProfileRow => ({
    ...row,
    files: (JSON.parse(row.files) as ProfileFile[]).map((file) => ({ ...file, append: file.append === true })),
  });
  const profileQuery = db.prepare('SELECT * FROM device_profiles WHERE name = ?');
  const insertFile = db.prepare(
    `INSERT INTO job_files (job_id, idx, profile, partition, fs, path, mode, sha256, length, content, append)
     VALUES (@job_id, @idx, @profile, @partition, @fs, @path, @mode, @sha256, @length, @content, @append)`,
  );

  return {
    profiles(): ProfileRow[] {
      return (db.prepare('SELECT * FROM device_profiles ORDER BY name').all() as Array<Omit<ProfileRow, 'files'> & { files: string }>).map(toProfile);
    },
    profile(name: string): ProfileRow | undefined {
      const row = profileQuery.get(name) as (Omit<ProfileRow, 'files'> & { files: string }) | undefined;
      return row && toProfile(row);
    },
    /** Creates or replaces a profile; a replaced one keeps its sequence counter. */
    saveProfile(name: string, files: ProfileFile[], now: number) {
      db.prepare(
        `INSERT INTO device_profiles (name, files, created_at, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET files = excluded.files, updated_at = excluded.updated_at`,
      ).run(name, JSON.stringify(files), now, now);
    },
    deleteProfile: (name: string) => db.prepare('DELETE FROM device_profiles WHERE name = ?').run(name).changes > 0,
    /** Takes the profile's next sequence number (and counts it as used). */
    takeSequence(name: string): number {
      const row = db.prepare('UPDATE device_profiles SET next_sequence = next_sequence + 1 WHERE name = ? RETURNING next_sequence - 1 AS taken').get(name) as
        | { taken: number }
        | undefined;
      return row!.taken;
    },

    replaceTable: db.transaction((keyColumn: 'serial' | 'mac', columns: string[], rows: Array<{ key: string; values: Record<string, string> }>, now: number) => {
      db.prepare('DELETE FROM device_table_rows').run();
      const insert = db.prepare('INSERT INTO device_table_rows (key, key_kind, row_values) VALUES (?, ?, ?)');
      for (const row of rows) insert.run(row.key, keyColumn, JSON.stringify(row.values));
      db.prepare(
        `INSERT INTO device_table_meta (id, key_column, columns, imported_at) VALUES (1, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET key_column = excluded.key_column, columns = excluded.columns, imported_at = excluded.imported_at`,
      ).run(keyColumn, JSON.stringify(columns), now);
    }),
    table(): DeviceTable | undefined {
      const meta = db.prepare('SELECT key_column, columns, imported_at FROM device_table_meta WHERE id = 1').get() as
        | { key_column: 'serial' | 'mac'; columns: string; imported_at: number }
        | undefined;
      if (!meta) return undefined;
      const { rows } = db.prepare('SELECT count(*) AS rows FROM device_table_rows').get() as { rows: number };
      return { key_column: meta.key_column, columns: JSON.parse(meta.columns) as string[], imported_at: meta.imported_at, rows };
    },
    tableRow(key: string): Record<string, string> | undefined {
      const row = db.prepare('SELECT row_values FROM device_table_rows WHERE key = ?').get(key) as { row_values: string } | undefined;
      return row && (JSON.parse(row.row_values) as Record<string, string>);
    },

    saveJobFiles: db.transaction((jobId: number, files: NewJobFile[]) => {
      for (const file of files) insertFile.run({ ...file, job_id: jobId });
    }),
    jobFiles: (jobId: number) => db.prepare('SELECT * FROM job_files WHERE job_id = ? ORDER BY idx').all(jobId) as JobFileRow[],
    hasJobFiles: (jobId: number) => db.prepare('SELECT 1 FROM job_files WHERE job_id = ? LIMIT 1').get(jobId) !== undefined,
    saveReadBack(jobId: number, idx: number, sha256: string, length: number | null) {
      db.prepare('UPDATE job_files SET read_back_sha256 = ?, read_back_length = ? WHERE job_id = ? AND idx = ?').run(sha256, length, jobId, idx);
    },
    /** The contents go when the job ends; what was written stays known by its hashes. */
    dropContents: (jobId: number) => db.prepare('UPDATE job_files SET content = NULL WHERE job_id = ? AND content IS NOT NULL').run(jobId),
  };
}

export type DeviceFilesStore = ReturnType<typeof createDeviceFilesStore>;
