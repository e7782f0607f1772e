import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO_DIR = fileURLToPath(new URL('../..', import.meta.url));
/** Downloads and images kept between runs (gitignored). */
const CACHE_DIR = join(REPO_DIR, 'test-artifacts', 'deb-root');

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

export const shown = (result: Ran) => `\n----- exit ${result.status}; stdout -----\n${result.stdout}----- stderr -----\n${result.stderr}----- end -----`;

/** Runs a command to its end, never through a shell; stdin from `input`. */
export function run(command: string, args: string[], options: { input?: string; timeoutMs?: number; cwd?: string } = {}): Ran {
  const result: SpawnSyncReturns<string> = spawnSync(command, args, {
    encoding: 'utf8', input: options.input ?? '', timeout: options.timeoutMs ?? 300_000, cwd: options.cwd, maxBuffer: 64 << 20,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Like run, but an exit status other than 0 throws with what the command said. */
export function check(command: string, args: string[], options: Parameters<typeof run>[2] = {}): string {
  const result = run(command, args, options);
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}${shown(result)}`);
  return result.stdout;
}

/** The Debian release and mirror this machine's own apt uses (from `apt-cache policy`). */
export function hostDebianSource(): { suite: string; mirror: string } {
  const osRelease = readFileSync('/etc/os-release', 'utf8');
  const suite = /^VERSION_CODENAME=(\S+)$/m.exec(osRelease)?.[1];
  if (!suite) throw new Error('/etc/os-release names no VERSION_CODENAME: not a Debian release?');
  const arch = check('dpkg', ['--print-architecture']).trim();
  const lines = check('apt-cache', ['policy']).split('\n');
  for (const [index, line] of lines.entries()) {
    const source = /^\s*\d+\s+(\S+)\s+(\S+)\/main\s+(\S+)\s+Packages$/.exec(line);
    const release = lines[index + 1] ?? '';
    if (source && source[2] === suite && source[3] === arch && /\bo=Debian\b/.test(release)) return { suite, mirror: source[1]! };
  }
  throw new Error(`apt-cache policy lists no Debian ${suite}/main ${arch} source to bootstrap from`);
}

/**
 * A minimal Debian root (debootstrap --variant=minbase, plus systemd as on any server or LXC
 * container) of this machine's release, from its own mirror. Made once and kept as a tar file.
 */
function rootImage(): string {
  const { suite, mirror } = hostDebianSource();
  const arch = check('dpkg', ['--print-architecture']).trim();
  const image = join(CACHE_DIR, `debian-${suite}-${arch}-minbase-systemd.tar`);
  if (existsSync(image)) return image;
  mkdirSync(CACHE_DIR, { recursive: true });
  const target = mkdtempSync(join(CACHE_DIR, 'bootstrap-'));
  try {
    check('debootstrap', ['--variant=minbase', '--include=systemd', suite, target, mirror], { timeoutMs: 900_000 });
    check('tar', ['-C', target, '-cf', `${image}.partial`, '.'], { timeoutMs: 300_000 });
    renameSync(`${image}.partial`, image);
  } finally {
    rmSync(target, { recursive: true, force: true });
    rmSync(`${image}.partial`, { force: true });
  }
  return image;
}

/**
 * This machine's Node.js (Debian 12's own nodejs is 18: too old) turned back into a .deb by
 * dpkg-repack from the files dpkg installed, so that a clean root runs the same Node 20.
 */
export function hostNodejsDeb(): string {
  const version = check('dpkg-query', ['-W', '-f=${Version}', 'nodejs']).trim();
  const arch = check('dpkg', ['--print-architecture']).trim();
  const deb = join(CACHE_DIR, `nodejs_${version.replace(/^\d+:/, '')}_${arch}.deb`);
  if (existsSync(deb)) return deb;
  mkdirSync(CACHE_DIR, { recursive: true });
  const work = mkdtempSync(join(CACHE_DIR, 'repack-'));
  try {
    // gzip -1: the cache is local; xz would take a minute on this 60 MB package.
    check('dpkg-repack', ['--deb-option=-Zgzip', '--deb-option=-z1', 'nodejs'], { cwd: work, timeoutMs: 300_000 });
    renameSync(join(work, `nodejs_${version.replace(/^\d+:/, '')}_${arch}.deb`), deb);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return deb;
}

export interface CleanRoot {
  dir: string;
  /**
   * A command chrooted into it, in a mount namespace of its own with /proc and /sys mounted
   * there (/sys/class/net shows the network namespace's interfaces): the mounts go when the
   * command ends, so nothing is ever left mounted on the host. `netns`:
   * inside that network namespace.
   */
  argv(command: string[], options?: { netns?: string }): string[];
  run(command: string[], options?: { input?: string; netns?: string }): Ran;
  check(command: string[], options?: { input?: string; netns?: string }): string;
  /** A long-running command (a server); the caller ends it. */
  spawn(command: string[], options?: { netns?: string }): ReturnType<typeof spawn>;
}

/** A fresh copy of the Debian root image in a temp folder, deleted when the test ends. */
export function createCleanRoot(t: TestContext): CleanRoot {
  const image = rootImage();
  const dir = mkdtempSync(join(tmpdir(), 'cm4prov-deb-root-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  check('tar', ['-C', dir, '-xf', image], { timeoutMs: 300_000 });
  chmodSync(dir, 0o755); // mkdtemp made it 0700: the service user must reach its own /usr
  const argv = (command: string[], options: { netns?: string } = {}) => [
    ...(options.netns ? ['ip', 'netns', 'exec', options.netns] : []),
    'unshare', '--mount', '--propagation', 'private', '--',
    'sh', '-c', 'mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && exec chroot "$0" "$@"', dir, ...command,
  ];
  return {
    dir,
    argv,
    run: (command, options = {}) => {
      const [first, ...rest] = argv(command, options);
      return run(first!, rest, { input: options.input });
    },
    check: (command, options = {}) => {
      const [first, ...rest] = argv(command, options);
      return check(first!, rest, { input: options.input });
    },
    spawn: (command, options = {}) => {
      const [first, ...rest] = argv(command, options);
      return spawn(first!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    },
  };
}
