import type { Command } from 'commander';
import {
  CONFIG_KEYS, ConfigError, PACKAGED_CONFIG_FILE, chooseConfigFile, envName, flagName, isSwitch, loadConfig, type ConfigKey,
} from '../config.js';
import { passwordProblem } from '../admin/passwords.js';
import { DatabaseUnusable } from '../db/open.js';
import { createServerLog, startServer } from '../server.js';
import { DataDirInUse } from '../shared/data-lock.js';
import { CliError, EXIT } from './errors.js';
import type { CliSurroundings } from './server-location.js';

const FLAG_HELP: Record<ConfigKey, string> = {
  host: 'address to listen on (default 0.0.0.0)',
  port: 'port to listen on (default 5000)',
  dataDir: 'data folder: database, images, backups, golden.img (default ./data; production: /var/lib/cm4-provisioning)',
  publicUrl: 'URL devices use to reach this server, e.g. http://10.20.50.1:5000 (default: the host each device used)',
  deviceNetwork: 'comma-separated CIDRs allowed to use the device API, e.g. 10.20.50.0/24 (default: any)',
  jobStallTimeout: 'seconds without word from a device before its job fails (default 600)',
  logLevel: 'fatal, error, warn, info, debug, trace or silent (default info); readable lines on a terminal, else JSON lines',
  netbootInterface: 'provisioning LAN interface (e.g. eth1): turns on DHCP + TFTP netboot with dnsmasq',
  netbootAddress: "this server's address on that interface, e.g. 10.20.50.1/24",
  dhcpRange: 'addresses to hand out, e.g. 10.20.50.100,10.20.50.200 (not with --dhcp-proxy)',
  dhcpProxy: 'proxy DHCP: the LAN already has a DHCP server; only add the Raspberry Pi boot offer',
  tftpRoot: 'TFTP root with the Pi boot files (default <data-dir>/tftp)',
  dnsmasq: "managed (run dnsmasq as a child) or external (only write its config for a system dnsmasq)",
  dnsmasqPath: 'the dnsmasq binary (default: dnsmasq on PATH)',
  nonPiClients: 'dhcp (other hosts get plain DHCP) or ignore (only Raspberry Pis are answered)',
  afterSuccess: 'after a job ends ok the device boots: emmc (no more PXE offer; default) or netboot',
  maxConnectionsPerAddress: 'open TCP connections one client address may hold; more are answered 503 at once (default 32; 0: no cap)',
  deviceRegistrationLimit: 'new devices one source address may add per minute; more are answered 429 (default 20; 0: no limit)',
  forgetUnknownDevicesAfter: 'days after which a device that never had a job or backup, and was not seen, is forgotten (default 7; 0: never)',
  database: 'postgres://user:password@host/db: one PostgreSQL shared by several stations (default: SQLite in the data folder)',
  station: "this server's name among stations sharing a database; its devices, image copies and backups are known by it (default: the host name)",
  stationUrl: 'where the other stations reach this one, e.g. http://10.0.0.11:5000: they fetch image copies and backups from it (announced in the database)',
};

export function registerServeCommand(program: Command, cli: CliSurroundings) {
  const { env } = cli;
  const serve = program
    .command('serve')
    .description('run the provisioning server (device API and admin API)')
    .option('--config <file>', `JSON settings file (env CM4PROV_CONFIG; default ${PACKAGED_CONFIG_FILE} if present)`);
  for (const key of CONFIG_KEYS) {
    const value = isSwitch(key) ? '' : ' <value>';
    serve.option(`--${flagName(key)}${value}`, `${FLAG_HELP[key]} [env ${envName(key)}]`);
  }
  serve.action(async (options: Record<string, string | undefined>) => {
    let config;
    const sources = { flags: options as Partial<Record<ConfigKey, unknown>>, env, configFile: options.config, defaultConfigFile: cli.defaultConfigFile };
    try {
      config = loadConfig(sources);
    } catch (error) {
      if (error instanceof ConfigError) throw new CliError(error.message, EXIT.usage);
      throw error;
    }
    const initialAdminPassword = env.CM4PROV_ADMIN_PASSWORD || undefined;
    const weak = initialAdminPassword && passwordProblem(initialAdminPassword);
    if (weak) throw new CliError(`Invalid CM4PROV_ADMIN_PASSWORD: ${weak}.`, EXIT.usage);
    // A person at a terminal reads pino-pretty's lines; journald and pipes get JSON lines.
    const log = createServerLog(config.logLevel, { pretty: process.stdout.isTTY });
    const settingsFile = chooseConfigFile(sources);
    if (settingsFile) log.info({ configFile: settingsFile.path }, `settings read from ${settingsFile.namedBy}`);
    let server;
    try {
      server = await startServer(config, { initialAdminPassword, log });
    } catch (error) {
      if (error instanceof ConfigError || error instanceof DataDirInUse) throw new CliError(error.message, EXIT.usage);
      if (error instanceof DatabaseUnusable) throw new CliError(error.message, EXIT.failed);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new CliError(`port ${config.port} on ${config.host} is already in use; pick another with --port`, EXIT.usage);
      if (code === 'EACCES' || code === 'EROFS') throw new CliError(`cannot use ${config.dataDir} or the port: ${(error as Error).message}`, EXIT.usage);
      throw error;
    }
    const stop = (signal: NodeJS.Signals) => {
      process.stderr.write(`\n${signal}: stopping the server\n`);
      server.close().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
