import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { waitFor } from './wait.js';

export const QEMU = 'qemu-system-aarch64';
export const VM_LIMIT_MS = 240_000;

export interface VmOptions {
  kernel: string;
  initrd: string;
  /** A raw disk file: the guest's /dev/vda, standing in for the eMMC. */
  disk: string;
  /** Kernel command line after `console=ttyAMA0 panic=-1`. */
  cmdline: string;
  /** The guest NIC's backend, e.g. `tap,id=net0,ifname=tap0,script=no,downscript=no`. */
  netdev: string;
  mac: string;
  /** Run QEMU inside this network namespace (for a tap device that lives there). */
  namespace?: string;
}

/**
 * Boots Debian's arm64 kernel with our initrd under QEMU `-M virt` (software emulation: no machine
 * emulates a CM4). One VM per call, killed by its PID at VM_LIMIT_MS or when the test ends; its
 * serial console is kept for failure messages.
 */
export function startVm(t: TestContext, options: VmOptions) {
  const qemu = [
    '-M', 'virt', '-cpu', 'cortex-a72', '-m', '512', '-nographic', '-no-reboot',
    '-kernel', options.kernel, '-initrd', options.initrd,
    '-append', `console=ttyAMA0 panic=-1 ${options.cmdline}`,
    '-drive', `file=${options.disk},format=raw,if=virtio`,
    '-netdev', options.netdev,
    // romfile= : the PXE option ROM (package ipxe-qemu) is not needed to boot a kernel directly.
    '-device', `virtio-net-pci,netdev=net0,mac=${options.mac},romfile=`,
  ];
  const [command, args] = options.namespace ? ['ip', ['netns', 'exec', options.namespace, QEMU, ...qemu]] : [QEMU, qemu];
  const vm = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  vm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  vm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => vm.on('exit', (code) => resolve(code)));
  const limit = setTimeout(() => vm.kill('SIGKILL'), VM_LIMIT_MS);
  t.after(async () => {
    clearTimeout(limit);
    if (vm.exitCode === null && vm.signalCode === null) vm.kill('SIGKILL');
    await exited;
  });
  const log = () => `\n----- VM console -----\n${output.slice(-12_000)}\n----- end of console -----`;
  return {
    exited,
    log,
    console: () => output,
    type: (text: string) => vm.stdin.write(text),
    /** Waits for what the VM should make happen; fails with its console if it stops first or takes too long. */
    async within<T>(what: string, probe: () => Promise<T>): Promise<NonNullable<T>> {
      const stopped = exited.then(async (code) => (await probe()) || Promise.reject(new Error(`the VM stopped (exit ${code}) before ${what}`)));
      try {
        return (await Promise.race([waitFor(what, probe, VM_LIMIT_MS, 250), stopped])) as NonNullable<T>;
      } catch (error) {
        assert.fail(`${(error as Error).message}${log()}`);
      }
    },
  };
}
