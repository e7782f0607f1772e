import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { buildInitramfs, type Build } from './initramfs.js';

const QEMU = 'qemu-system-aarch64';
const VM_LIMIT_MS = 240_000;
/** The address the guest sees the server at; QEMU relays it to the test server on loopback. */
const GUEST_SERVER = '10.0.2.100:5000';

/**
 * Boots Debian's arm64 kernel with the built initrd under QEMU (software emulation), a disk file
 * as /dev/vda standing in for the eMMC, and a NIC that reaches nothing but this test's server:
 * user networking with restrict=on, plus one guestfwd that runs `busybox nc` to the loopback
 * server for each connection the guest opens to GUEST_SERVER.
 */
function startVm(t: TestContext, build: Build, disk: string, server: TestServer, settings: string) {
  const port = new URL(server.url).port;
  const args = [
    '-M', 'virt', '-cpu', 'cortex-a72', '-m', '512', '-nographic', '-no-reboot',
    '-kernel', build.kernel, '-initrd', build.initrd,
    '-append', `console=ttyAMA0 panic=-1 ${settings}`,
    '-drive', `file=${disk},format=raw,if=virtio`,
    '-netdev', `user,id=net0,restrict=on,guestfwd=tcp:${GUEST_SERVER}-cmd:busybox nc 127.0.0.1 ${port}`,
    '-device', `virtio-net-pci,netdev=net0,mac=${MAC},romfile=`,
  ];
  const vm = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  vm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  vm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => vm.on('exit', (code) => resolve(code)));
  // The VM is ours alone: killed by its PID at the time limit, or when the test ends.
  const limit = setTimeout(() => vm.kill('SIGKILL'), VM_LIMIT_MS);
  t.after(async () => {
    clearTimeout(limit);
    if (vm.exitCode === null && vm.signalCode === null) vm.kill('SIGKILL');
    await exited;
  });
  return {
    exited,
    /** The serial console so far, attached to every failure. */
    log: () => `\n----- VM console -----\n${output.slice(-12_000)}\n----- end of console -----`,
    console: () => output,
    /** Types on the serial console. */
    type: (text: string) => vm.stdin.write(text),
  };
}

test('QEMU boots the kernel with the initrd; the client registers, deploys onto /dev/vda, the job ends ok and the VM reboots', { timeout: 600_000 }, async (t) => {
  assert.equal(spawnSync(QEMU, ['--version']).error, undefined, `${QEMU} is installed (Debian package qemu-system-arm)`);
  const build = await buildInitramfs(t);
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'x', 4 * 1024 * 1024 + 123, { makeDefault: true });
  const disk = join(tempDir(t, 'cm4prov-vm-'), 'disk.img');
  await makeFakeEmmc(disk, 64 * 1024 * 1024);

  const started = Date.now();
  const vm = startVm(t, build, disk, server, `provisioning_server=http://${GUEST_SERVER} target_device=/dev/vda poll_interval=1`);
  // Waits for what the VM should make happen; a VM that stops first gets one last look.
  const within = async <T>(what: string, probe: () => Promise<T>) => {
    const stopped = vm.exited.then(async (code) => (await probe()) || Promise.reject(new Error(`the VM stopped (exit ${code}) before ${what}`)));
    try {
      return (await Promise.race([waitFor(what, probe, VM_LIMIT_MS, 250), stopped])) as NonNullable<T>;
    } catch (error) {
      assert.fail(`${(error as Error).message}${vm.log()}`);
    }
  };

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
  const vm = startVm(t, build, disk, server, 'target_device=/dev/vda on_failure=shell');
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
