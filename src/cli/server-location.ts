import { ConfigError, PACKAGED_CONFIG_FILE, readSettings, type ConfigKey, type Located, type Settings } from '../config.js';
import { CliError, EXIT } from './errors.js';

/** What the CLI is started with: its environment, and the settings file read when nothing names one. */
export interface CliSurroundings {
  env: NodeJS.ProcessEnv;
  /** The packaged /etc/cm4-provisioning/config.json in production; tests leave it out. */
  defaultConfigFile?: string;
}

export interface LocationOptions {
  dataDir?: string;
  tftpRoot?: string;
  station?: string;
  config?: string;
}

/**
 * The settings `cm4prov serve` would use given these flags, the same environment and settings
 * file, so commands run beside the server find its data folder, port and TFTP root. A bad
 * setting is a usage error.
 */
export function locate(options: LocationOptions, cli: CliSurroundings): Settings {
  const settings = usage(() =>
    readSettings({
      flags: { dataDir: options.dataDir, tftpRoot: options.tftpRoot, station: options.station },
      configFile: options.config,
      env: cli.env,
      defaultConfigFile: cli.defaultConfigFile,
    }),
  );
  return { file: settings.file, get: <K extends ConfigKey>(key: K) => usage(() => settings.get(key)) };
}

function usage<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
}

/** What chose the data folder: `from --config /etc/x.json`, `the default ./data`. */
export const dataDirOrigin = (dataDir: Located<string>) => (dataDir.origin === 'the default' ? 'the default ./data' : dataDir.origin);

/** `data folder /srv/data, from --config /etc/x.json`: the folder and what chose it. */
export const describeDataDir = (dataDir: Located<string>) => `data folder ${dataDir.value}, ${dataDirOrigin(dataDir)}`;

/** Help for --data-dir and --config on commands that read them as `cm4prov serve` does. */
export const LOCATION_HELP = {
  dataDir: "server data folder (env CM4PROV_DATA_DIR; else the settings file's data-dir; default ./data)",
  config: `the server's JSON settings file, read as \`cm4prov serve\` reads it (env CM4PROV_CONFIG; default ${PACKAGED_CONFIG_FILE} if present)`,
};
