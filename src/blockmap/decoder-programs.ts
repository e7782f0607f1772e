import { spawn } from 'node:child_process';
import { pipeline } from 'node:stream/promises';

export class DecodeError extends Error {
  override name = 'DecodeError';
}

export interface Program {
  command: string;
  args: string[];
  /** The Debian package that installs it, named when it is missing. */
  debian: string;
  /** What the program's exit status means when it is neither 0 nor a damaged-data failure. */
  exitReasons?: Record<number, string>;
  /** A server path in its messages, replaced before they reach anyone (a spooled upload). */
  hidePath?: string;
}

export interface ProgramOutput {
  raw: AsyncIterable<Buffer>;
  /** Resolves when the program exited 0; rejects with a DecodeError naming what went wrong. */
  done: Promise<void>;
  stop(): void;
}

/**
 * Runs a decompressing program (Debian's xz, bzip2, lz4, unzip) with `input` on its stdin, its
 * output as the image bytes. Its exit status says whether the data was whole.
 * `label` names the data in messages ("bzip2 data", "zip").
 */
export function runDecoder(program: Program, label: string, input: AsyncIterable<Buffer> | null): ProgramOutput {
  const { command, args, debian } = program;
  const child = spawn(command, args, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(0, 4096)));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ENOENT' ? `the ${command} program is missing on the server (install the Debian package ${debian})` : error.message;
      reject(new DecodeError(`cannot decompress the ${label}: ${why}`));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const known = code === null ? undefined : program.exitReasons?.[code];
      const said = program.hidePath ? stderr.replaceAll(program.hidePath, 'the upload') : stderr;
      const why = known ?? (firstLine(said, command) || (signal ? `${command} was stopped (${signal})` : `${command} exit ${code}`));
      reject(new DecodeError(known ? `the ${label} ${known}` : `the ${label} is damaged or cut: ${why}`));
    });
  });
  // A failure to feed it shows in its exit status.
  const fed = input ? pipeline(input, child.stdin!).catch(() => undefined) : Promise.resolve();
  const done = Promise.all([fed, exited]).then(() => undefined);
  done.catch(() => undefined); // handled by whoever awaits it, maybe after it settles
  return { raw: child.stdout!, done, stop: () => void child.kill() };
}

/** A program's first complaint without its name: one clause for a sentence. */
export function firstLine(stderr: string, command: string): string {
  const line = stderr.split('\n').map((text) => text.trim()).find((text) => text.length > 0) ?? '';
  return line.replace(new RegExp(`^${command}:\\s*`), '').replace(/[;:.,]+$/, '').slice(0, 200);
}

/** Runs a program to completion and returns its stdout (at most `limit` bytes kept). */
export function runToEnd(command: string, args: string[], limit = 1024 * 1024): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout = (stdout + chunk).slice(0, limit)));
    child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(0, 4096)));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
