/**
 * The command line that starts a service the way systemd's unit says, for a root without a
 * running systemd: User=/Group= (with the user's groups), the capability sets and no_new_privs
 * through util-linux's setpriv, a clean environment as systemd builds it (systemd.exec(5),
 * "Environment variables in spawned processes") plus Environment=, UMask=, WorkingDirectory=,
 * then ExecStart=. Sandboxing (ProtectSystem= and the like) needs systemd itself: not applied.
 */

export type Unit = Record<string, Record<string, string[]>>;

/** `[Section]` → key → every value given, in order (keys may repeat). */
export function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      unit[section] ??= {};
      continue;
    }
    const at = line.indexOf('=');
    if (at < 0 || !section) throw new Error(`not a unit file line: ${raw}`);
    ((unit[section]![line.slice(0, at)] ??= [])).push(line.slice(at + 1));
  }
  return unit;
}

const one = (unit: Unit, key: string) => {
  const values = unit.Service?.[key] ?? [];
  if (values.length !== 1) throw new Error(`the unit must set ${key}= exactly once (has ${values.length})`);
  return values[0]!;
};
const words = (values: string[] = []) => values.flatMap((value) => value.split(/\s+/)).filter(Boolean);
/** CAP_NET_RAW → net_raw, as setpriv spells it. */
const setprivCaps = (caps: string[]) => ['-all', ...caps.map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`)].join(',');

export interface Account {
  name: string;
  home: string;
  shell: string;
}

/** argv that runs the unit's ExecStart= as it would run, from a root shell inside the same root. */
export function unitCommand(unit: Unit, account: Account): string[] {
  const user = one(unit, 'User');
  if (user !== account.name) throw new Error(`the account given is ${account.name}, the unit's User= is ${user}`);
  const execStart = one(unit, 'ExecStart');
  if (/["'\\$%]/.test(execStart)) throw new Error(`ExecStart= with quoting or specifiers is not supported here: ${execStart}`);
  const ambient = words(unit.Service?.AmbientCapabilities);
  const bounding = words(unit.Service?.CapabilityBoundingSet);
  const stateDirs = words(unit.Service?.StateDirectory).map((name) => `/var/lib/${name}`);
  const environment = [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin',
    `HOME=${account.home}`, `USER=${user}`, `LOGNAME=${user}`, `SHELL=${account.shell}`,
    ...(stateDirs.length ? [`STATE_DIRECTORY=${stateDirs.join(':')}`] : []),
    ...words(unit.Service?.Environment),
  ];
  return [
    'setpriv',
    `--reuid=${user}`, `--regid=${one(unit, 'Group')}`, '--init-groups',
    ...(ambient.length ? [`--inh-caps=${setprivCaps(ambient)}`, `--ambient-caps=${setprivCaps(ambient)}`] : []),
    ...(bounding.length ? [`--bounding-set=${setprivCaps(bounding)}`] : []),
    ...(one(unit, 'NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []),
    '--',
    'env', '-i', ...environment,
    'sh', '-c', 'umask "$0" && cd "$1" && shift && exec "$@"',
    one(unit, 'UMask'), one(unit, 'WorkingDirectory'), ...execStart.split(/\s+/),
  ];
}

/** The CapAmb/CapBnd bit mask of capability names (linux/capability.h numbering). */
export function capabilityMask(caps: string[]): bigint {
  const numbers: Record<string, number> = { CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13 };
  return caps.reduce((mask, cap) => {
    const bit = numbers[cap];
    if (bit === undefined) throw new Error(`capability ${cap} is not in this table`);
    return mask | (1n << BigInt(bit));
  }, 0n);
}
