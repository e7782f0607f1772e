import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { FAT_OFFSET, fatFile, importImage, makePartitionedImage, scratch } from '../device-files/helpers.js';
import { DEVICE, fakeRoot, run, systemctlStub } from './hook-helpers.js';

const MAC = DEVICE.mac;
const exists = (path: string) => access(path).then(() => true, () => false);
const IMAGE_CMDLINE = 'console=serial0,115200 root=PARTUUID=01-02 rootwait';
const RUN_WORDS = 'systemd.run_success_action=reboot systemd.unit=kernel-command-line.target';

async function register(server: TestServer, mac = MAC) {
  const registered = await server.device('POST', '/api/register-device', { mac, serial: DEVICE.serial, storage_bytes: 64 * 1024 * 1024 });
  assert.equal(registered.status, 200, registered.text);
}

/** The real client deploys the queued job onto a fresh fake eMMC; returns its path. */
async function deploy(t: Parameters<typeof scratch>[0], server: TestServer, dir: string, mac = MAC): Promise<string> {
  const emmc = join(dir, `${mac.replaceAll(':', '')}.img`);
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac, env: { WITH_FILE_TOOLS: '1' } });
  assert.equal(await client.exited, 0, client.output());
  return emmc;
}

/** A confirming deploy with the default hook and no profile, written by the real client. */
async function confirmingDeploy(t: Parameters<typeof scratch>[0]) {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await importImage(server, makePartitionedImage(dir), 'os');
  await register(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', confirm_boot: true });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  return { server, ordered, emmc: await deploy(t, server, dir) };
}

test('a confirming deploy with no profile writes the hook itself: the script on the boot partition, its words on the kernel command line; both read back', async (t) => {
  const { server, ordered, emmc } = await confirmingDeploy(t);
  assert.equal(ordered.body.first_boot.hook, 'cmdline');

  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.first_boot.state, 'awaiting');
  assert.deepEqual(job.files.map((file: any) => [file.partition, file.path, file.append]), [[1, '/cm4prov-firstboot.sh', null], [1, '/cmdline.txt', 'first_line']]);
  assert.match(job.verification.summary, /1 per-device file written and read back; 1 appended to and read back by the device$/);
  assert.equal(fatFile(emmc, '/cmdline.txt'), `${IMAGE_CMDLINE} systemd.run=/boot/firmware/cm4prov-firstboot.sh ${RUN_WORDS}\n`);
  const script = fatFile(emmc, '/cm4prov-firstboot.sh');
  // No --public-url: the hook calls back where the device's client reached the server.
  assert.ok(script.includes(`URL='${server.url}/api/first-boot'\n`), 'the callback URL is the one the client used');
  assert.match(script, /^TOKEN='[A-Za-z0-9_-]{43}'$/m);
  assert.ok(script.includes(`KNOWN_MAC='${MAC}'\n`));
});

test('the hook the deploy wrote, run as the installed OS runs it (stage 1 from cmdline.txt, stage 2 as its unit), confirms the job on the real server', async (t) => {
  const { server, ordered, emmc } = await confirmingDeploy(t);

  // The installed OS's boot partition, as it mounts it at /boot/firmware.
  const root = await fakeRoot(t);
  await writeFile(root.path('boot/firmware/cmdline.txt'), fatFile(emmc, '/cmdline.txt'));
  await writeFile(root.path('boot/firmware/cm4prov-firstboot.sh'), fatFile(emmc, '/cm4prov-firstboot.sh'), { mode: 0o755 });
  const systemctl = await systemctlStub(root);
  const env = { CM4PROV_FIRSTBOOT_ROOT: root.dir, CM4PROV_FIRSTBOOT_SYSTEMCTL: systemctl.path, CM4PROV_FIRSTBOOT_DELAY: '1', CM4PROV_FIRSTBOOT_TRIES: '3' };
  const runWord = fatFile(emmc, '/cmdline.txt').split(/\s+/).find((word) => word.startsWith('systemd.run='))!;
  const stage1 = await run('sh', [root.path(runWord.slice('systemd.run='.length))], env);
  assert.equal(stage1.code, 0, stage1.stderr);
  assert.equal(await readFile(root.path('boot/firmware/cmdline.txt'), 'utf8'), `${IMAGE_CMDLINE}\n`, "stage 1 leaves the image's own command line");

  const stage2 = await run('sh', [root.path('usr/local/lib/cm4prov/firstboot.sh'), 'report'], env);
  assert.equal(stage2.code, 0, `${stage2.stdout}${stage2.stderr}`);
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.deepEqual(
    [job.first_boot.state, job.first_boot.os_release, job.first_boot.kernel],
    ['confirmed', DEVICE.os_release, DEVICE.kernel],
    'the call carried what the installed OS says of itself',
  );
  assert.ok((await systemctl.calls()).some((call) => call.startsWith('disable') && call.includes('cm4prov-firstboot.service')), 'stage 2 disabled its unit after the 200');
  assert.equal(await exists(root.path('usr/local/lib/cm4prov/firstboot.sh')), false, 'and removed itself: the token is gone from the disk');
});

