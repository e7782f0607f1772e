import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI } from '../helpers/cli.js';
import { inNamespace, type NetbootLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

export const PI_MAC = 'dc:a6:32:00:00:01';
export const PC_MAC = '52:54:00:12:34:56';
const PROBE = resolve(import.meta.dirname, 'dhcp-probe.ts');
export const RASPBERRY_PI_BOOT = Buffer.from('Raspberry Pi Boot').toString('hex');

interface Probe {
  offer: { yiaddr: string; siaddr: string; options: Record<string, string> } | null;
  ack: { yiaddr: string; options: Record<string, string> } | null;
}

export function dhcp(lab: NetbootLab, mac: string, flavour: 'pi' | 'plain', mode: 'discover' | 'lease'): Probe {
  return JSON.parse(inNamespace(lab.deviceNs, process.execPath, ['--import', 'tsx', PROBE, mac, flavour, mode]));
}

/** `cm4prov serve` with netboot on, inside the lab's server namespace, with pretend boot files. */
export async function startNetbootServer(t: TestContext, lab: NetbootLab, env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'cm4prov-netboot-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const tftp = join(dataDir, 'tftp');
  mkdirSync(join(tftp, '1234abcd'), { recursive: true });
  writeFileSync(join(tftp, '1234abcd', 'start4.elf'), 'pretend firmware\n');
  writeFileSync(join(tftp, 'config.txt'), 'initramfs initrd.img followkernel\n');
  writeFileSync(join(tftp, 'cmdline.txt'), 'console=serial0,115200 provisioning_server=http://10.20.50.1:5000\n');
  writeFileSync(join(tftp, 'kernel8.img'), 'pretend kernel\n');
  const server = lab.spawnIn(lab.serverNs, process.execPath, [
    CLI, 'serve', '--host', '0.0.0.0', '--port', '5000', '--data-dir', dataDir,
    '--netboot-interface', 'br0', '--netboot-address', '10.20.50.1/24', '--dhcp-range', '10.20.50.100,10.20.50.150',
    '--public-url', 'http://10.20.50.1:5000',
  ], env);
  let output = '';
  server.stdout!.on('data', (chunk) => (output += chunk));
  server.stderr!.on('data', (chunk) => (output += chunk));
  const base = `http://${lab.adminAddress}:5000`;
  // (An admin call without the token: a poll would register the device.)
  await waitFor('the server in its namespace', () => fetch(`${base}/api/netboot`).then((r) => r.status === 401, () => false), 30_000, 200)
    .catch((error: Error) => {
      throw new Error(`${error.message}\n${output}`);
    });
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const admin = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  await waitFor('dnsmasq to run', async () => (await admin('GET', '/api/netboot')).body.dnsmasq?.state === 'running', 15_000)
    .catch((error: Error) => {
      throw new Error(`${error.message}\n${output}`);
    });
  return { admin, dataDir, token, base, output: () => output };
}

