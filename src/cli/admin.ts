import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { createPasswordStore, passwordProblem } from '../admin/passwords.js';
import { sqliteDatabase, type StationDatabase } from '../db/database.js';
import { DatabaseUnusable, openDatabase } from '../db/open.js';
import { CliError, EXIT } from './errors.js';
import { readSecret } from './secret-input.js';
import { dataDirOrigin, describeDataDir, locate, LOCATION_HELP, type CliSurroundings } from './server-location.js';

export function registerAdminCommands(program: Command, cli: CliSurroundings) {
  const admin = program.command('admin').description('server administration (run on the server host)');

  admin
    .command('password')
    .description("set the dashboard admin password in the server's database (read from stdin; asked twice on a terminal)")
    .option('--data-dir <dir>', LOCATION_HELP.dataDir)
    .option('--config <file>', LOCATION_HELP.config)
    .action(async (options: { dataDir?: string; config?: string }) => {
      const dataDir = locate(options, cli).get('dataDir');
      const file = join(dataDir.value, 'cm4prov.sqlite');
      if (!existsSync(file)) {
        throw new CliError(
          `no server database in ${dataDir.value} (${dataDirOrigin(dataDir)}): start the server once on that folder, or name the server's own with --data-dir or --config`,
          EXIT.usage,
        );
      }
      if (!writable(file) || !writable(dataDir.value)) {
        throw new CliError(`cannot write ${file} (${dataDirOrigin(dataDir)}): run this as the server's user or root`, EXIT.usage);
      }
      const password = await readSecret('New admin password: ', 'Repeat it: ');
      const problem = passwordProblem(password);
      if (problem) throw new CliError(`${problem}; nothing changed`, EXIT.usage);
      // Written straight into the database (WAL), so it works whether the server runs or not.
      let database: StationDatabase;
      try {
        database = sqliteDatabase(openDatabase(file));
      } catch (error) {
        if (error instanceof DatabaseUnusable) throw new CliError(error.message, EXIT.failed);
        throw error;
      }
      try {
        await createPasswordStore(database.db).set(password);
      } finally {
        await database.close();
      }
      console.log(`Admin password set in ${file} (${describeDataDir(dataDir)}). Existing dashboard sessions stay logged in until they expire or log out.`);
    });
}

/** SQLite in WAL mode writes the database and, beside it, its -wal and -shm files. */
function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
