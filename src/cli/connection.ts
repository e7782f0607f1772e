import { resolve } from 'node:path';
import type { Command } from 'commander';
import { adminTokenPath, readAdminToken } from '../admin/token.js';
import { CliError, EXIT } from './errors.js';

export interface ConnectionOptions {
  server?: string;
  token?: string;
  dataDir?: string;
}

export interface Connection {
  server: string;
  token: string;
}

/** Adds --server, --token and --data-dir to a command that talks to the admin API. */
export function withConnectionOptions(command: Command): Command {
  return command
    .option('--server <url>', 'server URL (env CM4PROV_SERVER)', undefined)
    .option('--token <token>', 'admin token (env CM4PROV_TOKEN; default: read from the data dir)')
    .option('--data-dir <dir>', 'server data dir holding admin-token (env CM4PROV_DATA_DIR)', undefined);
}

/** Server URL: flag > CM4PROV_SERVER > local default. Token: flag > CM4PROV_TOKEN > <data-dir>/admin-token. */
export function resolveConnection(options: ConnectionOptions, env: NodeJS.ProcessEnv): Connection {
  const server = (options.server ?? env.CM4PROV_SERVER ?? 'http://127.0.0.1:5000').replace(/\/+$/, '');
  try {
    new URL(server);
  } catch {
    throw new CliError(`'${server}' is not a server URL: expected something like http://10.20.50.1:5000`, EXIT.usage);
  }
  const dataDir = resolve(options.dataDir ?? env.CM4PROV_DATA_DIR ?? './data');
  const token = options.token ?? env.CM4PROV_TOKEN ?? readAdminToken(dataDir);
  if (!token) {
    throw new CliError(
      `no admin token: set CM4PROV_TOKEN, pass --token, or point --data-dir at the server's data folder (no ${adminTokenPath(dataDir)})`,
      EXIT.usage,
    );
  }
  return { server, token };
}
