import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { Type, type Static } from 'typebox';
import { DEFAULT_MAX_CONNECTIONS_PER_ADDRESS } from './http/connection-cap.js';
import { databaseDialect } from './db/dialect.js';
import { parseCidr } from './shared/network.js';

/** The server's whole configuration: built once at start-up, then passed explicitly. */
export const ConfigSchema = Type.Object({
  host: Type.String({ description: 'address to listen on', default: '0.0.0.0' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 5000 }),
  dataDir: Type.String({ description: 'SQLite database, images, backups, admin token' }),
  publicUrl: Type.Optional(Type.String({ description: 'base URL devices use to reach this server' })),
  deviceNetwork: Type.Array(Type.String(), { description: 'CIDRs allowed to use the device API' }),
  jobStallTimeout: Type.Integer({ minimum: 10, description: 'seconds without word from a device before its job fails' }),
  logLevel: Type.Union([
    Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'),
    Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent'),
  ]),
  netbootInterface: Type.Optional(Type.String({ description: 'provisioning LAN interface; enables DHCP/TFTP netboot' })),
  netbootAddress: Type.Optional(Type.String({ description: "this server's address on it, as CIDR (10.20.50.1/24)" })),
  dhcpRange: Type.Optional(Type.String({ description: 'FIRST,LAST addresses handed out' })),
  dhcpProxy: Type.Boolean({ description: 'proxy DHCP: another server gives addresses, dnsmasq adds the boot offer' }),
  tftpRoot: Type.Optional(Type.String({ description: 'TFTP root (default <data-dir>/tftp)' })),
  dnsmasq: Type.Union([Type.Literal('managed'), Type.Literal('external')], { description: 'run dnsmasq, or only write its config' }),
  dnsmasqPath: Type.String({ description: 'the dnsmasq binary' }),
  nonPiClients: Type.Union([Type.Literal('dhcp'), Type.Literal('ignore')], { description: 'what other hosts on the LAN get' }),
  afterSuccess: Type.Union([Type.Literal('emmc'), Type.Literal('netboot')], { description: 'default next boot after a job ends ok' }),
  maxConnectionsPerAddress: Type.Integer({ minimum: 0, description: 'open connections one client address may hold; 0: no cap' }),
  deviceRegistrationLimit: Type.Integer({ minimum: 0, description: 'new devices one source address may add per minute; 0: no limit' }),
  forgetUnknownDevicesAfter: Type.Integer({ minimum: 0, description: 'days after which a device with no job, backup or setting of its own is forgotten; 0: never' }),
  database: Type.Optional(Type.String({ description: 'postgres://… shared by several stations; absent: SQLite in the data folder' })),
  station: Type.String({ description: "this server's name among the stations that share one database" }),
  stationUrl: Type.Optional(Type.String({ description: 'where the other stations reach this one over the factory network, e.g. http://10.0.0.11:5000' })),
});
export type Config = Static<typeof ConfigSchema>;
export type LogLevel = Config['logLevel'];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Parser<T> = (value: unknown) => T | { error: string };

interface OptionSpec<T> {
  parse: Parser<T>;
  fallback: T;
  /** A switch (`--dhcp-proxy`) rather than an option with a value. */
  flag?: boolean;
}

/** A station's name: a host-name label, so it reads well in a URL, a log and a file name. */
const STATION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const OPTIONS = {
  host: { parse: parseHost, fallback: '0.0.0.0' },
  port: { parse: parsePort, fallback: 5000 },
  dataDir: { parse: parseNonEmpty, fallback: './data' },
  publicUrl: { parse: parsePublicUrl, fallback: undefined },
  deviceNetwork: { parse: parseCidrList, fallback: [] },
  jobStallTimeout: { parse: parseStallTimeout, fallback: 600 },
  logLevel: { parse: parseLogLevel, fallback: 'info' },
  netbootInterface: { parse: parseInterfaceName, fallback: undefined },
  netbootAddress: { parse: parseHostCidr, fallback: undefined },
  dhcpRange: { parse: parseRange, fallback: undefined },
  dhcpProxy: { parse: parseBoolean, fallback: false, flag: true },
  tftpRoot: { parse: parseNonEmpty, fallback: undefined },
  dnsmasq: { parse: oneOf(['managed', 'external'] as const), fallback: 'managed' },
  dnsmasqPath: { parse: parseNonEmpty, fallback: 'dnsmasq' },
  nonPiClients: { parse: oneOf(['dhcp', 'ignore'] as const), fallback: 'dhcp' },
  afterSuccess: { parse: oneOf(['emmc', 'netboot'] as const), fallback: 'emmc' },
  maxConnectionsPerAddress: { parse: parseConnectionCap, fallback: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS },
  deviceRegistrationLimit: { parse: wholeNumber('new devices per minute', '0: no limit'), fallback: 20 },
  forgetUnknownDevicesAfter: { parse: wholeNumber('days', '0: never'), fallback: 7 },
  database: { parse: parseDatabaseUrl, fallback: undefined },
  station: { parse: parseStationName, fallback: stationNameOf(hostname()) },
  stationUrl: { parse: parsePublicUrl, fallback: undefined },
} satisfies { [K in keyof Config]-?: OptionSpec<Config[K]> };

