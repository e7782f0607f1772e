import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Cleanup } from './cleanup.js';
import { sleep } from './proc.js';

/** Absolute paths, so that a busybox-only PATH handed to a child never picks busybox's `ip`. */
export interface Tools {
  ip: string;
  tc: string;
}

/**
 * Where a benchmark's processes run. Every lab is made of network namespaces this harness
 * creates and deletes, so no benchmark traffic ever touches the host's own interfaces: either
 * one namespace's loopback, or two namespaces joined by a veth pair shaped with tc.
 */
export interface Lab {
  description: string;
  serverNs: string;
  clientNs: string;
  /** The server's address as the client side reaches it. */
  serverAddress: string;
  /** The client side's address as the server side reaches it (a veth lab only). */
  clientAddress?: string;
  /** argv prefix that runs a command inside a namespace. */
  exec(ns: string): string[];
  /** Deletes the namespaces after ending every process still inside them. */
  close(): Promise<void>;
}

const PREFIX = 'cm4bench';
const SERVER_ADDRESS = '10.203.0.1';
const CLIENT_ADDRESS = '10.203.0.2';

function ipCommand(tools: Tools, args: string[]) {
  execFileSync(tools.ip, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function namespacePids(tools: Tools, ns: string): number[] {
  try {
    return execFileSync(tools.ip, ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Ends the processes inside our namespaces (all of them ours), then deletes the namespaces. */
async function deleteNamespaces(tools: Tools, namespaces: string[]) {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const pids = namespaces.flatMap((ns) => namespacePids(tools, ns));
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
    if (pids.length && signal === 'SIGTERM') await sleep(1000);
  }
  for (const ns of namespaces) {
    try {
      ipCommand(tools, ['netns', 'del', ns]);
    } catch {
      // Never created, or already deleted.
    }
  }
}

function createNamespaces(tools: Tools, cleanup: Cleanup, names: string[]) {
  const close = cleanup.add(`namespaces ${names.join(', ')}`, () => deleteNamespaces(tools, names));
  for (const ns of names) {
    ipCommand(tools, ['netns', 'add', ns]);
    ipCommand(tools, ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  return close;
}

const execIn = (tools: Tools) => (ns: string) => [tools.ip, 'netns', 'exec', ns];

/** One new namespace with only its loopback: server, baseline and clients all on 127.0.0.1. */
export function createLoopbackLab(tools: Tools, cleanup: Cleanup): Lab {
  const ns = `${PREFIX}-${randomBytes(3).toString('hex')}-lo`;
  const close = createNamespaces(tools, cleanup, [ns]);
  return { description: 'one namespace\'s lo', serverNs: ns, clientNs: ns, serverAddress: '127.0.0.1', exec: execIn(tools), close };
}

/**
 * A server namespace and a client namespace joined by a veth pair whose two ends are each
 * shaped to `rate` with a token bucket (tc tbf), like a switched gigabit LAN. The pair is
 * created inside the namespaces and carries only addresses set there.
 */
export function createLinkLab(tools: Tools, cleanup: Cleanup, options: { rate: string; clientMac: string }): Lab {
  const id = randomBytes(3).toString('hex');
  const serverNs = `${PREFIX}-${id}-srv`;
  const clientNs = `${PREFIX}-${id}-dev`;
  const close = createNamespaces(tools, cleanup, [serverNs, clientNs]);
  ipCommand(tools, ['-n', serverNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', clientNs]);
  ipCommand(tools, ['-n', clientNs, 'link', 'set', 'eth0', 'address', options.clientMac]);
  for (const [ns, address] of [[serverNs, SERVER_ADDRESS], [clientNs, CLIENT_ADDRESS]] as const) {
    ipCommand(tools, ['-n', ns, 'addr', 'add', `${address}/30`, 'dev', 'eth0']);
    ipCommand(tools, ['-n', ns, 'link', 'set', 'eth0', 'up']);
    // A 1 MB bucket lets a 1 Gbit/s tbf reach its rate with TSO-sized packets on a veth.
    execFileSync(tools.tc, ['-n', ns, 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', options.rate, 'burst', '1mb', 'latency', '20ms'], { timeout: 10_000 });
  }
  return { description: `veth pair, tc tbf ${options.rate} on both ends`, serverNs, clientNs, serverAddress: SERVER_ADDRESS, clientAddress: CLIENT_ADDRESS, exec: execIn(tools), close };
}

/** Namespaces of our prefix left by a run that was killed (SIGKILL skips clean-up). */
export function leftoverNamespaces(tools: Tools): string[] {
  try {
    const listing = execFileSync(tools.ip, ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
    return listing.split('\n').map((line) => line.split(' ')[0]!).filter((name) => name.startsWith(`${PREFIX}-`));
  } catch {
    return [];
  }
}

/** Bytes sent so far by the server side's end of a veth lab (its eth0's tx counter). */
export function serverTxBytes(tools: Tools, lab: Lab): number {
  const [link] = JSON.parse(execFileSync(tools.ip, ['-n', lab.serverNs, '-s', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8', timeout: 10_000 })) as { stats64: { tx: { bytes: number } } }[];
  return link!.stats64.tx.bytes;
}
