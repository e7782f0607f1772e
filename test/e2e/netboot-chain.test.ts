import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ext4File, fatFile, FAT_OFFSET } from '../device-files/helpers.js';
import { buildInitramfs, isFile, isSymlink, readInitrd } from '../initramfs/initramfs.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { createNetbootLab, ip, requireRoot } from '../helpers/netns.js';
import { QEMU, startVm } from '../helpers/qemu.js';
import { tempDir } from '../helpers/server.js';
import { dhcp, RASPBERRY_PI_BOOT, startNetbootServer } from '../netboot/lab-server.js';
import { makeLineImage } from './line-image.js';

const VM_MAC = 'dc:a6:32:00:00:42';
const EMMC_BYTES = 64 * 1024 * 1024;
const HOSTNAME = 'qemu-line-42';

/** A cloud-init NoCloud seed on the FAT boot partition and a hostname on the ext4 root. */
const PROFILE = {
  name: 'line',
  files: [
    { partition: 1, fs: 'vfat', path: '/user-data', template: '#cloud-config\nhostname: {{table.hostname}}\n# mac {{mac}}, job {{job_id}}\n' },
    { partition: 1, fs: 'vfat', path: '/meta-data', template: 'instance-id: cm4-{{mac_plain}}-{{job_id}}\nlocal-hostname: {{table.hostname}}\n' },
    { partition: 2, fs: 'ext4', path: '/etc/hostname', mode: '0644', template: '{{table.hostname}}\n' },
  ],
};

const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');
const ended = (job: { state: string }) => ['ok', 'failed', 'cancelled'].includes(job.state);

/**
 * The whole chain with no hardware: our server runs dnsmasq in a namespace whose bridge plays the
 * provisioning LAN; an arm64 VM on a tap in that bridge boots Debian's kernel with our initrd,
 * gets its address from our dnsmasq and runs the client. A rule set up beforehand deploys to it
 * with no operator call, and the client writes the per-device files of the rule's profile into
 * the image's partitions; then the operator backs its virtio disk up and it powers off.
 */
