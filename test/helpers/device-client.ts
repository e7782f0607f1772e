import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { ioHelperDir } from './io-helper.js';
import { tempDir } from './server.js';
import { watchProcess, type WatchedProcess } from './watched-process.js';

export const CLIENT_SCRIPT = resolve(import.meta.dirname, '../../device/provisioning-client.sh');

const toolsDirs = new Map<boolean, string>();
const BUSYBOX = execFileSync('sh', ['-c', 'command -v busybox']).toString().trim();
const IPROUTE2 = execFileSync('sh', ['-c', 'command -v ip']).toString().trim();

/**
 * A PATH holding only busybox applets, curl and zstd: what the netboot initramfs has. A client
 * that used bash, GNU coreutils or jq would fail here. cm4prov-io comes after it (see runClient).
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

/**
 * mtools and debugfs (what the initramfs ships for per-device files), for a client run with
 * WITH_FILE_TOOLS=1: a folder put after the busybox one on its PATH.
 */
function fileToolsPath(t: TestContext): string {
  const dir = join(tempDir(t, 'cm4prov-file-tools-'), 'bin');
  mkdirSync(dir);
  for (const tool of ['mcopy', 'mtype', 'mdir', 'mmd', 'debugfs']) {
    const found = execFileSync('sh', ['-c', `command -v ${tool} || true`]).toString().trim();
    if (found) symlinkSync(found, join(dir, tool));
  }
  return dir;
}

/** The running client: its output, exit and a kill for it and everything it started. */
export type ClientRun = WatchedProcess;

/**
 * IO_HELPER=none in `env`: the client moves the bytes with dd and sha256sum, as on an initramfs
 * built without cm4prov-io; otherwise cm4prov-io is on its PATH, as on one built with it.
 */
export interface ClientOptions {
  server: string;
  target: string;
  mac: string;
  env?: Record<string, string>;
  /** Runs it inside this network namespace (a device on a test's own LAN), else beside the test. */
  namespace?: string;
}

/** Runs the real device/provisioning-client.sh under `busybox sh` with a file as its eMMC. */
export function runClient(t: TestContext, options: ClientOptions): ClientRun {
  const { PATH_WITHOUT_ZSTD, WITH_FILE_TOOLS, ...env } = options.env ?? {};
  // The host's ip (iproute2) by its path: the client's PATH holds busybox's, which has no netns.
  const [command, args] = options.namespace ? [IPROUTE2, ['netns', 'exec', options.namespace, BUSYBOX, 'sh', CLIENT_SCRIPT]] : [BUSYBOX, ['sh', CLIENT_SCRIPT]];
  const child = spawn(command, args, {
    detached: true, // its own process group, so a kill reaches curl and dd too
    env: {
      // PATH_WITHOUT_ZSTD=1: an initramfs without zstd, hence without cm4prov-io (it links libzstd).
      PATH: [...(PATH_WITHOUT_ZSTD ? [busyboxPath(t, false)] : [busyboxPath(t), ioHelperDir()]), ...(WITH_FILE_TOOLS ? [fileToolsPath(t)] : [])].join(':'),
      PROVISIONING_SERVER: options.server,
      TARGET_DEVICE: options.target,
      DEVICE_MAC: options.mac,
      PROVISIONING_CMDLINE: '/dev/null',
      POLL_INTERVAL: '1',
      POLL_WAIT: '20',
      PROGRESS_INTERVAL: '1',
      RETRY_MAX_DELAY: '2',
      // Never the host's own LED (/sys/class/leds/ACT or led0): a test that wants one gives its own.
      LED_DIR: join(tempDir(t, 'cm4prov-no-led-'), 'none'),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchProcess(t, child, 'the client', 30_000);
}
