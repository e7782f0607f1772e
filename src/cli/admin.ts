import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { createPasswordStore, passwordProblem } from '../admin/passwords.js';
import { openDatabase } from '../db/open.js';
import { CliError, EXIT } from './errors.js';
import { readSecret } from './secret-input.js';

export function registerAdminCommands(program: Command, env: NodeJS.ProcessEnv) {
  const admin = program.command('admin').description('server administration (run on the server host)');

  admin
    .command('password')
    .description('set the dashboard admin password (read from stdin; asked twice on a terminal)')
    .option('--data-dir <dir>', 'server data dir (env CM4PROV_DATA_DIR; default ./data)')
    .action(async (options: { dataDir?: string }) => {
      const dataDir = resolve(options.dataDir ?? env.CM4PROV_DATA_DIR ?? './data');
      const database = join(dataDir, 'cm4prov.sqlite');
      if (!existsSync(database)) {
        throw new CliError(`no server database in ${dataDir}: start the server once with this --data-dir first`, EXIT.usage);
      }
      const password = await readSecret('New admin password: ', 'Repeat it: ');
      const problem = passwordProblem(password);
      if (problem) throw new CliError(`${problem}; nothing changed`, EXIT.usage);
      // Written straight into the database (WAL), so it works whether the server runs or not.
      const db = openDatabase(database);
      try {
        await createPasswordStore(db).set(password);
      } finally {
        db.close();
      }
      console.log('Admin password set. Existing dashboard sessions stay logged in until they expire or log out.');
    });
}
