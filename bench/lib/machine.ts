import { spawnSync } from 'node:child_process';
import { readFileSync, statfsSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { CLOCK_TICKS } from './proc.js';
import { GIB } from './stats.js';

export interface Machine {
  cpu: string;
  cores: number;
  ram: string;
  os: string;
  kernel: string;
  disk: string;
  code: string;
  /** 1-minute load average at the start and the end of the run: other work skews the numbers. */
  load: string;
  /** CPU the machine used outside this run's processes while it ran. */
  otherCpu: string;
  versions: Record<string, string>;
}

/** The version a command prints (nginx -v on stderr, busybox in its banner), e.g. `1.22.1`. */
function version(command: string, args: string[]) {
  const out = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  const text = `${out.stdout ?? ''}${out.stderr ?? ''}`;
  return /\d+\.\d+(\.\d+)?/.exec(text)?.[0] ?? '?';
}

/**
 * Which code was measured: the commit, whether src/, device/ or bin/ had uncommitted changes,
 * and the device client's version.
 */
export function describeCode(repo: string) {
  const git = (...args: string[]) => spawnSync('git', ['-C', repo, ...args], { encoding: 'utf8', timeout: 10_000 });
  const head = git('rev-parse', '--short', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'src', 'device', 'bin').stdout?.trim();
  const client = /^CLIENT_VERSION=(\S+)/m.exec(readFileSync(`${repo}/device/provisioning-client.sh`, 'utf8'))?.[1] ?? '?';
  const commit = head.status === 0 ? `commit ${head.stdout.trim()}${dirty ? ' + uncommitted changes in src/, device/ or bin/' : ''}` : 'not a git checkout';
  return `${commit}; device client ${client}`;
}

/** The 1-minute load average now. */
export const loadAverage = () => loadavg()[0]!.toFixed(2);


/** CPU seconds (user + nice + system) the whole machine has used since boot. */
function machineCpuSeconds() {
  const [, user, nice, system] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  return (user! + nice! + system!) / CLOCK_TICKS;
}

/** CPU seconds of this process and of every child it has reaped (and theirs, recursively). */
function ownCpuSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return (fields[11]! + fields[12]! + fields[13]! + fields[14]!) / CLOCK_TICKS;
}

/**
 * Measures how much CPU the rest of the machine used while the benchmarks ran: everything but
 * this process and its (reaped) descendants. A rough check that catches another test suite or
 * build running meanwhile; kernel threads and interrupt accounting blur the last CPU second.
 */
export function otherCpuMeter() {
  const start = { machine: machineCpuSeconds(), own: ownCpuSeconds(), at: Date.now() };
  return () => {
    const seconds = (Date.now() - start.at) / 1000;
    const other = machineCpuSeconds() - start.machine - (ownCpuSeconds() - start.own);
    // Softirq work charged to our processes makes small values noise: say so rather than print it.
    if (other < 1) return 'none measurable during the run (< 1 CPU s)';
    return `${other.toFixed(0)} CPU s during the run (${((100 * other) / (seconds * cpus().length)).toFixed(1)} % of the machine): the numbers may be skewed`;
  };
}

const VERSION_ARGS: Record<string, string[]> = { nginx: ['-v'], busybox: [], ip: ['-V'] };

/** What the numbers were measured on: CPU, RAM, kernel, the disk under `dir`, tool versions. */
export function describeMachine(dir: string, repo: string, tools: Record<string, string | undefined>, loadAtStart: string, otherCpu: string): Machine {
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const osName = /^PRETTY_NAME="?(.*?)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'Linux';
  const disk = statfsSync(dir);
  const device = spawnSync('df', ['--output=source', dir], { encoding: 'utf8' }).stdout?.trim().split('\n')[1] ?? '?';
  const versions: Record<string, string> = { node: process.version.slice(1) };
  for (const [name, path] of Object.entries(tools)) versions[name] = path ? version(path, VERSION_ARGS[name] ?? ['--version']) : 'not installed';
  return {
    cpu: model,
    cores: cpus().length,
    ram: `${(totalmem() / GIB).toFixed(1)} GiB`,
    os: osName,
    kernel: release(),
    code: describeCode(repo),
    load: `${loadAtStart} at the start, ${loadAverage()} at the end`,
    otherCpu,
    disk: `${device}, ${((disk.bavail * disk.bsize) / GIB).toFixed(0)} GiB free of ${((disk.blocks * disk.bsize) / GIB).toFixed(0)} GiB (${dir})`,
    versions,
  };
}
