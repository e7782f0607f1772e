import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';

/** Runs a command inside a network namespace. */
export function inNamespace(ns: string, command: string, args: string[], options: { input?: string } = {}): string {
  return execFileSync('ip', ['netns', 'exec', ns, command, ...args], { encoding: 'utf8', input: options.input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

export interface NetbootLab {
  /** The provisioning server's namespace: bridge br0 at 10.20.50.1/24, like an LXC's eth1. */
  serverNs: string;
  /** A device's namespace: eth0 plugged into that bridge, no address until it asks for one. */
  deviceNs: string;
  deviceInterface: string;
  /** How this test (in the host namespace) reaches the server: a private veth pair. */
  adminAddress: string;
  /** Starts a process inside a namespace; it is killed by PID when the test ends. */
  spawnIn(ns: string, command: string, args: string[], env?: Record<string, string>): ChildProcess;
}

function namespacePids(ns: string): number[] {
  try {
    return ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function waitForExit(child: ChildProcess, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  t.skip('needs root for network namespaces (CI runs as root)');
  return false;
}

/**
 * Two network namespaces joined by a bridge, made for one test and deleted after it (which also
 * deletes their veths). Nothing here can reach beyond them: the only link into the host's own
 * namespace is a /30 veth pair used to call the server's HTTP API.
 */
export function createNetbootLab(t: TestContext): NetbootLab {
  const id = randomBytes(3).toString('hex');
  const serverNs = `cm4t-s-${id}`;
  const deviceNs = `cm4t-d-${id}`;
  const children: ChildProcess[] = [];
  const third = 1 + (parseInt(id.slice(0, 2), 16) % 250);
  const fourth = 4 * (parseInt(id.slice(2, 4), 16) % 60);
  const hostSide = `10.254.${third}.${fourth + 1}`;
  const adminAddress = `10.254.${third}.${fourth + 2}`;

  t.after(async () => {
    // Processes in our namespaces are ours (the server and the dnsmasq it started): ask the
    // server to stop first, then end whatever is left; deleting a namespace kills nothing.
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.all(children.map((child) => (child.exitCode === null && child.signalCode === null ? waitForExit(child, 5000) : undefined)));
    for (const ns of [serverNs, deviceNs]) {
      for (const pid of namespacePids(ns)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    for (const ns of [serverNs, deviceNs]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // Already gone.
      }
    }
    try {
      ip('link', 'del', `cm4a-${id}`);
    } catch {
      // Deleted with its peer's namespace.
    }
  });

  ip('netns', 'add', serverNs);
  ip('netns', 'add', deviceNs);
  ip('-n', serverNs, 'link', 'set', 'lo', 'up');
  ip('-n', deviceNs, 'link', 'set', 'lo', 'up');
  ip('-n', serverNs, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', serverNs, 'addr', 'add', '10.20.50.1/24', 'dev', 'br0');
  ip('-n', serverNs, 'link', 'set', 'br0', 'up');

  ip('link', 'add', `cm4p-${id}`, 'type', 'veth', 'peer', 'name', `cm4q-${id}`);
  ip('link', 'set', `cm4p-${id}`, 'netns', serverNs);
  ip('link', 'set', `cm4q-${id}`, 'netns', deviceNs);
  ip('-n', serverNs, 'link', 'set', `cm4p-${id}`, 'master', 'br0', 'up');
  ip('-n', deviceNs, 'link', 'set', `cm4q-${id}`, 'name', 'eth0');
  ip('-n', deviceNs, 'link', 'set', 'eth0', 'address', 'dc:a6:32:00:00:01', 'up');
  // A DHCP client without an address needs a route for its broadcast (see NOTES.md).
  ip('-n', deviceNs, 'route', 'add', '255.255.255.255/32', 'dev', 'eth0');

  ip('link', 'add', `cm4a-${id}`, 'type', 'veth', 'peer', 'name', `cm4b-${id}`);
  ip('link', 'set', `cm4b-${id}`, 'netns', serverNs);
  ip('addr', 'add', `${hostSide}/30`, 'dev', `cm4a-${id}`);
  ip('link', 'set', `cm4a-${id}`, 'up');
  ip('-n', serverNs, 'addr', 'add', `${adminAddress}/30`, 'dev', `cm4b-${id}`);
  ip('-n', serverNs, 'link', 'set', `cm4b-${id}`, 'up');

  return {
    serverNs,
    deviceNs,
    deviceInterface: 'eth0',
    adminAddress,
    spawnIn(ns, command, args, env = {}) {
      const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      children.push(child);
      return child;
    },
  };
}