export type ConfigKey = keyof typeof OPTIONS;
export const CONFIG_KEYS = Object.keys(OPTIONS) as ConfigKey[];
export const isSwitch = (key: ConfigKey) => (OPTIONS[key] as OptionSpec<unknown>).flag === true;

/** `dataDir` → `--data-dir`, `CM4PROV_DATA_DIR`, and `data-dir` in a config file. */
export const flagName = (key: ConfigKey) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
export const envName = (key: ConfigKey) => `CM4PROV_${flagName(key).replaceAll('-', '_').toUpperCase()}`;

/** Where the Debian package installs the settings file; read when nothing names another one. */
export const PACKAGED_CONFIG_FILE = '/etc/cm4-provisioning/config.json';

export interface ConfigSources {
  /** Parsed command-line flags, keyed like Config; undefined means "not given". */
  flags?: Partial<Record<ConfigKey, unknown>>;
  env?: Record<string, string | undefined>;
  /** A JSON file (`--config`); its keys may be written camelCase or like the flags (`data-dir`). */
  configFile?: string;
  /** Used when neither configFile nor CM4PROV_CONFIG names a file, and only if it exists. */
  defaultConfigFile?: string;
  cwd?: string;
}

/** The settings file in use, and what named it: `--config x.json`, `CM4PROV_CONFIG=x.json`, or its own path (the default). */
export interface ConfigFileChoice {
  path: string;
  namedBy: string;
}

/** A setting's value and where it came from, in words: `from --data-dir`, `from --config /x.json`, `the default`. */
export interface Located<T> {
  value: T;
  origin: string;
}

/** Which settings file applies: --config > CM4PROV_CONFIG > the default file when it exists. */
export function chooseConfigFile(sources: ConfigSources): ConfigFileChoice | undefined {
  const cwd = sources.cwd ?? process.cwd();
  if (sources.configFile) return { path: resolve(cwd, sources.configFile), namedBy: `--config ${sources.configFile}` };
  const fromEnv = sources.env?.CM4PROV_CONFIG;
  if (fromEnv) return { path: resolve(cwd, fromEnv), namedBy: `CM4PROV_CONFIG=${fromEnv}` };
  const fallback = sources.defaultConfigFile;
  if (fallback && existsSync(fallback)) return { path: fallback, namedBy: fallback };
  return undefined;
}

/**
 * Builds the Config with precedence flags > CM4PROV_* environment > config file > defaults.
 * Throws ConfigError with one sentence naming the bad setting and where it came from.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const settings = readSettings(sources);
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) config[key] = settings.get(key).value;
  return config as Config;
}

/** Settings read one at a time, each with where it came from; only those asked for are checked. */
export interface Settings {
  /** The settings file in use, if any. */
  file: ConfigFileChoice | undefined;
  get<K extends ConfigKey>(key: K): Located<Config[K]>;
}

/**
 * The settings `cm4prov serve` would use with these sources, for the commands run beside it
 * (admin password, the CLI's admin token and server URL, the TFTP root), so all of them agree.
 */
export function readSettings(sources: ConfigSources = {}): Settings {
  const env = sources.env ?? {};
  const cwd = sources.cwd ?? process.cwd();
  const file = chooseConfigFile({ ...sources, cwd });
  const fromFile = file ? readConfigFile(file.path) : {};
  return {
    file,
    get<K extends ConfigKey>(key: K): Located<Config[K]> {
      const spec: OptionSpec<unknown> = OPTIONS[key];
      // [value, how an error names it, where it came from]
      const candidates: Array<[unknown, string, string]> = [
        [sources.flags?.[key], `--${flagName(key)}`, `from --${flagName(key)}`],
        [env[envName(key)], envName(key), `from ${envName(key)}`],
        [fromFile[key], `'${flagName(key)}' in ${file?.path}`, `from ${file?.namedBy}`],
      ];
      const given = candidates.find(([value]) => value !== undefined && value !== '');
      if (!given) return { value: absolute(key, spec.fallback, cwd) as Config[K], origin: 'the default' };
      const parsed = spec.parse(given[0]);
      if (isError(parsed)) throw new ConfigError(`Invalid ${given[1]}: ${parsed.error}.`);
      return { value: absolute(key, parsed, cwd) as Config[K], origin: given[2] };
    },
  };
}

/** Folder settings are resolved against the working folder, as a shell user expects. */
function absolute(key: ConfigKey, value: unknown, cwd: string): unknown {
  return (key === 'dataDir' || key === 'tftpRoot') && typeof value === 'string' ? resolve(cwd, value) : value;
}

