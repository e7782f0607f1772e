import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createNetbootLab, inNamespace, requireRoot } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';
import { dhcp, PC_MAC, PI_MAC, RASPBERRY_PI_BOOT, startNetbootServer } from './lab-server.js';

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
