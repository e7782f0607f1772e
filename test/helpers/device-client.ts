import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, symlinkSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './server.js';

export const CLIENT_SCRIPT = resolve(import.meta.dirname, '../../device/provisioning-client.sh');

const toolsDirs = new Map<boolean, string>();
const BUSYBOX = execFileSync('sh', ['-c', 'command -v busybox']).toString().trim();

/**
 * A PATH holding only busybox applets, curl and zstd: what the netboot initramfs has. A client
 * that used bash, GNU coreutils or jq would fail here.
 */
function busyboxPath(t: TestContext, withZstd = true): string {
  const known = toolsDirs.get(withZstd);
  if (known && existsSync(known)) return known;
  const busybox = BUSYBOX;
  const curl = execFileSync('sh', ['-c', 'command -v curl']).toString().trim();
  const dir = join(tempDir(t, 'cm4prov-busybox-'), 'bin');
  mkdirSync(dir);
  for (const applet of execFileSync(busybox, ['--list']).toString().split('\n').filter(Boolean)) {
    symlinkSync(busybox, join(dir, applet));
  }
  symlinkSync(curl, join(dir, 'curl'));
  const zstd = execFileSync('sh', ['-c', 'command -v zstd || true']).toString().trim();
  if (zstd && withZstd) symlinkSync(zstd, join(dir, 'zstd'));
  toolsDirs.set(withZstd, dir);
  return dir;
}

export interface ClientRun {
  child: ChildProcess;
  /** Everything the client printed (it logs to stderr). */
  output(): string;
  exited: Promise<number | null>;
  /** Resolves when the client has printed a line matching `pattern`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Kills the client and everything it started (its process group). */
  kill(signal?: NodeJS.Signals): void;
}

export interface ClientOptions {
  server: string;
  target: string;
  mac: string;
  env?: Record<string, string>;
}

/** Runs the real device/provisioning-client.sh under `busybox sh` with a file as its eMMC. */
export function runClient(t: TestContext, options: ClientOptions): ClientRun {
  const { PATH_WITHOUT_ZSTD, ...env } = options.env ?? {};
  const child = spawn(BUSYBOX, ['sh', CLIENT_SCRIPT], {
    detached: true, // its own process group, so a kill reaches curl and dd too
    env: {
      // PATH_WITHOUT_ZSTD=1: a device whose initramfs has no zstd.
      PATH: PATH_WITHOUT_ZSTD ? busyboxPath(t, false) : busyboxPath(t),
      PROVISIONING_SERVER: options.server,
      TARGET_DEVICE: options.target,
      DEVICE_MAC: options.mac,
      PROVISIONING_CMDLINE: '/dev/null',
      POLL_INTERVAL: '1',
      POLL_WAIT: '20',
      PROGRESS_INTERVAL: '1',
      RETRY_MAX_DELAY: '2',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const listeners = new Set<() => void>();
  const collect = (chunk: Buffer) => {
    text += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // Already gone.
    }
  };
  t.after(() => kill());
  return {
    child,
    output: () => text,
    exited,
    kill,
    waitForOutput(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(text)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`client never printed ${pattern}; it printed:\n${text}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
