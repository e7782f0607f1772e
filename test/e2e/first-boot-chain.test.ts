import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fatFile } from '../device-files/helpers.js';
import { buildInitramfs } from '../initramfs/initramfs.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { createNetbootLab, ip, requireRoot } from '../helpers/netns.js';
import { QEMU, startVm } from '../helpers/qemu.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { dhcp, RASPBERRY_PI_BOOT, startNetbootServer } from '../netboot/lab-server.js';
import { makeLineImage } from './line-image.js';

const VM_MAC = 'dc:a6:32:00:00:43';
const EMMC_BYTES = 64 * 1024 * 1024;
const CONFIRM_TIMEOUT_S = 30;

const ended = (job: { state: string }) => ['ok', 'failed', 'cancelled'].includes(job.state);
const pxeOffered = (offer: { options: Record<string, string> } | null) => (offer?.options[43] ?? '').includes(RASPBERRY_PI_BOOT);

/**
 * The other half of netboot-chain.test.ts's first boot: a deploy that asks for first-boot
 * confirmation, to a device whose image never runs the hook (nothing in it boots: it is a plain
 * line image, and the VM powers off after the deploy and is never started again). The rule's
 * deploy ends ok and netboot is switched off; when the confirmation time runs out the job is
 * not confirmed, the rule holds the device (no retries), and its netboot is back on: a DHCP
 * discover from its MAC gets the Raspberry Pi boot offer again.
 */
test('first boot never confirmed: a rule deploys in QEMU with confirm_boot → VM powers off and never boots its disk → not confirmed after the timeout → device held, netboot on again', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  assert.equal(spawnSync(QEMU, ['--version']).error, undefined, `${QEMU} is installed (Debian package qemu-system-arm)`);
  const build = await buildInitramfs(t);

  const lab = createNetbootLab(t);
  ip('-n', lab.serverNs, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
  ip('-n', lab.serverNs, 'link', 'set', 'tap0', 'master', 'br0', 'up');
  const { admin, base, token } = await startNetbootServer(t, lab);

  const image = makeLineImage(tempDir(t));
  const upload = await fetch(`${base}/api/images?name=raspios-line&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: readFileSync(image.path),
  });
  assert.equal(upload.status, 201, await upload.text());
  // The default next boot (after=emmc): the device is off the provisioning LAN once the deploy ends ok.
  const rule = await admin('POST', '/api/rules', {
    name: 'qemu-confirm',
    mac: VM_MAC,
    action: 'deploy',
    confirm_timeout: CONFIRM_TIMEOUT_S,
    finish: 'poweroff',
    retries: 0,
    limit: 1,
  });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  assert.deepEqual([rule.body.confirm_boot, rule.body.confirm_timeout, rule.body.finish], [true, CONFIRM_TIMEOUT_S, 'poweroff']);

  const disk = join(tempDir(t, 'cm4prov-vm-'), 'emmc.img');
  await makeFakeEmmc(disk, EMMC_BYTES);
  const started = Date.now();
  const vm = startVm(t, {
    kernel: build.kernel,
    initrd: build.initrd,
    disk,
    cmdline: 'provisioning_server=http://10.20.50.1:5000 target_device=/dev/vda poll_interval=1',
    netdev: 'tap,id=net0,ifname=tap0,script=no,downscript=no',
    mac: VM_MAC,
    namespace: lab.serverNs,
  });

  const deployed = await vm.within("the rule's deploy to end", async () => {
    const [job] = (await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs;
    return job && ended(job) ? (await admin('GET', `/api/jobs/${job.id}`)).body : undefined;
  });
  assert.equal(deployed.state, 'ok', `${deployed.error}${vm.log()}`);
  assert.equal(deployed.ordered_by.kind, 'rule');
  assert.deepEqual([deployed.first_boot.state, deployed.first_boot.summary], ['awaiting', 'awaiting first boot'], 'ok · awaiting first boot');
  assert.match(deployed.verification.summary, /1 per-device file written and read back; 1 appended to and read back by the device$/, 'the deploy wrote the first-boot hook');
  assert.equal(deployed.first_boot.timeout_seconds, CONFIRM_TIMEOUT_S);
  assert.ok(deployed.first_boot.deadline_at, 'the deadline is set when the deploy ends ok');
  await vm.exited;
  assert.match(vm.console(), /powering off, as its order says/, `the VM powered off after the deploy${vm.log()}`);
  const deployedAfter = (Date.now() - started) / 1000;
  // What the hook would have run from: it is on the disk, and nothing ever boots it.
  assert.match(fatFile(disk, '/cmdline.txt'), /systemd\.run=\/boot\/firmware\/cm4prov-firstboot\.sh /);
  assert.match(fatFile(disk, '/cm4prov-firstboot.sh'), /^TOKEN='/m);

  // Awaiting its first boot, the device is off the provisioning LAN: it would boot its eMMC.
  const job = async () => (await admin('GET', `/api/jobs/${deployed.id}`)).body;
  assert.equal((await job()).first_boot.state, 'awaiting');
  assert.equal((await admin('GET', `/api/devices/${VM_MAC}`)).body.netboot.enabled, false, 'a deploy ended ok switches netboot off (after=emmc)');
  const withheld = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(withheld, 'our dnsmasq still answers its MAC');
  assert.ok(!pxeOffered(withheld), 'a DHCP discover from its MAC gets no PXE offer while the first boot is awaited');
  assert.equal((await job()).first_boot.state, 'awaiting', 'the offer above was withheld while the first boot was still awaited');

  // Nothing calls back: the server's watchdog marks the job not confirmed once the deadline has passed.
  const notConfirmed = await waitFor('the first boot to be not confirmed', async () => {
    const current = await job();
    return current.first_boot.state === 'awaiting' ? undefined : current;
  }, 300_000, 1000);
  assert.equal(notConfirmed.first_boot.state, 'not_confirmed');
  assert.equal(notConfirmed.first_boot.summary, `not confirmed: no first-boot call within ${CONFIRM_TIMEOUT_S} s`);
  assert.equal(notConfirmed.state, 'ok', 'the deploy itself stays ok');
  const device = (await admin('GET', `/api/devices/${VM_MAC}`)).body;
  assert.equal(device.netboot.enabled, true, 'its netboot is switched back on');
  assert.equal(device.rule_hold?.rule, 'qemu-confirm', `the rule holds the device (retries 0): ${JSON.stringify(device.rule_hold)}`);
  assert.match(device.rule_hold.reason, new RegExp(`^its deploy \\(job ${deployed.id}\\) was not confirmed: no first-boot call within ${CONFIRM_TIMEOUT_S} s$`));
  assert.equal((await admin('GET', `/api/jobs?device=${VM_MAC}`)).body.jobs.length, 1, 'no retry was ordered');
  const offer = dhcp(lab, VM_MAC, 'pi', 'discover').offer;
  assert.ok(pxeOffered(offer), `a new DHCP discover from its MAC gets the Raspberry Pi boot offer again: ${JSON.stringify(offer)}`);
  t.diagnostic(`deploy ended and VM off ${deployedAfter.toFixed(1)} s after QEMU started; not confirmed and netboot on ${((Date.now() - started) / 1000).toFixed(1)} s after`);
});
