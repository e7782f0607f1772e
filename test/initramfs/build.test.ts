import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/server.js';
import { BUILD_SCRIPT, INITRAMFS_DIR, buildInitramfs, isFile, isSymlink, readInitrd, type CpioEntry } from './initramfs.js';

const CLIENT = resolve(import.meta.dirname, '../../device/provisioning-client.sh');
const SIZE_LIMIT = 12 * 1000 * 1000;
/** The CM4's Ethernet (bcmgenet, its MDIO bus, its PHY) and eMMC, and virtio for QEMU. */
const REQUIRED_MODULES = ['genet', 'mdio-bcm-unimac', 'broadcom', 'sdhci-iproc', 'virtio_net', 'virtio_blk', 'virtio_pci'];

/** A string field of a module's .modinfo section ("depends=a,b"), read from the .ko bytes. */
function modinfo(ko: Buffer, field: string): string {
  const start = ko.indexOf(`\0${field}=`);
  if (start < 0) return '';
  const from = start + field.length + 2;
  return ko.toString('latin1', from, ko.indexOf(0, from));
}

const moduleName = (path: string) => path.replace(/^.*\//, '').replace(/\.ko$/, '').replaceAll('-', '_');

function readelf(dir: string, entry: CpioEntry, option: string): string {
  const file = join(dir, entry.name.replaceAll('/', '_'));
  writeFileSync(file, entry.data);
  return execFileSync('readelf', [option, file], { encoding: 'utf8' });
}

const neededLibraries = (dir: string, entry: CpioEntry) => [...readelf(dir, entry, '-d').matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((match) => match[1]!);
const interpreterOf = (dir: string, entry: CpioEntry) => /\[Requesting program interpreter: (.+)\]/.exec(readelf(dir, entry, '-l'))?.[1];

test('build.sh and init pass shellcheck as POSIX sh and parse under busybox ash', () => {
  for (const script of [BUILD_SCRIPT, join(INITRAMFS_DIR, 'init')]) {
    const result = spawnSync('shellcheck', ['--shell=sh', '--severity=info', script], { encoding: 'utf8' });
    assert.equal(result.error, undefined, 'shellcheck is installed');
    assert.equal(result.status, 0, result.stdout);
    execFileSync('busybox', ['sh', '-n', script]);
  }
});

test('build.sh builds an arm64 initrd: busybox, curl and zstd with every library they need, the client, the modules in dependency order; under 12 MB; the same bytes twice', async (t) => {
  const build = await buildInitramfs(t);
  t.diagnostic(`build: ${build.seconds.toFixed(1)} s, initrd ${statSync(build.initrd).size} bytes`);
  const entries = readInitrd(build.initrd);
  const entry = (name: string) => {
    const found = entries.get(name);
    assert.ok(found, `the initrd holds ${name}`);
    return found;
  };

  const init = entry('init');
  assert.ok(isFile(init) && (init.mode & 0o111) !== 0, '/init is an executable file');
  assert.deepEqual(init.data, readFileSync(join(INITRAMFS_DIR, 'init')));
  assert.ok(isFile(entry('bin/busybox')));
  for (const applet of ['sh', 'udhcpc', 'insmod', 'ip', 'dd', 'sha256sum', 'reboot']) {
    const link = entry(`bin/${applet}`);
    assert.ok(isSymlink(link) && link.data.toString() === 'busybox', `bin/${applet} → busybox`);
  }
  assert.deepEqual(entry('bin/provisioning-client.sh').data, readFileSync(CLIENT), 'the client script, unchanged');

  // curl and zstd, each with the closure of its ELF NEEDED entries, all in lib/aarch64-linux-gnu.
  const elfDir = tempDir(t, 'cm4prov-elf-');
  const libraryClosure = (binary: string) => {
    const start = entry(binary);
    assert.ok(isFile(start) && (start.mode & 0o111) !== 0, `${binary} is an executable file`);
    assert.equal(interpreterOf(elfDir, start), '/lib/ld-linux-aarch64.so.1', `${binary}'s ELF interpreter`);
    const pending = [start];
    const seen = new Set<string>();
    while (pending.length > 0) {
      for (const soname of neededLibraries(elfDir, pending.pop()!)) {
        if (seen.has(soname)) continue;
        seen.add(soname);
        pending.push(entry(`lib/aarch64-linux-gnu/${soname}`));
      }
    }
    return seen;
  };
  const curlLibraries = libraryClosure('bin/curl');
  for (const library of ['libcurl.so.4', 'libc.so.6', 'libssl.so.3', 'libz.so.1', 'libnghttp2.so.14']) assert.ok(curlLibraries.has(library), `curl: ${library}`);
  const zstdLibraries = libraryClosure('bin/zstd');
  for (const library of ['libc.so.6', 'libz.so.1', 'liblzma.so.5', 'liblz4.so.1']) assert.ok(zstdLibraries.has(library), `zstd: ${library}`);
  for (const name of ['unzstd', 'zstdcat']) {
    const link = entry(`bin/${name}`);
    assert.ok(isSymlink(link) && link.data.toString() === 'zstd', `bin/${name} → zstd`);
  }
  // mtools and debugfs write per-device files; mtools needs glibc's IBM850 converter at run time.
  libraryClosure('bin/mtools');
  libraryClosure('bin/debugfs');
  // cm4prov-io, cross-compiled by build.sh: it needs only what curl and zstd bring.
  const ioLibraries = libraryClosure('bin/cm4prov-io');
  for (const library of ['libcrypto.so.3', 'libzstd.so.1', 'libc.so.6']) assert.ok(ioLibraries.has(library), `cm4prov-io: ${library}`);
  assert.match(build.log, /cm4prov-io: built with aarch64-linux-gnu-gcc, \d+ KiB, needs .* \(0 not shipped before\)/);
  assert.ok(isFile(entry('usr/lib/aarch64-linux-gnu/gconv/IBM850.so')), "glibc's code page 850 converter, which mcopy loads");
  assert.match(entry('usr/lib/aarch64-linux-gnu/gconv/gconv-modules').data.toString(), /^module IBM850\/\/ INTERNAL IBM850 1$/m);
  const loader = entry('lib/ld-linux-aarch64.so.1');
  assert.ok(isSymlink(loader), 'the ELF interpreter curl and zstd ask for, a link to the loader in lib/aarch64-linux-gnu');
  entry(loader.data.toString().replace(/^\//, ''));

  // The modules, and an order in which each comes after what it depends on.
  const release = entry('etc/cm4-provisioning-release').data.toString();
  const kernelVersion = /^KERNEL_VERSION=(.+)$/m.exec(release)?.[1];
  assert.ok(kernelVersion, release);
  assert.equal(readFileSync(join(build.out, 'kernel-version'), 'utf8').trim(), kernelVersion);
  const order = entry(`lib/modules/${kernelVersion}/load-order`).data.toString().trim().split('\n');
  const shipped = [...entries.keys()].filter((name) => name.endsWith('.ko'));
  assert.deepEqual(
    order.map((path) => `lib/modules/${kernelVersion}/${path}`).sort(),
    shipped.sort(),
    'the load order names every shipped module once',
  );
  const loaded = new Set<string>();
  for (const path of order) {
    const ko = entry(`lib/modules/${kernelVersion}/${path}`).data;
    const needs = modinfo(ko, 'depends').split(',').filter(Boolean);
    const pre = (/pre:([^:]*?)(post:|$)/.exec(modinfo(ko, 'softdep'))?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
    for (const dependency of [...needs, ...pre].map(moduleName)) {
      if (shipped.some((name) => moduleName(name) === dependency)) {
        assert.ok(loaded.has(dependency), `${moduleName(path)} loads after ${dependency}`);
      }
    }
    loaded.add(moduleName(path));
  }
  for (const module of REQUIRED_MODULES) assert.ok(loaded.has(moduleName(module)), `module ${module} is shipped and loaded`);

  for (const item of entries.values()) {
    assert.equal(item.uid, 0, `${item.name} is owned by root`);
    assert.equal(item.gid, 0, `${item.name} is owned by root`);
    assert.equal(item.mtime, 0, `${item.name} has the fixed mtime`);
  }
  assert.ok(statSync(build.initrd).size < SIZE_LIMIT, `initrd.img is ${statSync(build.initrd).size} bytes, over 12 MB`);
  assert.match(build.log, /wrote .*initrd\.img: \d+ bytes/, 'build.sh reports the size');
  for (const file of ['kernel8.img', 'bcm2711-rpi-cm4-io.dtb', 'bcm2711-rpi-cm4.dtb']) assert.ok(existsSync(join(build.out, file)), file);
  assert.equal(readFileSync(build.kernel).readUInt32LE(56), 0x644d5241, 'kernel8.img is an uncompressed arm64 Image ("ARMd")');

  const again = await buildInitramfs(t);
  t.diagnostic(`cached build: ${again.seconds.toFixed(1)} s`);
  assert.ok(readFileSync(again.initrd).equals(readFileSync(build.initrd)), 'a second build gives the same bytes');
});

test('build.sh stops with a sentence and a non-zero status on a bad option, kernel or module', (t) => {
  const out = join(tempDir(t, 'cm4prov-initramfs-'), 'out');
  const run = (...args: string[]) => spawnSync(BUILD_SCRIPT, ['--out', out, ...args], { encoding: 'utf8', timeout: 10 * 60_000 });
  const cases: [string[], RegExp][] = [
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['--kernel-version'], /--kernel-version needs a value/],
    [['--client', '/nonexistent/client.sh'], /client script \/nonexistent\/client\.sh does not exist/],
    [['--kernel-version', '0.0.0-0'], /kernel package linux-image-0\.0\.0-0-arm64 is not in the package index; available: linux-image-/],
    [['--extra-module', 'no_such_module'], /kernel module 'no_such_module' is neither a module nor built into linux-image-/],
  ];
  for (const [args, message] of cases) {
    const result = run(...args);
    assert.notEqual(result.status, 0, `${args.join(' ')} fails`);
    assert.match(result.stderr, message);
  }
  const help = spawnSync(BUILD_SCRIPT, ['--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--extra-module NAME/);
});

test('CROSS_CC=none builds the initrd without cm4prov-io and says the client will use dd and sha256sum', async (t) => {
  const build = await buildInitramfs(t, [], { CROSS_CC: 'none' });
  assert.match(build.log, /cm4prov-io: not built \(CROSS_CC=none\); the client will use dd and sha256sum/);
  const entries = readInitrd(build.initrd);
  assert.equal(entries.has('bin/cm4prov-io'), false);
  assert.ok(entries.has('bin/provisioning-client.sh'));
  assert.doesNotMatch(entries.get('etc/cm4-provisioning-release')!.data.toString(), /^PACKAGE=libssl-dev_/m, 'no headers fetched for a helper not built');
});
