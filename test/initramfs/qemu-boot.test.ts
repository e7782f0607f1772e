import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { QEMU, startVm, VM_LIMIT_MS } from '../helpers/qemu.js';
import { waitFor } from '../helpers/wait.js';
import { buildInitramfs, type Build } from './initramfs.js';

/** The address the guest sees the server at; QEMU relays it to the test server on loopback. */
const GUEST_SERVER = '10.0.2.100:5000';

/**
 * The guest's NIC reaches nothing but this test's server: user networking with restrict=on, plus
 * one guestfwd that runs `busybox nc` to the loopback server for each connection the guest opens.
 */
function startVmToLoopback(t: TestContext, build: Build, disk: string, server: TestServer, settings: string) {
  const port = new URL(server.url).port;
  return startVm(t, {
    kernel: build.kernel,
    initrd: build.initrd,
    disk,
    cmdline: settings,
    netdev: `user,id=net0,restrict=on,guestfwd=tcp:${GUEST_SERVER}-cmd:busybox nc 127.0.0.1 ${port}`,
    mac: MAC,
  });
}

test('QEMU boots the kernel with the initrd; the client registers, deploys onto /dev/vda, the job ends ok and the VM reboots', { timeout: 600_000 }, async (t) => {
  assert.equal(spawnSync(QEMU, ['--version']).error, undefined, `${QEMU} is installed (Debian package qemu-system-arm)`);
  const build = await buildInitramfs(t);
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'x', 4 * 1024 * 1024 + 123, { makeDefault: true });
  const disk = join(tempDir(t, 'cm4prov-vm-'), 'disk.img');
  await makeFakeEmmc(disk, 64 * 1024 * 1024);

  const started = Date.now();
  const vm = startVmToLoopback(t, build, disk, server, `provisioning_server=http://${GUEST_SERVER} target_device=/dev/vda poll_interval=1`);
  const within = vm.within;

  const device = await within('the VM to register', async () => {
    const devices = (await server.admin('GET', '/api/devices')).body.devices as { mac: string; storage_bytes: number }[];
    return devices.find((entry) => entry.mac === MAC);
  });
  const registeredAfter = (Date.now() - started) / 1000;
  assert.equal(device.storage_bytes, 64 * 1024 * 1024, `the guest reports /dev/vda's size${vm.log()}`);

  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const job = await within('the deploy to end', async () => {
    const current = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
    return ['ok', 'failed', 'cancelled'].includes(current.state) ? current : undefined;
  });
  assert.equal(job.state, 'ok', `${job.error}${vm.log()}`);
  assert.equal(job.sha256, image.sha256);

  // reboot_after defaults to deploy: /init reboots, and -no-reboot turns that into QEMU's exit.
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([vm.exited, new Promise((resolve) => (timer = setTimeout(resolve, 60_000, 'still running')))]);
  clearTimeout(timer);
  assert.equal(code, 0, `the VM rebooted after the deploy${vm.log()}`);
  t.diagnostic(`registered ${registeredAfter.toFixed(1)} s after QEMU started; whole run ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.match(vm.console(), /cm4-provisioning: the deploy finished successfully/, vm.log());
  assert.match(vm.console(), /cm4-provisioning: rebooting/, vm.log());

  assert.equal(await sha256OfFile(disk, image.bytes), image.sha256, 'the disk holds the image, hashed on the host');
});

test('without provisioning_server= the VM says why on the console and, with on_failure=shell, gives a shell, then tries again', { timeout: 600_000 }, async (t) => {
  const build = await buildInitramfs(t);
  const server = await startTestServer(t);
  const disk = join(tempDir(t, 'cm4prov-vm-'), 'disk.img');
  await makeFakeEmmc(disk, 1024 * 1024);
  const vm = startVmToLoopback(t, build, disk, server, 'target_device=/dev/vda on_failure=shell');
  const shown = (pattern: RegExp, from = 0) =>
    waitFor(`the console to show ${pattern}`, () => pattern.test(vm.console().slice(from)), VM_LIMIT_MS, 250).catch((error: Error) =>
      assert.fail(`${error.message}${vm.log()}`),
    );
  await shown(/cm4-provisioning: FAILED: no provisioning_server= on the kernel command line/);
  await shown(/on_failure=shell: here is a shell/);
  vm.type('echo "shell-$((6 * 7))"\n');
  await shown(/shell-42/);
  const before = vm.console().length;
  vm.type('exit\n');
  await shown(/cm4-provisioning: FAILED: no provisioning_server=/, before);
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 0, 'nothing registered');
});

test('in the booted VM zstd runs: it reports its version, round-trips a pipe, writes real zstd frames, and unzstd/zstdcat work', { timeout: 600_000 }, async (t) => {
  const build = await buildInitramfs(t);
  const server = await startTestServer(t);
  const disk = join(tempDir(t, 'cm4prov-vm-'), 'disk.img');
  await makeFakeEmmc(disk, 1024 * 1024);
  // No provisioning_server=: /init fails at once and, with on_failure=shell, gives the console a shell.
  const vm = startVmToLoopback(t, build, disk, server, 'target_device=/dev/vda on_failure=shell');
  let from = 0;
  /** Types a command and waits for its output (matched only after what was typed before it). */
  const run = async (command: string, expected: RegExp) => {
    from = vm.console().length;
    vm.type(`${command}\n`);
    await waitFor(`${JSON.stringify(command)} to print ${expected}`, () => expected.test(vm.console().slice(from)), VM_LIMIT_MS, 250).catch(
      (error: Error) => assert.fail(`${error.message}${vm.log()}`),
    );
  };
  await waitFor('the shell', () => /on_failure=shell: here is a shell/.test(vm.console()), VM_LIMIT_MS, 250).catch((error: Error) =>
    assert.fail(`${error.message}${vm.log()}`),
  );

  await run('zstd -V', /Zstandard CLI .*v\d+\.\d+\.\d+/);
  t.diagnostic(/Zstandard CLI .*v\d+\.\d+\.\d+/.exec(vm.console().slice(from))![0]);
  // Output lines begin the line; the echoed command begins with the prompt.
  await run('echo hello | zstd -c | zstd -dc', /^hello\r?$/m);
  await run('echo hello | zstd -c | od -An -tx1 -N4', /28 b5 2f fd/); // the zstd frame magic
  // What the client will do with images and backups: megabytes through pipes, with every library
  // (liblzma: --format=xz, read back by busybox's unxz).
  await run('dd if=/dev/urandom of=/tmp/r bs=64k count=64 2>/dev/null; sha256sum < /tmp/r', /^[0-9a-f]{64}/m);
  const sha256 = /^([0-9a-f]{64})/m.exec(vm.console().slice(from))![1]!;
  await run('zstd -q -3 -c < /tmp/r > /tmp/r.zst; echo "zst-rc=$?"', /zst-rc=0/);
  await run('unzstd -c < /tmp/r.zst | sha256sum', new RegExp(`^${sha256}`, 'm'));
  await run('zstdcat /tmp/r.zst | sha256sum', new RegExp(`^${sha256}`, 'm'));
  await run('echo xz-ok | zstd -q -c --format=xz | unxz', /^xz-ok\r?$/m);
  await run('echo lz4-ok | zstd -q -c --format=lz4 | zstd -dc', /^lz4-ok\r?$/m);
});
