import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

/** Every process this harness started and that may still run: the SIGINT handler ends them. */
const started = new Set<ChildProcess>();
let refusing = false;

/** After an interrupt: no new process may start while (or after) the others are ended. */
export function refuseNewProcesses() {
  refusing = true;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** A file to feed as standard input (opened here, closed when the process ends). */
  stdinFile?: string;
  /** Throw when the exit status is not 0 (default true). */
  check?: boolean;
  cwd?: string;
}

/** Sends `signal` to the process group of a child we started (its own group: spawned detached). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL') {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Ends every process the harness started that is still running (SIGTERM, then SIGKILL). */
export async function stopAllStarted(graceMs = 2000) {
  const alive = [...started];
  for (const child of alive) killGroup(child, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive.some(isRunning) && Date.now() < deadline) await sleep(50);
  for (const child of alive) killGroup(child, 'SIGKILL');
}

const isRunning = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Starts a process in its own process group (so a kill reaches its children, e.g. the device
 * client's curl and dd) and remembers it until it exits.
 */
export function startProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions; cwd?: string } = {}) {
  if (refusing) throw new Error(`interrupted: not starting ${command}`);
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, detached: true, stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  child.once('exit', () => started.delete(child));
  child.once('error', () => started.delete(child));
  return child;
}

/** Runs a command to its end within `timeoutMs` and returns its output and wall time. */
export function run(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  const stdinFd = options.stdinFile === undefined ? undefined : openSync(options.stdinFile, 'r');
  const began = process.hrtime.bigint();
  const child = startProcess(command, args, { env: options.env, cwd: options.cwd, stdio: [stdinFd ?? 'ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${options.timeoutMs / 1000} s`));
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${command}: ${error.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (stdinFd !== undefined) closeSync(stdinFd);
      const seconds = Number(process.hrtime.bigint() - began) / 1e9;
      if (code !== 0 && options.check !== false) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${(stderr || stdout).trim().slice(-600)}`));
      } else {
        resolve({ code, stdout, stderr, seconds });
      }
    });
  });
}

/** Waits for a child to exit; kills its group after `timeoutMs`. Resolves with its exit code. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (!isRunning(child)) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => killGroup(child), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Asks a child to stop (SIGTERM to its group), then kills it after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 5000) {
  if (!isRunning(child)) return;
  killGroup(child, 'SIGTERM');
  await waitForExit(child, graceMs);
}

/** `command -v NAME`, or undefined. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8', env: { PATH: path } });
  const resolved = found.stdout.trim();
  return found.status === 0 && resolved.startsWith('/') ? resolved : undefined;
}

/**
 * Writes dirty pages out, empties the page cache (so the next read comes from the disk) and
 * waits for the disk to go idle: freeing a deleted target's blocks (discard) or the writeback
 * of the last run must not slow the next one down.
 */
export async function dropCaches(disk?: string) {
  const synced = spawnSync('sync', { timeout: 300_000 });
  if (synced.status !== 0) throw new Error('sync did not finish within 5 min');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  if (disk) await waitForIdleDisk(disk, 60_000);
}

/** The block device under `dir` (its /sys/class/block name), if there is one. */
export function diskOf(dir: string): string | undefined {
  const source = spawnSync('df', ['--output=source', dir], { encoding: 'utf8' }).stdout?.trim().split('\n')[1];
  if (!source?.startsWith('/dev/')) return undefined;
  const name = basename(realpathSync(source));
  return existsSync(`/sys/class/block/${name}/stat`) ? name : undefined;
}

/** Waits until the disk has been idle (io_ticks still) for two half-seconds in a row. */
async function waitForIdleDisk(disk: string, timeoutMs: number) {
  const ioTicks = () => Number(readFileSync(`/sys/class/block/${disk}/stat`, 'utf8').trim().split(/\s+/)[9]);
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  let last = ioTicks();
  while (quiet < 2 && Date.now() < deadline) {
    await sleep(500);
    const now = ioTicks();
    quiet = now - last < 10 ? quiet + 1 : 0;
    last = now;
  }
}

export const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5) (utime, stime) are 11 and 12 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Waits until a process has used less than 3 % of a core for two seconds in a row (background
 * work after an import, say), so that it does not run into the measurement. Returns the wait.
 */
export async function waitUntilIdle(pid: number, timeoutMs: number): Promise<number> {
  const began = Date.now();
  let quiet = 0;
  let last = cpuSeconds(pid);
  while (quiet < 2) {
    if (Date.now() - began > timeoutMs) throw new Error(`process ${pid} was still busy after ${timeoutMs / 1000} s`);
    await sleep(1000);
    const now = cpuSeconds(pid);
    quiet = now - last < 0.03 ? quiet + 1 : 0;
    last = now;
  }
  return (Date.now() - began) / 1000;
}

/** Resident set size now and its peak (VmRSS, VmHWM), in bytes. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Direct children of a process (e.g. nginx's workers). */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (text) pids.push(...text.split(/\s+/).map(Number));
  }
  return pids;
}
