import { execFile, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { watchProcess, type WatchedProcess } from './watched-process.js';

export const CLI = resolve(import.meta.dirname, '../../bin/cm4prov.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `cm4prov ARGS` as a user would (node bin/cm4prov.js), without a terminal. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<CliResult> {
  return new Promise((resolveRun) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, cwd, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** Runs `cm4prov ARGS` with `input` on its stdin (a pipe, as in `echo "$PW" | cm4prov admin password`). */
export function runCliWithInput(args: string[], env: Record<string, string | undefined>, input: string): Promise<CliResult> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => resolveRun({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Runs `cm4prov ARGS` inside a pseudo-terminal (util-linux `script`), as at a bench. */
export function runCliOnTty(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  const command = [process.execPath, CLI, ...args].map((part) => `'${part.replaceAll("'", `'\\''`)}'`).join(' ');
  return new Promise((resolveRun) => {
    const child = spawn('script', ['-qefc', command, '/dev/null'], { env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm', ...env } });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.on('exit', (code) => resolveRun({ code, stdout, stderr: '' }));
  });
}

/** A running `cm4prov`: its output (stdout and stderr interleaved, as on a terminal), exit and kill. */
export type RunningCli = WatchedProcess;

/**
 * Starts `cm4prov ARGS` and returns while it runs, for commands that wait (`serve`, `--wait`);
 * with `tty`, inside a pseudo-terminal (util-linux `script`). Killed when the test ends.
 */
export function startCli(t: TestContext, args: string[], env: Record<string, string | undefined>, options: { tty?: boolean } = {}): RunningCli {
  const command = [process.execPath, CLI, ...args];
  const shellLine = command.map((part) => `'${part.replaceAll("'", `'\\''`)}'`).join(' ');
  const [file, argv] = options.tty ? ['script', ['-qefc', shellLine, '/dev/null']] : [command[0]!, command.slice(1)];
  const child = spawn(file, argv, {
    detached: true, // its own process group, so a kill reaches script's child too
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...(options.tty ? { TERM: 'xterm' } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchProcess(t, child, `cm4prov ${args.join(' ')}`, 60_000);
}
