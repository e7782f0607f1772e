import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { adminTokenPath } from '../admin/token.js';
import type { Settings } from '../config.js';
import { CliError, EXIT } from './errors.js';
import { describeDataDir, locate, LOCATION_HELP, type CliSurroundings, type LocationOptions } from './server-location.js';

export interface ConnectionOptions extends LocationOptions {
  server?: string;
  token?: string;
}

export interface Connection {
  server: string;
  /** Where the URL came from, for messages: `from --server`, `the default`. */
  serverOrigin: string;
  token: string;
  tokenOrigin: string;
}

/** Adds --server, --token, --data-dir and --config to a command that talks to the admin API. */
export function withConnectionOptions(command: Command): Command {
  return command
    .option('--server <url>', "server URL (env CM4PROV_SERVER; default: where the server's settings say it listens, else http://127.0.0.1:5000)")
    .option('--token <token>', 'admin token (env CM4PROV_TOKEN; default: read from the data folder)')
    .option('--data-dir <dir>', `${LOCATION_HELP.dataDir}, holding admin-token`)
    .option('--config <file>', LOCATION_HELP.config);
}

/**
 * Server URL: --server > CM4PROV_SERVER > the port `cm4prov serve` would listen on (same flags,
 * environment and settings file). Token: --token > CM4PROV_TOKEN > admin-token in the data
 * folder the server would use. The settings are read only when needed.
 */
export function resolveConnection(options: ConnectionOptions, cli: CliSurroundings): Connection {
  let settings: Settings | undefined;
  const where = () => (settings ??= locate(options, cli));
  const [server, serverOrigin] = serverUrl(options, cli.env, where);
  const [token, tokenOrigin] = adminToken(options, cli.env, where);
  return { server, serverOrigin, token, tokenOrigin };
}

function serverUrl(options: ConnectionOptions, env: NodeJS.ProcessEnv, where: () => Settings): [string, string] {
  const [given, name] = options.server ? [options.server, '--server'] : [env.CM4PROV_SERVER, 'CM4PROV_SERVER'];
  if (given) {
    let url: URL | undefined;
    try {
      url = new URL(given);
    } catch {
      // Reported below.
    }
    if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
      throw new CliError(`'${given}' (${name}) is not a server URL: expected something like http://10.20.50.1:5000`, EXIT.usage);
    }
    return [given.replace(/\/+$/, ''), `from ${name}`];
  }
  const [host, port] = [where().get('host'), where().get('port')];
  if (port.value === 0) {
    throw new CliError(`the server picks its port at start (port 0, ${port.origin}): pass --server URL or set CM4PROV_SERVER`, EXIT.usage);
  }
  // A server listening on every address is reached on loopback from its own host.
  const address = host.value === '0.0.0.0' || host.value === '::' ? '127.0.0.1' : host.value;
  const origin = [port, host].find((setting) => setting.origin !== 'the default')?.origin ?? 'the default';
  return [`http://${address.includes(':') ? `[${address}]` : address}:${port.value}`, origin];
}

function adminToken(options: ConnectionOptions, env: NodeJS.ProcessEnv, where: () => Settings): [string, string] {
  if (options.token) return [options.token, 'from --token'];
  if (env.CM4PROV_TOKEN) return [env.CM4PROV_TOKEN, 'from CM4PROV_TOKEN'];
  const dataDir = where().get('dataDir');
  const file = adminTokenPath(dataDir.value);
  let token = '';
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new CliError(`cannot read the admin token ${file} (permission denied): run as the server's user or root, or set CM4PROV_TOKEN`, EXIT.usage);
    }
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new CliError(`cannot read the admin token ${file}: ${(error as Error).message}`, EXIT.usage);
  }
  if (!token) {
    throw new CliError(
      `no admin token: set CM4PROV_TOKEN, pass --token, or point --data-dir at the server's data folder (${file} is missing or empty; ${describeDataDir(dataDir)})`,
      EXIT.usage,
    );
  }
  return [token, `from ${file}`];
}
