import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { render, VARIABLES } from '../../src/device-files/template.js';

export const HOOK_DIR = fileURLToPath(new URL('../../src/first-boot/hook/', import.meta.url));
/** The two variables the server adds for the hook, besides the per-device-file ones. */
export const HOOK_VARIABLES = ['first_boot_url', 'first_boot_token'] as const;

export const DEVICE = {
  mac: 'dc:a6:32:01:02:03',
  serial: '10000000c0ffee01',
  token: 'fb-3f9a1c0d7e',
  os_release: 'Debian GNU/Linux 12 (bookworm)',
  kernel: '6.6.51+rpt-rpi-v8',
};

/** Renders a hook template with the project's own renderer; every name must have a value. */
export async function renderHook(file: string, values: Record<string, string>): Promise<string> {
  const template = await readFile(join(HOOK_DIR, file), 'utf8');
  const all: Record<string, string> = {
    ...Object.fromEntries(VARIABLES.map((name) => [name, `unused-${name}`])),
    mac: DEVICE.mac,
    serial: DEVICE.serial,
    first_boot_token: DEVICE.token,
    ...values,
  };
  const result = render(template, (name) => (name in all ? { value: all[name]! } : { missing: `no value for ${name}` }));
  if ('missing' in result) throw new Error(`${file}: ${result.name}: ${result.missing}`);
  return result.text;
}

export interface FakeRoot {
  dir: string;
  path: (relative: string) => string;
}

/** A temp dir shaped like the installed OS, as far as the hook reads and writes it. */
export async function fakeRoot(t: TestContext, options: { bootDir?: string; serialFile?: boolean; cpuinfoSerial?: boolean; wired?: boolean } = {}): Promise<FakeRoot> {
  const dir = await mkdtemp(join(tmpdir(), 'cm4prov-hook-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = (relative: string) => join(dir, relative);
  const put = async (relative: string, text: string | Buffer) => {
    await mkdir(join(path(relative), '..'), { recursive: true });
    await writeFile(path(relative), text);
  };
  await mkdir(path(options.bootDir ?? 'boot/firmware'), { recursive: true });
  await mkdir(path('etc/systemd/system'), { recursive: true });
  await put('etc/os-release', `PRETTY_NAME="${DEVICE.os_release}"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n`);
  await put('proc/sys/kernel/osrelease', `${DEVICE.kernel}\n`);
  if (options.serialFile ?? true) await put('proc/device-tree/serial-number', Buffer.from(`${DEVICE.serial}\0`));
  await put('proc/cpuinfo', `processor\t: 0\nHardware\t: BCM2835\n${options.cpuinfoSerial ? 'Serial\t\t: 10000000cafe0002\n' : ''}Model\t\t: Raspberry Pi Compute Module 4 Rev 1.1\n`);
  // lo and a Wi-Fi interface come first in glob order and must be skipped
  await put('sys/class/net/lo/address', '00:00:00:00:00:00\n');
  await put('sys/class/net/a-wlan0/address', 'dc:a6:32:99:99:99\n');
  await mkdir(path('sys/class/net/a-wlan0/device'), { recursive: true });
  await mkdir(path('sys/class/net/a-wlan0/wireless'), { recursive: true });
  if (options.wired ?? true) {
    await put('sys/class/net/eth0/address', `${DEVICE.mac}\n`);
    await mkdir(path('sys/class/net/eth0/device'), { recursive: true });
  }
  return { dir, path };
}

export interface Listener {
  url: string;
  requests: { method: string; url: string; contentType: string; body: string }[];
}

/** A loopback HTTP listener answering each POST with the next of `statuses` (the last repeats). */
export async function listener(t: TestContext, statuses: number[]): Promise<Listener> {
  const requests: Listener['requests'] = [];
  const server: Server = createServer((request, reply) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      requests.push({
        method: request.method ?? '',
        url: request.url ?? '',
        contentType: request.headers['content-type'] ?? '',
        body: Buffer.concat(chunks).toString('utf8'),
      });
      reply.statusCode = statuses[Math.min(requests.length - 1, statuses.length - 1)]!;
      reply.end('');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/api/first-boot`, requests };
}

/** A loopback URL nobody listens on: a port bound, then closed. */
export async function refusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/api/first-boot`;
}

/**
 * A systemctl stand-in that records its arguments, one call a line: systemctl cannot run here
 * (no systemd as PID 1). It is the only stub; everything else the scripts run is real.
 */
export async function systemctlStub(root: FakeRoot): Promise<{ path: string; calls: () => Promise<string[]> }> {
  const log = root.path('systemctl.calls');
  const path = root.path('systemctl-stub');
  await writeFile(path, `#!/bin/sh\necho "$*" >> '${log}'\n`);
  await chmod(path, 0o755);
  return {
    path,
    calls: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean),
  };
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the event loop (the listener lives in this process). */
export function run(command: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