test('netboot chain: our DHCP → kernel + initrd in QEMU → client → zero-touch deploy by a rule with per-device files → backup of its disk → boot from eMMC next', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  assert.equal(spawnSync(QEMU, ['--version']).error, undefined, `${QEMU} is installed (Debian package qemu-system-arm)`);
  const build = await buildInitramfs(t);
  const initrd = readInitrd(build.initrd);
  assert.ok(initrd.has('bin/mtools') && isFile(initrd.get('bin/mtools')!), 'the initrd ships mtools');
  for (const tool of ['mcopy', 'mtype', 'mdir', 'mmd']) {
    const link = initrd.get(`bin/${tool}`);
    assert.ok(link && isSymlink(link) && link.data.toString() === 'mtools', `bin/${tool} → mtools`);
  }
  assert.ok(initrd.has('bin/debugfs') && isFile(initrd.get('bin/debugfs')!), 'the initrd ships debugfs');

  const lab = createNetbootLab(t);
  ip('-n', lab.serverNs, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
  ip('-n', lab.serverNs, 'link', 'set', 'tap0', 'master', 'br0', 'up');
  const { admin, base, token } = await startNetbootServer(t, lab);

  // The line is set up before the device exists: image (the default), device table, profile, rule.
  const image = makeLineImage(tempDir(t));
  const upload = await fetch(`${base}/api/images?name=raspios-line&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: readFileSync(image.path),
  });
  assert.equal(upload.status, 201, await upload.text());
  const table = await admin('POST', '/api/device-table', { csv: `mac,hostname\n${VM_MAC.toUpperCase().replaceAll(':', '-')},${HOSTNAME}\n` });
  assert.equal(table.status, 200, JSON.stringify(table.body));
  const profile = await admin('POST', '/api/profiles', PROFILE);
  assert.equal(profile.status, 201, JSON.stringify(profile.body));
  // after=netboot: the device stays on the provisioning LAN for the operator's backup below.
  const rule = await admin('POST', '/api/rules', { name: 'qemu-line', mac: 'dc:a6:32:00:00', action: 'deploy', profile: 'line', after: 'netboot', limit: 1 });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));

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

  // No operator call: the rule orders the deploy when the device registers.
  const deployed = await vm.within("the rule's deploy to end", async () => {
    const [job] = (await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs;
    return job && ended(job) ? (await admin('GET', `/api/jobs/${job.id}`)).body : undefined;
  });
  assert.equal(deployed.state, 'ok', `${deployed.error}${vm.log()}`);
  assert.equal(deployed.kind, 'deploy');
  assert.deepEqual(deployed.ordered_by, { kind: 'rule', id: rule.body.id, name: 'qemu-line' }, 'the rule ordered it');
  assert.equal(deployed.sha256, image.sha256, 'the image the device verified is the default image');
  assert.match(deployed.verification.summary, /mapped ranges verified; 3 per-device files written and read back$/);
  const userData = `#cloud-config\nhostname: ${HOSTNAME}\n# mac ${VM_MAC}, job ${deployed.id}\n`;
  const metaData = `instance-id: cm4-${VM_MAC.replaceAll(':', '')}-${deployed.id}\nlocal-hostname: ${HOSTNAME}\n`;
  assert.deepEqual(
    deployed.files.map((file: any) => [file.partition, file.path, file.sha256, file.read_back_sha256]),
    [
      [1, '/user-data', sha256(userData), sha256(userData)],
      [1, '/meta-data', sha256(metaData), sha256(metaData)],
      [2, '/etc/hostname', sha256(`${HOSTNAME}\n`), sha256(`${HOSTNAME}\n`)],
    ],
    'the device read back each file as rendered',
  );
  assert.equal((await admin('GET', `/api/rules/${rule.body.id}`)).body.devices, 1, 'the rule counts the device against its limit');

  // The operator's backup; finish=poweroff makes /init power the VM off, so the disk is read at rest.
  const backup = await admin('POST', `/api/devices/${VM_MAC}/backup`, { finish: 'poweroff' });
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  const backedUp = await vm.within('the backup to end', async () => {
    const job = (await admin('GET', `/api/jobs/${backup.body.id}`)).body;
    return ended(job) ? job : undefined;
  });
  assert.equal(backedUp.state, 'ok', `${backedUp.error}${vm.log()}`);
  await vm.exited;
  assert.match(vm.console(), /powering off, as its order says/, `the VM powered off after the backup${vm.log()}`);
  const jobs = (await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs;
  assert.deepEqual(jobs.map((job: any) => [job.kind, job.ordered_by.kind]).sort(), [['backup', 'operator'], ['deploy', 'rule']], "the rule acted once: the client's later polls ordered nothing more");

  // On the host, with the real tools: the image is on the disk, and the files in its partitions.
  const onDisk = readFileSync(disk);
  const written = readFileSync(image.path);
  assert.ok(onDisk.subarray(0, FAT_OFFSET).equals(written.subarray(0, FAT_OFFSET)), 'the MBR and the gap before partition 1 are the image');
  assert.ok(onDisk.subarray(image.untouchedFrom, image.bytes).equals(written.subarray(image.untouchedFrom)), 'partition 3 and the stray bytes are the image');
  assert.equal(fatFile(disk, '/user-data'), userData, 'mtype reads the rendered user-data on partition 1');
  assert.equal(fatFile(disk, '/meta-data'), metaData);
  assert.equal(fatFile(disk, '/cmdline.txt'), fatFile(image.path, '/cmdline.txt'), "the image's own boot files are untouched");
  assert.equal(ext4File(disk, '/etc/hostname'), `${HOSTNAME}\n`, 'debugfs reads the hostname on partition 2');

  const stored = (await admin('GET', `/api/backups/${backedUp.backup_id}`)).body;
  assert.equal(stored.sha256, await sha256OfFile(disk), 'the backup is the whole disk, byte for byte');
  assert.equal(stored.size, EMMC_BYTES);

  const after = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(after.netboot.enabled, false, 'its work done, the device boots from eMMC next');
  const offer = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(!(offer?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'a new DHCP request from its MAC gets no PXE offer');
  t.diagnostic(`registered ${registeredAfter.toFixed(1)} s after QEMU started; whole chain ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
