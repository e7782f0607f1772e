import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { CLI } from '../helpers/cli.js';
import { createNetbootLab, inNamespace, requireRoot, type NetbootLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

const PI_MAC = 'dc:a6:32:00:00:01';
const PC_MAC = '52:54:00:12:34:56';
const PROBE = resolve(import.meta.dirname, 'dhcp-probe.ts');
const RASPBERRY_PI_BOOT = Buffer.from('Raspberry Pi Boot').toString('hex');

interface Probe {
  offer: { yiaddr: string; siaddr: string; options: Record<string, string> } | null;
  ack: { yiaddr: string; options: Record<string, string> } | null;
}

function dhcp(lab: NetbootLab, mac: string, flavour: 'pi' | 'plain', mode: 'discover' | 'lease'): Probe {
  return JSON.parse(inNamespace(lab.deviceNs, process.execPath, ['--import', 'tsx', PROBE, mac, flavour, mode]));
}

async function startNetbootServer(t: TestContext, lab: NetbootLab) {
  const dataDir = mkdtempSync(join(tmpdir(), 'cm4prov-netboot-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const tftp = join(dataDir, 'tftp');
  mkdirSync(join(tftp, '1234abcd'), { recursive: true });
  writeFileSync(join(tftp, '1234abcd', 'start4.elf'), 'pretend firmware\n');
  writeFileSync(join(tftp, 'config.txt'), 'initramfs initrd.img followkernel\n');
  writeFileSync(join(tftp, 'cmdline.txt'), 'console=serial0,115200 provisioning_server=http://10.20.50.1:5000\n');
  const server = lab.spawnIn(lab.serverNs, process.execPath, [
    CLI, 'serve', '--host', '0.0.0.0', '--port', '5000', '--data-dir', dataDir,
    '--netboot-interface', 'br0', '--netboot-address', '10.20.50.1/24', '--dhcp-range', '10.20.50.100,10.20.50.150',
    '--public-url', 'http://10.20.50.1:5000',
  ]);
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
  return { admin, dataDir, output: () => output };
}

test('the server runs dnsmasq: a Pi gets the PXE offer, others plain DHCP, TFTP serves the boot files, and boot stages show', async (t) => {
  if (!requireRoot(t)) return;
  const lab = createNetbootLab(t);
  const { admin, dataDir } = await startNetbootServer(t, lab);

  const status = (await admin('GET', '/api/netboot')).body;
  assert.equal(status.enabled, true);
  assert.equal(status.interface, 'br0');
  assert.equal(status.subnet, '10.20.50.0/24');
  assert.match(readFileSync(status.config_file, 'utf8'), /pxe-service=tag:rpi,tag:!cm4prov-emmc-next,0,"Raspberry Pi Boot"/);

  const pi = dhcp(lab, PI_MAC, 'pi', 'lease');
  assert.ok(pi.offer, 'the Pi got an offer');
  assert.ok(pi.offer.options[43]?.includes(RASPBERRY_PI_BOOT), 'option 43 says "Raspberry Pi Boot"');
  assert.equal(pi.offer.siaddr, '10.20.50.1', 'next-server is this server');
  assert.ok(pi.ack, 'and the address was acked');
  const piAddress = pi.ack.yiaddr;
  assert.match(piAddress, /^10\.20\.50\.(1[0-4]\d|150)$/);

  const pc = dhcp(lab, PC_MAC, 'plain', 'discover');
  assert.ok(pc.offer, 'another host gets plain DHCP');
  assert.equal(pc.offer.options[43], undefined, 'but no Raspberry Pi boot offer');

  inNamespace(lab.deviceNs, 'ip', ['addr', 'add', `${piAddress}/24`, 'dev', 'eth0']);
  const tftp = (file: string) => inNamespace(lab.deviceNs, 'curl', ['-sS', '--max-time', '10', `tftp://10.20.50.1/${file}`]);
  assert.equal(tftp('1234abcd/start4.elf'), 'pretend firmware\n');
  assert.equal(tftp('config.txt'), 'initramfs initrd.img followkernel\n');
  assert.match(tftp('cmdline.txt'), /provisioning_server=http:\/\/10\.20\.50\.1:5000/);
  assert.throws(() => tftp('pieeprom.sig'), 'a missing file is a TFTP error');

  const device = await waitFor('the boot stage', async () => {
    const found = (await admin('GET', `/api/devices/${PI_MAC}`)).body;
    return found.netboot?.stage === 'asked for pieeprom.sig: not found' ? found : undefined;
  });
  assert.equal(device.registered, false, 'netbooted, no client yet');
  assert.equal(device.ip, piAddress);
  const events = (await admin('GET', `/api/devices/${PI_MAC}/boot-events`)).body.events.map((e: any) => e.text).reverse();
  assert.deepEqual(events.slice(-5), [
    `got ${piAddress} (DHCP ack)`,
    'loaded 1234abcd/start4.elf',
    'loaded config.txt',
    'loaded cmdline.txt',
    'asked for pieeprom.sig: not found',
  ]);
  assert.equal((await admin('GET', `/api/devices/${PC_MAC}`)).status, 404, 'a PC is not a device');
  const leases = (await admin('GET', '/api/netboot/leases')).body.leases;
  assert.ok(leases.some((lease: any) => lease.mac === PI_MAC && lease.ip === piAddress), 'the lease list shows the Pi');
  assert.ok(dataDir);
});

test('"boot from eMMC next" withholds the PXE offer from that MAC at once, and "netboot again" restores it', async (t) => {
  if (!requireRoot(t)) return;
  const lab = createNetbootLab(t);
  const { admin } = await startNetbootServer(t, lab);
  assert.ok(dhcp(lab, PI_MAC, 'pi', 'discover').offer?.options[43], 'offered before');

  const off = await admin('POST', `/api/devices/${PI_MAC}/netboot`, { enabled: false });
  assert.equal(off.status, 200);
  assert.equal(off.body.netboot.enabled, false);
  const withheld = dhcp(lab, PI_MAC, 'pi', 'discover');
  assert.ok(withheld.offer, 'it may still get an address (its eMMC system may want one)');
  // dnsmasq still answers a PXE client with PXE discovery control, but names no boot service:
  // without "Raspberry Pi Boot" the bootloader ignores the offer and falls through to eMMC.
  assert.ok(!(withheld.offer.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'no Raspberry Pi boot offer');

  await admin('POST', `/api/devices/${PI_MAC}/netboot`, { enabled: true });
  assert.ok(dhcp(lab, PI_MAC, 'pi', 'discover').offer?.options[43]?.includes(RASPBERRY_PI_BOOT), 'offered again');
});

test('a killed dnsmasq is restarted by the server', async (t) => {
  if (!requireRoot(t)) return;
  const lab = createNetbootLab(t);
  const { admin } = await startNetbootServer(t, lab);
  const before = (await admin('GET', '/api/netboot')).body.dnsmasq;
  process.kill(before.pid, 'SIGKILL');
  const after = await waitFor('dnsmasq to be back', async () => {
    const now = (await admin('GET', '/api/netboot')).body.dnsmasq;
    return now.state === 'running' && now.pid !== before.pid ? now : undefined;
  }, 15_000);
  assert.equal(after.restarts, before.restarts + 1);
  assert.equal(after.last_exit, 'signal SIGKILL');
  assert.ok(dhcp(lab, PI_MAC, 'pi', 'discover').offer?.options[43], 'and it answers again');
});