function readConfigFile(path: string): Partial<Record<ConfigKey, unknown>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read config file ${path}: ${(error as Error).message}.`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`Config file ${path} is not valid JSON: ${(error as Error).message}.`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(`Config file ${path} must hold a JSON object of settings.`);
  }
  const result: Partial<Record<ConfigKey, unknown>> = {};
  for (const [name, value] of Object.entries(data)) {
    const key = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as ConfigKey;
    if (!CONFIG_KEYS.includes(key)) {
      throw new ConfigError(
        `Config file ${path} has an unknown setting '${name}' (known: ${CONFIG_KEYS.map(flagName).join(', ')}).`,
      );
    }
    result[key] = value;
  }
  return result;
}

function isError(value: unknown): value is { error: string } {
  return typeof value === 'object' && value !== null && 'error' in value;
}

function parseHost(value: unknown) {
  if (typeof value !== 'string' || value.trim() === '') return { error: 'expected an address such as 0.0.0.0 or 10.20.50.1' };
  const host = value.trim();
  if (isIP(host) === 0 && !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(host)) {
    return { error: `'${host}' is neither an IP address nor a host name` };
  }
  return host;
}

function parsePort(value: unknown) {
  const port = typeof value === 'number' ? value : /^\d+$/.test(String(value).trim()) ? Number(String(value).trim()) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return { error: `'${String(value)}' is not a port: expected a whole number from 1 to 65535 (0 picks a free one)` };
  }
  return port;
}

function parseNonEmpty(value: unknown) {
  if (typeof value !== 'string' || value.trim() === '') return { error: 'expected a folder path' };
  // Paths end up in dnsmasq's config file, one setting per line: a line break would add settings.
  if (/[\u0000-\u001f\u007f]/.test(value)) return { error: `${JSON.stringify(value)} holds a control character (a line break?); paths may not` };
  return value;
}

function parsePublicUrl(value: unknown) {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    return { error: `'${String(value)}' is not a URL: expected something like http://10.20.50.1:5000` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { error: `'${String(value)}' must start with http:// or https://` };
  if (url.search || url.hash) return { error: `'${String(value)}' must not have a query or fragment` };
  return url.toString().replace(/\/+$/, '');
}

function parseCidrList(value: unknown) {
  const items = Array.isArray(value) ? value.map(String) : String(value).split(',');
  const cidrs = items.map((item) => item.trim()).filter(Boolean);
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (typeof parsed === 'string') return { error: parsed };
  }
  return cidrs;
}

function wholeNumber(unit: string, zero: string) {
  return (value: unknown) => {
    const text = String(value).trim();
    return /^\d{1,9}$/.test(text) ? Number(text) : { error: `'${String(value)}' must be a whole number of ${unit} (${zero})` };
  };
}

function parseConnectionCap(value: unknown) {
  return wholeNumber('connections', '0: no cap')(value);
}

function parseStallTimeout(value: unknown) {
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 10) return { error: `'${String(value)}' must be a whole number of seconds, at least 10` };
  return seconds;
}

function parseBoolean(value: unknown) {
  if (typeof value === 'boolean') return value;
  const text = String(value).trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off'].includes(text)) return false;
  return { error: `'${String(value)}' is not true or false` };
}

function oneOf<T extends string>(choices: readonly T[]) {
  return (value: unknown): T | { error: string } =>
    choices.includes(String(value) as T) ? (String(value) as T) : { error: `'${String(value)}' is not one of ${choices.join(', ')}` };
}

function parseInterfaceName(value: unknown) {
  // Linux interface names: at most 15 bytes, no slash or whitespace (IFNAMSIZ).
  const name = String(value).trim();
  return /^[^\s/:]{1,15}$/.test(name) ? name : { error: `'${name}' is not a network interface name` };
}

function parseHostCidr(value: unknown) {
  const text = String(value).trim();
  const parsed = parseCidr(text);
  if (typeof parsed === 'string') return { error: parsed };
  if (parsed.family !== 'ipv4' || !text.includes('/')) return { error: `'${text}' must be an IPv4 address with its prefix, like 10.20.50.1/24` };
  return text;
}

function parseRange(value: unknown) {
  const parts = String(value).split(',').map((part) => part.trim());
  if (parts.length !== 2 || parts.some((part) => isIP(part) !== 4)) {
    return { error: `'${String(value)}' is not a range: expected FIRST,LAST like 10.20.50.100,10.20.50.200` };
  }
  return parts.join(',');
}

function parseLogLevel(value: unknown) {
  const level = String(value) as LogLevel;
  return LOG_LEVELS.includes(level) ? level : { error: `'${String(value)}' is not one of ${LOG_LEVELS.join(', ')}` };
}

function parseDatabaseUrl(value: unknown) {
  const text = String(value).trim();
  try {
    databaseDialect(text);
  } catch (error) {
    return { error: (error as Error).message.replace(/^--database takes /, 'expected ') };
  }
  return text;
}


function parseStationName(value: unknown) {
  const name = String(value).trim();
  return STATION_NAME.test(name) ? name : { error: `'${name.slice(0, 80)}' is not a station name: letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit` };
}

/** The host's name, when it makes a station name (an LXC container's hostname usually does). */
function stationNameOf(host: string): string {
  const name = host.split('.')[0] ?? '';
  return STATION_NAME.test(name) ? name : 'station';
}
