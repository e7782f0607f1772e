import type { Command } from 'commander';
import { CONFIG_KEYS, ConfigError, envName, flagName, loadConfig, type ConfigKey } from '../config.js';
import { passwordProblem } from '../admin/passwords.js';
import { startServer } from '../server.js';
import { CliError, EXIT } from './errors.js';

const FLAG_HELP: Record<ConfigKey, string> = {
  host: 'address to listen on (default 0.0.0.0)',
  port: 'port to listen on (default 5000)',
  dataDir: 'data folder: database, images, backups, golden.img (default ./data; production: /var/lib/cm4-provisioning)',
  publicUrl: 'URL devices use to reach this server, e.g. http://10.20.50.1:5000 (default: the host each device used)',
  deviceNetwork: 'comma-separated CIDRs allowed to use the device API, e.g. 10.20.50.0/24 (default: any)',
  jobStallTimeout: 'seconds without word from a device before its job fails (default 600)',
  logLevel: 'fatal, error, warn, info, debug, trace or silent (default info)',
};

export function registerServeCommand(program: Command, env: NodeJS.ProcessEnv) {
  const serve = program
    .command('serve')
    .description('run the provisioning server (device API and admin API)')
    .option('--config <file>', 'JSON settings file (env CM4PROV_CONFIG)');
  for (const key of CONFIG_KEYS) {
    serve.option(`--${flagName(key)} <value>`, `${FLAG_HELP[key]} [env ${envName(key)}]`);
  }
  serve.action(async (options: Record<string, string | undefined>) => {
    let config;
    try {
      config = loadConfig({ flags: options as Partial<Record<ConfigKey, unknown>>, env, configFile: options.config });
    } catch (error) {
      if (error instanceof ConfigError) throw new CliError(error.message, EXIT.usage);
      throw error;
    }
    const initialAdminPassword = env.CM4PROV_ADMIN_PASSWORD || undefined;
    const weak = initialAdminPassword && passwordProblem(initialAdminPassword);
    if (weak) throw new CliError(`Invalid CM4PROV_ADMIN_PASSWORD: ${weak}.`, EXIT.usage);
    let server;
    try {
      server = await startServer(config, { initialAdminPassword });
    } catch (error) {
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
