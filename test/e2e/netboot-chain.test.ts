import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EXT4_OFFSET, ext4File, fatFile, FAT_OFFSET } from '../device-files/helpers.js';
import { buildInitramfs, isFile, isSymlink, readInitrd } from '../initramfs/initramfs.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { createNetbootLab, ip, requireRoot } from '../helpers/netns.js';
import { QEMU, startVm } from '../helpers/qemu.js';
import { tempDir } from '../helpers/server.js';
import { dhcp, RASPBERRY_PI_BOOT, startNetbootServer } from '../netboot/lab-server.js';
import { firmwareCmdline, INSTALLED_OS_PRETTY_NAME, installOs, secondBootInitrd, SECOND_BOOT_RDINIT } from './installed-os.js';
import { makeLineImage } from './line-image.js';

const VM_MAC = 'dc:a6:32:00:00:42';
const EMMC_BYTES = 64 * 1024 * 1024;
const HOSTNAME = 'qemu-line-42';
const HOOK = '/cm4prov-firstboot.sh';
/** What a confirming deploy appends to cmdline.txt's first line (src/first-boot/hook/cmdline-addition.tmpl). */
const FIRST_BOOT_WORDS = 'systemd.run=/boot/firmware/cm4prov-firstboot.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target';

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
 * with no operator call, and the client writes the per-device files of the rule's profile and
 * the first-boot hook (rules confirm first boots by default) into the image's partitions; the VM
 * powers off. With netboot off, its next boot is its disk: the tiny OS in the image
 * (./installed-os.ts) runs the hook as systemd would, and the hook calls back: confirmed. Then
 * the operator backs its virtio disk up (netboot on again for that, and off after it).
 */
