import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export const SETUP_SCRIPT = fileURLToPath(new URL('../../lxc/setup-network-boot-on-lxc.sh', import.meta.url));
export const REPO_DIR = fileURLToPath(new URL('../..', import.meta.url));

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded), never through a shell. */
export function run(command: string, args: string[], timeoutMs = 60_000): Run {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs, cwd: REPO_DIR });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Like run, but a non-zero exit is an error that shows the command and what it said. */
export function check(command: string, args: string[]): string {
  const result = run(command, args);
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

/** The output attached to a failed assertion. */
export function shown(result: Run): string {
  return `\n----- exit ${result.status}; stdout -----\n${result.stdout}----- stderr -----\n${result.stderr}----- end -----`;
}

export interface TestNamespace {
  name: string;
  /** `ip netns exec NAME command …`: the command sees only this namespace's network. */
  exec(command: string, args: string[]): Run;
  /** The set-up script under `sh`, inside the namespace. */
  setup(args: string[]): Run;
}

/**
 * A network namespace of the test's own (cm4t-lxc-<random>) holding two veth pairs that stand in
 * for a container's NICs: eth0 ↔ wanpeer and eth1 ↔ lanpeer, all four ends inside it, so nothing
 * done there can reach the host's interfaces or send a packet off this machine. Deleted when the
 * test ends, pass or fail (deleting a namespace deletes its veths; no process is left in it).
 */
export function createTestNamespace(t: TestContext): TestNamespace {
  const name = `cm4t-lxc-${randomBytes(4).toString('hex')}`;
  check('ip', ['netns', 'add', name]);
  t.after(() => {
    run('ip', ['netns', 'delete', name]);
  });
  // `ip -n` runs in the namespace, so both ends of each pair are created there.
  check('ip', ['-n', name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'wanpeer']);
  check('ip', ['-n', name, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'lanpeer']);
  for (const link of ['lo', 'wanpeer', 'lanpeer']) check('ip', ['-n', name, 'link', 'set', link, 'up']);
  const exec = (command: string, args: string[]) => run('ip', ['netns', 'exec', name, command, ...args]);
  // A new namespace copies IPv4 settings from the host's: start from forwarding off whatever the host has.
  const off = exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
  if (off.status !== 0) throw new Error(`cannot turn forwarding off in ${name}: ${off.stderr}`);
  return { name, exec, setup: (args) => exec('sh', [SETUP_SCRIPT, ...args]) };
}

interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  expr: Record<string, unknown>[];
}
interface NftChain {
  family: string;
  table: string;
  name: string;
  type?: string;
  hook?: string;
}
type NftObject = { table?: { family: string; name: string }; chain?: NftChain; rule?: NftRule };

export interface NftTable {
  chains: NftChain[];
  rules: NftRule[];
}

/** `nft -j list table inet NAME` inside the namespace, or undefined when there is no such table. */
export function nftTable(ns: TestNamespace, name: string): NftTable | undefined {
  const listed = ns.exec('nft', ['-j', 'list', 'table', 'inet', name]);
  if (listed.status !== 0) return undefined;
  const objects = (JSON.parse(listed.stdout) as { nftables: NftObject[] }).nftables;
  return {
    chains: objects.flatMap((object) => (object.chain ? [object.chain] : [])),
    rules: objects.flatMap((object) => (object.rule ? [object.rule] : [])),
  };
}

/**
 * A rule's matches and verdict in a flat form, e.g. `{ oifname: 'eth0', saddr: '10.20.50.0/24',
 * verdict: 'masquerade' }`, read from nft's JSON (libnftables-json(5)).
 */
export function describeRule(rule: NftRule): Record<string, string> {
  const described: Record<string, string> = {};
  for (const expr of rule.expr) {
    const match = expr.match as { left: Record<string, unknown>; right: unknown } | undefined;
    if (!match) {
      described.verdict = Object.keys(expr).join(',');
      continue;
    }
    const meta = match.left.meta as { key: string } | undefined;
    const payload = match.left.payload as { protocol: string; field: string } | undefined;
    const ct = match.left.ct as { key: string } | undefined;
    const right = match.right as { prefix?: { addr: string; len: number } } | string | string[];
    const value =
      typeof right === 'string' ? right
      : Array.isArray(right) ? right.join(',')
      : right.prefix ? `${right.prefix.addr}/${right.prefix.len}`
      : JSON.stringify(right);
    const key = meta?.key ?? (payload ? payload.field : ct ? `ct ${ct.key}` : JSON.stringify(match.left));
    described[key] = value;
  }
  return described;
}

export interface Ipv4Address {
  local: string;
  prefixlen: number;
}

/** The interface's IPv4 addresses and flags, from `ip -j addr show dev IF` inside the namespace. */
export function interfaceState(ns: TestNamespace, name: string): { flags: string[]; addresses: Ipv4Address[] } {
  const listed = ns.exec('ip', ['-j', 'addr', 'show', 'dev', name]);
  if (listed.status !== 0) throw new Error(`ip addr show dev ${name}: ${listed.stderr}`);
  const [link] = JSON.parse(listed.stdout) as { flags: string[]; addr_info: (Ipv4Address & { family: string })[] }[];
  if (!link) throw new Error(`no interface ${name} in ${ns.name}`);
  return {
    flags: link.flags,
    addresses: link.addr_info.filter((info) => info.family === 'inet').map(({ local, prefixlen }) => ({ local, prefixlen })),
  };
}
