import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildInitramfs } from '../initramfs/initramfs.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { createNetbootLab, ip, requireRoot } from '../helpers/netns.js';
import { QEMU, startVm } from '../helpers/qemu.js';
import { tempDir } from '../helpers/server.js';
import { dhcp, RASPBERRY_PI_BOOT, startNetbootServer } from '../netboot/lab-server.js';

const VM_MAC = 'dc:a6:32:00:00:42';
const EMMC_BYTES = 64 * 1024 * 1024;

/**
 * The whole chain with no hardware: our server runs dnsmasq in a namespace whose bridge plays the
 * provisioning LAN; an arm64 VM on a tap in that bridge boots Debian's kernel with our initrd,
 * gets its address from our dnsmasq, runs the client, and deploys and backs up its virtio disk.
 */
test('netboot chain: our DHCP → kernel + initrd in QEMU → client → deploy and backup of its disk → boot from eMMC next', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  assert.equal(spawnSync(QEMU, ['--version']).error, undefined, `${QEMU} is installed (Debian package qemu-system-arm)`);
  const build = await buildInitramfs(t);
  const lab = createNetbootLab(t);
  ip('-n', lab.serverNs, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
  ip('-n', lab.serverNs, 'link', 'set', 'tap0', 'master', 'br0', 'up');
  const { admin, base, token } = await startNetbootServer(t, lab);

  const imageFile = join(tempDir(t), 'golden.img');
  const imageSha = writeImageFile(imageFile, 6 * 1024 * 1024 + 321);
  const upload = await fetch(`${base}/api/images?name=golden-line-3&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: readFileSync(imageFile),
  });
  assert.equal(upload.status, 201);

  const disk = join(tempDir(t, 'cm4prov-vm-'), 'emmc.img');
  await makeFakeEmmc(disk, EMMC_BYTES);
  const started = Date.now();
  const vm = startVm(t, {
    kernel: build.kernel,
    initrd: build.initrd,
    disk,
    cmdline: 'provisioning_server=http://10.20.50.1:5000 target_device=/dev/vda poll_interval=1 reboot_after=never',
    netdev: 'tap,id=net0,ifname=tap0,script=no,downscript=no',
    mac: VM_MAC,
    namespace: lab.serverNs,
  });

  const device = await vm.within('the VM to register', async () => {
    const found = await admin('GET', `/api/devices/${VM_MAC}`);
    return found.status === 200 && found.body.registered ? found.body : undefined;
  });
  const registeredAfter = (Date.now() - started) / 1000;
  assert.match(device.ip, /^10\.20\.50\.(1[0-4]\d|150)$/, `its address came from our DHCP range${vm.log()}`);
  assert.equal(device.storage_bytes, EMMC_BYTES);
  const events = (await admin('GET', `/api/devices/${VM_MAC}/boot-events`)).body.events.map((e: any) => e.text);
  assert.ok(events.includes(`got ${device.ip} (DHCP ack)`), `the boot stage shows our dnsmasq's answer: ${events.join('; ')}`);

  const deploy = await admin('POST', `/api/devices/${VM_MAC}/deploy`, { after: 'netboot' });
  assert.equal(deploy.status, 201, JSON.stringify(deploy.body));
  const deployed = await vm.within('the deploy to end', async () => {
    const job = (await admin('GET', `/api/jobs/${deploy.body.id}`)).body;
    return ['ok', 'failed', 'cancelled'].includes(job.state) ? job : undefined;
  });
  assert.equal(deployed.state, 'ok', `${deployed.error}${vm.log()}`);
  assert.equal(deployed.sha256, imageSha);
  assert.equal(await sha256OfFile(disk, 6 * 1024 * 1024 + 321), imageSha, 'the disk holds the image (hashed on the host)');

  const backup = await admin('POST', `/api/devices/${VM_MAC}/backup`, {});
  const backedUp = await vm.within('the backup to end', async () => {
    const job = (await admin('GET', `/api/jobs/${backup.body.id}`)).body;
    return ['ok', 'failed', 'cancelled'].includes(job.state) ? job : undefined;
  });
  assert.equal(backedUp.state, 'ok', `${backedUp.error}${vm.log()}`);
  const stored = (await admin('GET', `/api/backups/${backedUp.backup_id}`)).body;
  assert.equal(stored.sha256, await sha256OfFile(disk), 'the backup is the whole disk, byte for byte');
  assert.equal(stored.size, EMMC_BYTES);

  const after = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(after.netboot.enabled, false, 'its work done, the device boots from eMMC next');
  const offer = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(!(offer?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'a new DHCP request from its MAC gets no PXE offer');
  t.diagnostic(`registered ${registeredAfter.toFixed(1)} s after QEMU started; whole chain ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
