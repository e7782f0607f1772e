import { sql } from 'kysely';
import { inTransaction, type Queries } from '../db/database.js';

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

type StoredProfile = Omit<ProfileRow, 'files'> & { files: string };

// Profiles saved before 0016 have no `append` in their JSON: they write every file whole.
const toProfile = (row: StoredProfile): ProfileRow => ({
  ...row,
  files: (JSON.parse(row.files) as ProfileFile[]).map((file) => ({ ...file, append: file.append === true })),
});

// Names are ASCII, so code-unit order is SQLite's BINARY order; PostgreSQL's ORDER BY would
// follow the database's collation (en_US sorts 'b' before 'C'), so the list is sorted here.
const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Rows per INSERT of a device table: 3 values each, far below either database's parameter limit. */
const TABLE_CHUNK = 500;

/** SQL for profiles, the device table and the files rendered for each job (0013, 0016). */
export function createDeviceFilesStore(db: Queries) {
  return {
    async profiles(): Promise<ProfileRow[]> {
      const rows = await db.selectFrom('device_profiles').selectAll().execute();
      return rows.map(toProfile).sort(byName);
    },
    async profile(name: string): Promise<ProfileRow | undefined> {
      const row = await db.selectFrom('device_profiles').selectAll().where('name', '=', name).executeTakeFirst();
      return row && toProfile(row);
    },
    /** Creates or replaces a profile (a replaced one keeps its sequence counter); the profile as stored. */
    async saveProfile(name: string, files: ProfileFile[], now: number): Promise<ProfileRow> {
      const row = await db
        .insertInto('device_profiles')
        .values({ name, files: JSON.stringify(files), created_at: now, updated_at: now })
        .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ files: eb.ref('excluded.files'), updated_at: eb.ref('excluded.updated_at') })))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toProfile(row);
    },
    async deleteProfile(name: string): Promise<boolean> {
      const result = await db.deleteFrom('device_profiles').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    /**
     * Takes the profile's next sequence number (and counts it as used); undefined when there is
     * no such profile. One statement: stations taking numbers at once never get the same one.
     */
    async takeSequence(name: string): Promise<number | undefined> {
      const row = await db
        .updateTable('device_profiles')
        .set((eb) => ({ next_sequence: eb('next_sequence', '+', 1) }))
        .where('name', '=', name)
        .returning(sql<number>`next_sequence - 1`.as('taken'))
        .executeTakeFirst();
      return row?.taken;
    },

    /** Replaces the whole device table, all or nothing; what is stored then. */
    replaceTable(keyColumn: 'serial' | 'mac', columns: string[], rows: Array<{ key: string; values: Record<string, string> }>, now: number): Promise<DeviceTable> {
      return inTransaction(db, async (tx) => {
        await tx.deleteFrom('device_table_rows').execute();
        for (let at = 0; at < rows.length; at += TABLE_CHUNK) {
          const chunk = rows.slice(at, at + TABLE_CHUNK).map((row) => ({ key: row.key, key_kind: keyColumn, row_values: JSON.stringify(row.values) }));
          await tx.insertInto('device_table_rows').values(chunk).execute();
        }
        await tx
          .insertInto('device_table_meta')
          .values({ id: 1, key_column: keyColumn, columns: JSON.stringify(columns), imported_at: now })
          .onConflict((oc) =>
            oc.column('id').doUpdateSet((eb) => ({ key_column: eb.ref('excluded.key_column'), columns: eb.ref('excluded.columns'), imported_at: eb.ref('excluded.imported_at') })),
          )
          .execute();
        return { key_column: keyColumn, columns, imported_at: now, rows: rows.length };
      });
    },
    /** The imported table's description; one statement, so its count is of the same import. */
    async table(): Promise<DeviceTable | undefined> {
      const meta = await db
        .selectFrom('device_table_meta')
        .select((eb) => ['key_column', 'columns', 'imported_at', eb.selectFrom('device_table_rows').select(eb.fn.countAll<number>().as('n')).as('rows')])
        .where('id', '=', 1)
        .executeTakeFirst();
      if (!meta) return undefined;
      return { key_column: meta.key_column as DeviceTable['key_column'], columns: JSON.parse(meta.columns) as string[], imported_at: meta.imported_at, rows: Number(meta.rows) };
    },
    async tableRow(key: string): Promise<Record<string, string> | undefined> {
      const row = await db.selectFrom('device_table_rows').select('row_values').where('key', '=', key).executeTakeFirst();
      return row && (JSON.parse(row.row_values) as Record<string, string>);
    },

    /** Stores a job's rendered files: one INSERT, so all of them or none. */
    async saveJobFiles(jobId: number, files: NewJobFile[]): Promise<void> {
      if (files.length === 0) return;
      await db.insertInto('job_files').values(files.map((file) => ({ ...file, job_id: jobId }))).execute();
    },
    jobFiles: (jobId: number) => db.selectFrom('job_files').selectAll().where('job_id', '=', jobId).orderBy('idx').execute() as Promise<JobFileRow[]>,
    async hasJobFiles(jobId: number): Promise<boolean> {
      return (await db.selectFrom('job_files').select('idx').where('job_id', '=', jobId).limit(1).executeTakeFirst()) !== undefined;
    },
    async saveReadBack(jobId: number, idx: number, sha256: string, length: number | null): Promise<void> {
      await db.updateTable('job_files').set({ read_back_sha256: sha256, read_back_length: length }).where('job_id', '=', jobId).where('idx', '=', idx).execute();
    },
    /** The contents go when the job ends; what was written stays known by its hashes. */
    async dropContents(jobId: number): Promise<void> {
      await db.updateTable('job_files').set({ content: null }).where('job_id', '=', jobId).where('content', 'is not', null).execute();
    },
  };
}

export type DeviceFilesStore = ReturnType<typeof createDeviceFilesStore>;