test('hook cmdline-boot appends the /boot words; hook none needs a profile file with {{first_boot_token}}; a profile writing the hook script itself is refused', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await importImage(server, makePartitionedImage(dir), 'os');
  await register(server);
  await server.admin('POST', '/api/profiles', { name: 'plain', files: [{ partition: 1, fs: 'vfat', path: '/note.txt', template: 'hello {{mac}}\n' }] });
  await server.admin('POST', '/api/profiles', { name: 'own-hook', files: [{ partition: 1, fs: 'vfat', path: '/CM4PROV-FIRSTBOOT.SH', template: '#!/bin/sh\n' }] });
  await server.admin('POST', '/api/profiles', { name: 'cloud', files: [{ partition: 1, fs: 'vfat', path: '/user-data', template: '#cloud-config\n# {{first_boot_token}} {{first_boot_url}}\n' }] });

  const none = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'plain', confirm_boot: true, first_boot_hook: 'none' });
  assert.equal(none.status, 400);
  assert.equal(none.body.message, "first_boot_hook is none, but profile 'plain' has no file using {{first_boot_token}}: nothing would call back, so the job could never be confirmed; nothing was queued");
  const noProfile = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', confirm_boot: true, first_boot_hook: 'none' });
  assert.equal(noProfile.status, 400);
  assert.match(noProfile.body.message, /^first_boot_hook is none, but no profile has no file/);
  const clash = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'own-hook', confirm_boot: true });
  assert.equal(clash.status, 400);
  assert.match(clash.body.message, /^profile 'own-hook' writes \/cm4prov-firstboot\.sh on partition 1, which the first-boot hook writes/);
  const bad = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', confirm_boot: true, first_boot_hook: 'grub' });
  assert.equal(bad.status, 400);
  assert.equal((await server.admin('GET', `/api/jobs?device=${MAC}`)).body.jobs.length, 0, 'nothing was queued');

  const cloud = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'cloud', confirm_boot: true, first_boot_hook: 'none' });
  assert.equal(cloud.status, 201, JSON.stringify(cloud.body));
  assert.equal((await server.admin('POST', `/api/jobs/${cloud.body.id}/cancel`)).status, 200);

  const legacy = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'plain', confirm_boot: true, first_boot_hook: 'cmdline-boot' });
  assert.equal(legacy.status, 201, JSON.stringify(legacy.body));
  const emmc = await deploy(t, server, dir);
  const job = (await server.admin('GET', `/api/jobs/${legacy.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.deepEqual(job.files.map((file: any) => file.path), ['/note.txt', '/cm4prov-firstboot.sh', '/cmdline.txt'], "the profile's files first, then the hook's");
  assert.equal(fatFile(emmc, '/cmdline.txt'), `${IMAGE_CMDLINE} systemd.run=/boot/cm4prov-firstboot.sh ${RUN_WORDS}\n`);
  assert.equal(job.first_boot.hook, 'cmdline-boot');
});

test('an image without cmdline.txt on partition 1 fails a confirming deploy with a sentence naming the file', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const image = makePartitionedImage(dir);
  execFileSync('mdel', ['-i', `${image}@@${FAT_OFFSET}`, '::/cmdline.txt']);
  await importImage(server, image, 'os');
  await register(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', confirm_boot: true });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { WITH_FILE_TOOLS: '1' } });
  await client.exited;
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /per-device file \/cmdline\.txt is to be appended to, but partition 1 \(vfat\) of the image has no file \/cmdline\.txt/);
  assert.equal(job.first_boot.state, 'not_awaited', 'no first boot is awaited after a failed deploy');
});