test('netboot chain: our DHCP → kernel + initrd in QEMU → client → zero-touch deploy by a rule with per-device files and first-boot hook → boot from its disk → first boot confirmed → backup of its disk → boot from eMMC next', { timeout: 900_000 }, async (t) => {
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
  const dir = tempDir(t);
  const image = installOs(makeLineImage(dir), dir);
  const imageCmdline = fatFile(image.path, '/cmdline.txt');
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
  // finish=poweroff: the test plays the power cycle after it. The next boot is the rule's default
  // (after=emmc): the device's eMMC, where the image's own OS confirms the first boot.
  const rule = await admin('POST', '/api/rules', { name: 'qemu-line', mac: 'dc:a6:32:00:00', action: 'deploy', profile: 'line', finish: 'poweroff', limit: 1 });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  assert.equal(rule.body.confirm_boot, true, "a rule's deploys ask for first-boot confirmation unless it says otherwise");

  const disk = join(tempDir(t, 'cm4prov-vm-'), 'emmc.img');
  await makeFakeEmmc(disk, EMMC_BYTES);
  const bootVm = (initrdPath: string, cmdline: string) =>
    startVm(t, {
      kernel: build.kernel,
      initrd: initrdPath,
      disk,
      cmdline,
      netdev: 'tap,id=net0,ifname=tap0,script=no,downscript=no',
      mac: VM_MAC,
      namespace: lab.serverNs,
    });
  const CLIENT_CMDLINE = 'provisioning_server=http://10.20.50.1:5000 target_device=/dev/vda poll_interval=1 reboot_after=never';
  const started = Date.now();
  const vm = bootVm(build.initrd, CLIENT_CMDLINE);

  const device = await vm.within('the VM to register', async () => {
    const found = await admin('GET', `/api/devices/${VM_MAC}`);
    return found.status === 200 && found.body.registered ? found.body : undefined;
  });
  const registeredAfter = (Date.now() - started) / 1000;
  assert.match(device.ip, /^10\.20\.50\.(1[0-4]\d|150)$/, `its address came from our DHCP range${vm.log()}`);
  assert.equal(device.storage_bytes, EMMC_BYTES);
  const events = (await admin('GET', `/api/devices/${VM_MAC}/boot-events`)).body.events.map((e: any) => e.text);
  assert.ok(events.includes(`got ${device.ip} (DHCP ack)`), `the boot stage shows our dnsmasq's answer: ${events.join('; ')}`);
  // What `uname -r` says in the VM, in the kernel's own words on its console.
  const kernelRelease = /Linux version (\S+)/.exec(vm.console())?.[1];
  assert.ok(kernelRelease, `the kernel printed its version${vm.log()}`);

  // No operator call: the rule orders the deploy when the device registers.
  const deployed = await vm.within("the rule's deploy to end", async () => {
    const [job] = (await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs;
    return job && ended(job) ? (await admin('GET', `/api/jobs/${job.id}`)).body : undefined;
  });
  assert.equal(deployed.state, 'ok', `${deployed.error}${vm.log()}`);
  assert.equal(deployed.kind, 'deploy');
  assert.deepEqual(deployed.ordered_by, { kind: 'rule', id: rule.body.id, name: 'qemu-line' }, 'the rule ordered it');
  assert.equal(deployed.sha256, image.sha256, 'the image the device verified is the default image');
  assert.match(deployed.verification.summary, /mapped ranges verified; 4 per-device files written and read back; 1 appended to and read back by the device$/);
  assert.deepEqual(
    [deployed.first_boot.state, deployed.first_boot.hook, deployed.first_boot.summary],
    ['awaiting', 'cmdline', 'awaiting first boot'],
    'the deploy ended ok and awaits the first boot of what it wrote',
  );
  const userData = `#cloud-config\nhostname: ${HOSTNAME}\n# mac ${VM_MAC}, job ${deployed.id}\n`;
  const metaData = `instance-id: cm4-${VM_MAC.replaceAll(':', '')}-${deployed.id}\nlocal-hostname: ${HOSTNAME}\n`;
  // The hook's text holds the one-time token, which only the disk has: its hash is checked there.
  const hook = deployed.files.find((file: any) => file.path === HOOK);
  const bootCmdline = `${imageCmdline.replace(/\n$/, '')} ${FIRST_BOOT_WORDS}\n`;
  assert.deepEqual(
    deployed.files.map((file: any) => [file.partition, file.path, file.append, file.sha256, file.read_back_sha256]),
    [
      [1, '/user-data', null, sha256(userData), sha256(userData)],
      [1, '/meta-data', null, sha256(metaData), sha256(metaData)],
      [2, '/etc/hostname', null, sha256(`${HOSTNAME}\n`), sha256(`${HOSTNAME}\n`)],
      [1, HOOK, null, hook?.sha256, hook?.sha256],
      // Appended: the words, and the whole file the device read back.
      [1, '/cmdline.txt', 'first_line', sha256(FIRST_BOOT_WORDS), sha256(bootCmdline)],
    ],
    'the device read back each file as rendered, the first-boot hook last',
  );
  assert.equal((await admin('GET', `/api/rules/${rule.body.id}`)).body.devices, 1, 'the rule counts the device against its limit');
  await vm.exited;
  assert.match(vm.console(), /powering off, as its order says/, `the VM powered off after the deploy${vm.log()}`);
  // The arm64 cm4prov-io that build.sh compiled moved the bytes: written, read back and hashed in the VM.
  assert.match(vm.console(), /data path: cm4prov-io \d+/, `the client used the initrd's cm4prov-io${vm.log()}`);
  const deployedAfter = (Date.now() - started) / 1000;

  // On the host, with the real tools: the image is on the disk, and the files in its partitions.
  const deployedDisk = readFileSync(disk);
  const written = readFileSync(image.path);
  assert.ok(deployedDisk.subarray(0, FAT_OFFSET).equals(written.subarray(0, FAT_OFFSET)), 'the MBR and the gap before partition 1 are the image');
  assert.ok(deployedDisk.subarray(image.untouchedFrom, image.bytes).equals(written.subarray(image.untouchedFrom)), 'partition 3 and the stray bytes are the image');
  assert.equal(fatFile(disk, '/user-data'), userData, 'mtype reads the rendered user-data on partition 1');
  assert.equal(fatFile(disk, '/meta-data'), metaData);
  assert.equal(fatFile(disk, '/cmdline.txt'), bootCmdline, "cmdline.txt is the image's own, its first line ending in the first-boot words");
  const hookScript = fatFile(disk, HOOK);
  assert.equal(sha256(hookScript), hook.sha256, 'the first-boot hook on partition 1 is the one the device reported');
  assert.match(hookScript, /^URL='http:\/\/10\.20\.50\.1:5000\/api\/first-boot'$/m, 'it calls back where the device reached the server (--public-url)');
  assert.match(hookScript, new RegExp(`^KNOWN_MAC='${VM_MAC}'$`, 'm'));
  assert.match(hookScript, /^TOKEN='[^']{16,}'$/m, 'it carries its one-time token');
  assert.equal(ext4File(disk, '/etc/hostname'), `${HOSTNAME}\n`, 'debugfs reads the hostname on partition 2');

  const deployedDevice = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(deployedDevice.netboot.enabled, false, 'its deploy done, the device boots from eMMC next');
  const withheld = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(!(withheld?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'a new DHCP request from its MAC gets no PXE offer');

  // So its next power-on boots the eMMC. The test plays the Pi firmware: the kernel command line
  // is the first line of the disk's cmdline.txt; the initrd, ours plus the loader of the image's
  // tiny OS (./installed-os.ts), which runs the hook as systemd would: systemd.run first, then,
  // on the boot after, the unit stage 1 installed. Then that OS powers the VM off.
  const bootStarted = Date.now();
  // (quiet, as Raspberry Pi OS has it: no kernel info lines in the middle of the OS's own.)
  const installedOs = bootVm(secondBootInitrd(build.initrd, dir), `${firmwareCmdline(fatFile(disk, '/cmdline.txt'))} quiet rdinit=${SECOND_BOOT_RDINIT}`);
  const confirmed = await installedOs.within('the first boot to call back', async () => {
    const job = (await admin('GET', `/api/jobs/${deployed.id}`)).body;
    return job.first_boot.state === 'awaiting' ? undefined : job;
  });
  assert.equal(confirmed.first_boot.state, 'confirmed', `${confirmed.first_boot.summary}${installedOs.log()}`);
  assert.equal(confirmed.state, 'ok');
  assert.deepEqual(
    [confirmed.first_boot.os_release, confirmed.first_boot.kernel, confirmed.first_boot.summary],
    [INSTALLED_OS_PRETTY_NAME, kernelRelease, `confirmed: booted ${INSTALLED_OS_PRETTY_NAME} (${kernelRelease})`],
    "the hook reported the image's OS and the kernel the VM runs",
  );
  await installedOs.exited;
  const confirmedAfter = (Date.now() - bootStarted) / 1000;
  // (The serial console ends lines with CR LF.)
  const firstBoot = installedOs.console().replaceAll('\r\n', '\n');
  const saw = (line: string, what: string) => assert.ok(firstBoot.includes(`\n${line}\n`), `${what}: "${line}"${installedOs.log()}`);
  saw(`installed-os: booted kernel ${kernelRelease}: "${INSTALLED_OS_PRETTY_NAME}"`, "the disk's own init ran");
  // Stage 1, from the kernel command line, and what it left on the boot partition.
  saw('installed-os: kernel-command-line.service: /boot/firmware/cm4prov-firstboot.sh', 'systemd.run started the hook');
  saw('cm4prov-firstboot: installed cm4prov-firstboot.service', 'stage 1 installed the unit');
  saw('cm4prov-firstboot: removed the first-boot words from /boot/firmware/cmdline.txt', 'stage 1 edited cmdline.txt');
  saw('installed-os: kernel-command-line.service: exited 0', 'stage 1 succeeded');
  saw('installed-os: boot partition: /cm4prov-firstboot.sh deleted', 'stage 1 removed its boot-partition copy');
  saw('installed-os: boot partition: /cmdline.txt written', 'stage 1 changed cmdline.txt');
  // Stage 2, from the unit, once the network is up: from the VM's own MAC and the address our dnsmasq gave it.
  const online = new RegExp(`\\ninstalled-os: network online: eth0 ${VM_MAC} has (10\\.20\\.50\\.\\d+)/24\\n`).exec(firstBoot);
  assert.ok(online, `the installed OS got an address on the provisioning LAN${installedOs.log()}`);
  const bootEvents = (await admin('GET', `/api/devices/${VM_MAC}/boot-events?limit=200`)).body.events;
  assert.ok(
    bootEvents.some((event: any) => Date.parse(event.at) >= bootStarted - 1000 && event.text === `got ${online[1]} (DHCP ack)`),
    `our dnsmasq gave the booted VM (its MAC) that address: ${JSON.stringify(bootEvents)}`,
  );
  saw('installed-os: cm4prov-firstboot.service: /bin/sh /usr/local/lib/cm4prov/firstboot.sh report', 'the unit started stage 2');
  const calling = /\ncm4prov-firstboot: calling back: mac (\S+), serial [^,]*, os '(.*)', kernel (\S+) \(with curl\)\n/.exec(firstBoot);
  assert.deepEqual(calling?.slice(1), [VM_MAC, INSTALLED_OS_PRETTY_NAME, kernelRelease], `stage 2 read the VM's MAC, the OS and the kernel${installedOs.log()}`);
  saw('cm4prov-firstboot: the server took the call back (HTTP 200)', 'the server confirmed');
  saw('installed-os: systemctl disable cm4prov-firstboot.service', 'stage 2 disabled its unit');
  saw('cm4prov-firstboot: removed cm4prov-firstboot.service and /usr/local/lib/cm4prov/firstboot.sh', 'stage 2 removed itself');
  saw('installed-os: cm4prov-firstboot.service: exited 0', 'stage 2 succeeded');
  const confirmedDevice = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(confirmedDevice.netboot.enabled, false, 'a confirmed first boot leaves netboot off');
  assert.equal(confirmedDevice.rule_hold, null);

  // On the host again: the boot partition is the image's own again; nothing else changed.
  const bootedDisk = readFileSync(disk);
  assert.equal(fatFile(disk, '/cmdline.txt'), imageCmdline, "cmdline.txt is the image's own again: the first-boot words are gone");
  const bootFiles = execFileSync('mdir', ['-b', '-i', `${disk}@@${FAT_OFFSET}`, '::/']).toString().split('\n').filter(Boolean).sort();
  assert.deepEqual(bootFiles, ['::/cmdline.txt', '::/meta-data', '::/user-data'], 'the hook is gone from partition 1');
  assert.equal(fatFile(disk, '/user-data'), userData, "the profile's files stay");
  assert.ok(bootedDisk.subarray(0, FAT_OFFSET).equals(deployedDisk.subarray(0, FAT_OFFSET)), 'the MBR is as deployed');
  assert.ok(bootedDisk.subarray(EXT4_OFFSET).equals(deployedDisk.subarray(EXT4_OFFSET)), 'partition 2 onwards is as deployed: only the boot partition changed');

  // The operator's backup: ordering it switches netboot on, so the device's next power-on netboots
  // into the client; finish=poweroff makes /init power the VM off, so the disk is read at rest.
  const backup = await admin('POST', `/api/devices/${VM_MAC}/backup`, { finish: 'poweroff' });
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  const offered = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok((offered?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), `with work queued, its MAC gets the PXE offer again: ${JSON.stringify(offered)}`);
  const backupStarted = Date.now();
  const client = bootVm(build.initrd, CLIENT_CMDLINE);
  const backedUp = await client.within('the backup to end', async () => {
    const job = (await admin('GET', `/api/jobs/${backup.body.id}`)).body;
    return ended(job) ? job : undefined;
  });
  assert.equal(backedUp.state, 'ok', `${backedUp.error}${client.log()}`);
  await client.exited;
  assert.match(client.console(), /powering off, as its order says/, `the VM powered off after the backup${client.log()}`);
  const jobs = (await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs;
  assert.deepEqual(jobs.map((job: any) => [job.kind, job.ordered_by.kind]).sort(), [['backup', 'operator'], ['deploy', 'rule']], "the rule acted once: the client's later polls and the confirmation ordered nothing more");
  assert.equal((await admin('GET', `/api/jobs/${deployed.id}`)).body.first_boot.state, 'confirmed', 'the backup leaves the confirmation as it was');

  const stored = (await admin('GET', `/api/backups/${backedUp.backup_id}`)).body;
  assert.equal(stored.sha256, await sha256OfFile(disk), 'the backup is the whole disk, byte for byte');
  assert.equal(stored.size, EMMC_BYTES);
  assert.ok(readFileSync(disk).equals(bootedDisk), 'the backup read the disk and changed nothing');

  const after = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(after.netboot.enabled, false, 'its work done, the device boots from eMMC next');
  const offer = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(!(offer?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'a new DHCP request from its MAC gets no PXE offer');
  t.diagnostic(
    `registered ${registeredAfter.toFixed(1)} s after QEMU started; deploy ended and VM off at ${deployedAfter.toFixed(1)} s; ` +
      `boot from its disk to confirmed and off ${confirmedAfter.toFixed(1)} s; backup boot ${((Date.now() - backupStarted) / 1000).toFixed(1)} s; ` +
      `whole chain ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});
