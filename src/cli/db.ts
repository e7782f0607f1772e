import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import pg from 'pg';
import { CopyRefused, copySqliteToPostgres, type TableCount } from '../db/copy-to-postgres.js';
import { databaseDialect, redactedUrl } from '../db/dialect.js';
import { DatabaseUnusable, openDatabase, type Db } from '../db/open.js';
import { migratePostgres } from '../db/postgres.js';
import { DataDirInUse, lockDataDir, type DataDirLock } from '../shared/data-lock.js';
import { CliError, EXIT } from './errors.js';
import { dataDirOrigin, locate, LOCATION_HELP, type CliSurroundings } from './server-location.js';

export function registerDbCommands(program: Command, cli: CliSurroundings) {
  const db = program.command('db').description("the server's database (run on the server host)");

  db.command('migrate')
    .description("copy this station's SQLite data (devices, jobs, records, rules, images and backups as metadata, users, webhooks) into an empty PostgreSQL, for several stations to share")
    .requiredOption('--to <url>', 'the PostgreSQL database: postgres://user:password@host/db (created empty beforehand)')
    .option('--dry-run', 'count what would be copied; write nothing (works while the server runs)')
    .option('--station <name>', "the station this data becomes (default: the server's own setting, else the host name)")
    .option('--data-dir <dir>', LOCATION_HELP.dataDir)
    .option('--config <file>', LOCATION_HELP.config)
    .action(async (options: { to: string; dryRun?: boolean; station?: string; dataDir?: string; config?: string }) => {
      try {
        if (databaseDialect(options.to) !== 'postgres') throw new Error('--to takes a postgres:// URL');
      } catch (error) {
        throw new CliError((error as Error).message.replace(/^--database takes/, '--to takes'), EXIT.usage);
      }
      const settings = locate(options, cli);
      const dataDir = settings.get('dataDir');
      const station = settings.get('station').value;
      const file = join(dataDir.value, 'cm4prov.sqlite');
      if (!existsSync(file)) throw new CliError(`no server database in ${dataDir.value} (${dataDirOrigin(dataDir)}): name the station's own with --data-dir or --config`, EXIT.usage);
      // The copy is a snapshot: whatever the server did after it would stay behind in SQLite.
      const lock = options.dryRun ? undefined : lockOrRefuse(dataDir.value);
      let sqlite: Db | undefined;
      const client = new pg.Client({ connectionString: options.to });
      try {
        sqlite = openDatabase(file);
        await client.connect().catch((error: Error) => {
          throw new CliError(`cannot reach ${redactedUrl(options.to)}: ${error.message}`, EXIT.unreachable);
        });
        if (!options.dryRun) await migratePostgres(client);
        const counts = await copySqliteToPostgres(sqlite, client, { dryRun: options.dryRun, station });
        report(counts, options, station);
      } catch (error) {
        if (error instanceof CopyRefused || error instanceof DatabaseUnusable) throw new CliError(`${error.message} Nothing was copied.`, EXIT.failed);
        throw error;
      } finally {
        sqlite?.close();
        await client.end().catch(() => {});
        lock?.release();
      }
    });
}

function lockOrRefuse(dataDir: string): DataDirLock {
  try {
    return lockDataDir(dataDir);
  } catch (error) {
    if (error instanceof DataDirInUse) {
      throw new CliError(`${error.message.replace(/: stop it first.*$/, '')}: stop it first (systemctl stop cm4-provisioning), so that nothing it does after the copy is left behind; --dry-run counts while it runs.`, EXIT.failed);
    }
    throw error;
  }
}

function report(counts: TableCount[], options: { to: string; dryRun?: boolean }, station: string) {
  const width = Math.max(...counts.map((count) => count.table.length));
  for (const { table, rows } of counts) console.log(`${table.padEnd(width)}  ${rows}`);
  const total = counts.reduce((sum, count) => sum + count.rows, 0);
  const target = redactedUrl(options.to);
  if (options.dryRun) {
    console.log(`Dry run: ${total} rows in ${counts.length} tables would be copied into ${target}. Nothing was written.`);
    return;
  }
  console.log(`Copied ${total} rows in ${counts.length} tables into ${target}, each table counted on both sides; this station's devices, jobs and backups are named '${station}'.`);
  console.log(`Next: start the server with --database ${target} --station ${station}. The SQLite file stays as it was, as a fallback.`);
}
