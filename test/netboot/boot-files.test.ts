import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { format } from 'node:util';
import { Command, CommanderError } from 'commander';
import { CliError } from '../../src/cli/errors.js';
import { registerBootFileCommands } from '../../src/cli/netboot-files.js';
import { checkTftpRoot, populateTftpRoot, type PopulateOptions } from '../../src/netboot/boot-files/index.js';
import { parseCmdline, parseConfigTxt, renderCmdline, serialProblem } from '../../src/netboot/boot-files/config-files.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/server.js';

const SERVER = 'http://10.20.50.1:5000';
const SERIAL = '3e0e5f8c';
/** What the CM4 loads, in a real raspberrypi/firmware release's boot/ folder. */
const CM4_FILES = ['start4.elf', 'start4cd.elf', 'start4db.elf', 'start4x.elf', 'fixup4.dat', 'fixup4cd.dat', 'fixup4db.dat', 'fixup4x.dat', 'kernel8.img'];
/** Also in a release, for other Pis: never copied. */
const OTHER_FILES = ['bootcode.bin', 'start.elf', 'start_cd.elf', 'fixup.dat', 'kernel.img', 'kernel7l.img', 'bcm2711-rpi-4-b.dtb', 'bcm2710-rpi-3-b.dtb', 'LICENCE.broadcom'];
const OVERLAYS = ['README', 'overlay_map.dtb', 'disable-bt.dtbo'];

/** A fake firmware release boot/ folder: random bytes under real names; the DTB under `dtbName`. */
function fakeRelease(t: TestContext, dtbName = 'bcm2711-rpi-cm4.dtb'): { dir: string; initrd: string } {
  const base = tempDir(t, 'cm4prov-release-');
  const dir = join(base, 'boot');
  mkdirSync(join(dir, 'overlays'), { recursive: true });
  for (const name of [...CM4_FILES, ...OTHER_FILES, dtbName]) writeFileSync(join(dir, name), randomBytes(1000 + Math.floor(Math.random() * 50_000)));
  for (const name of OVERLAYS) writeFileSync(join(dir, 'overlays', name), randomBytes(700));
  const initrd = join(base, 'initrd.img');
  writeFileSync(initrd, randomBytes(300_000));
  return { dir, initrd };
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * `cm4prov netboot …` in this process, through registerBootFileCommands on a `netboot` command
 * (as main.ts will wire it), with main.ts's exit-code mapping. Works before the wiring.
 */
async function netboot(t: TestContext, args: string[], env: NodeJS.ProcessEnv = { CM4PROV_PUBLIC_URL: SERVER }): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const program = new Command('cm4prov').exitOverride().configureOutput({ writeOut: (s) => (stdout += s), writeErr: (s) => (stderr += s) });
  registerBootFileCommands(program.command('netboot'), env);
  const log = t.mock.method(console, 'log', (...parts: unknown[]) => (stdout += `${format(...parts)}\n`));
  try {
    await program.parseAsync(['netboot', ...args], { from: 'user' });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (error instanceof CommanderError) return { code: error.exitCode === 0 ? 0 : 2, stdout, stderr };
    if (error instanceof CliError) return { code: error.exitCode, stdout, stderr: `${stderr}cm4prov: ${error.message}\n` };
    throw error;
  } finally {
    log.mock.restore();
  }
}

describe('config.txt and cmdline.txt', () => {
  test('the parser keeps what applies to a CM4 and how each line was written', () => {
    const entries = parseConfigTxt(['# comment', 'kernel=a.img', '[pi3]', 'kernel=pi3.img', '[cm4]', 'gpu_mem=16', '[pi400]', 'gpu_mem=64', '[all]', 'initramfs initrd.img followkernel', 'initramfs=x.img', ''].join('\n'));
    assert.deepEqual(entries.map((e) => [e.line, e.name, e.separator, e.value]), [
      [2, 'kernel', '=', 'a.img'],
      [6, 'gpu_mem', '=', '16'],
      [10, 'initramfs', ' ', 'initrd.img followkernel'],
      [11, 'initramfs', '=', 'x.img'],
    ]);
    assert.deepEqual(parseCmdline('console=tty1 provisioning_server=http://a:5000 quiet\n'), { lines: 1, params: ['console=tty1', 'provisioning_server=http://a:5000', 'quiet'], server: 'http://a:5000' });
    assert.equal(parseCmdline('console=tty1\nprovisioning_server=http://a:5000\n').lines, 2);
    assert.equal(renderCmdline({ console: 'console=ttyS1,115200', server: SERVER, extra: ' on_failure=shell ' }), `console=ttyS1,115200 provisioning_server=${SERVER} on_failure=shell\n`);
    assert.equal(serialProblem('3E0E5F8C'), undefined, 'upper case is accepted (and written lower case)');
    assert.match(serialProblem('100000003e0e5f8c')!, /not 8 hex digits.*the bootloader's folder is 3e0e5f8c/);
  });
});

describe('netboot populate --from-dir and check (through registerBootFileCommands)', () => {
  test('a firmware release folder becomes the TFTP root: the CM4 files only, byte for byte, config.txt and cmdline.txt as the bootloader reads them', async (t) => {
    const release = fakeRelease(t);
    const dataDir = join(tempDir(t), 'data');
    const run = await netboot(t, ['populate', '--data-dir', dataDir, '--from-dir', release.dir, '--initrd', release.initrd, '--server', `${SERVER}/`, '--cmdline-extra', 'on_failure=shell']);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const root = join(dataDir, 'tftp');
    assert.deepEqual(tree(root), [
      'bcm2711-rpi-cm4.dtb', 'cmdline.txt', 'config.txt', 'fixup4.dat', 'fixup4cd.dat', 'fixup4db.dat', 'fixup4x.dat', 'initrd.img', 'kernel8.img',
      ...OVERLAYS.map((name) => `overlays/${name}`).sort(), 'start4.elf', 'start4cd.elf', 'start4db.elf', 'start4x.elf',
    ], 'the Pi 4 firmware, kernel, CM4 DTB, initramfs and overlays; nothing for other Pis, no temp files');
    for (const name of [...CM4_FILES, 'bcm2711-rpi-cm4.dtb', ...OVERLAYS.map((o) => `overlays/${o}`)]) {
      assert.ok(readFileSync(join(root, name)).equals(readFileSync(join(release.dir, name))), `${name} is a byte-identical copy`);
    }
    assert.ok(readFileSync(join(root, 'initrd.img')).equals(readFileSync(release.initrd)));
    const config = readFileSync(join(root, 'config.txt'), 'utf8');
    const settings = config.split('\n').filter((line) => line && !line.startsWith('#'));
    assert.deepEqual(settings, ['arm_64bit=1', 'kernel=kernel8.img', 'initramfs initrd.img followkernel', 'start_file=start4cd.elf', 'fixup_file=fixup4cd.dat', 'gpu_mem=16', 'enable_uart=1']);
    assert.equal(readFileSync(join(root, 'cmdline.txt'), 'utf8'), `console=tty1 console=ttyS1,115200 provisioning_server=${SERVER} on_failure=shell\n`, 'one line; the trailing / dropped');
    assert.match(run.stdout, /^FILE +SIZE +FROM/m, 'a table of what was written');
    assert.match(run.stdout, /^initrd\.img +293\.0 KiB +\S+\/initrd\.img$/m);
    assert.match(run.stdout, /^config\.txt +\d+ B +\(written\)$/m);
    assert.match(run.stdout, new RegExp(`TFTP root ${root} is ready for Raspberry Pi 4/CM4 netboot\\.`));

    const check = await netboot(t, ['check', '--tftp-root', root]);
    assert.equal(check.code, 0, check.stdout);
    assert.match(check.stdout, /is ready for Raspberry Pi 4\/CM4 netboot/);
    const json = await netboot(t, ['check', '--data-dir', dataDir, '--json']);
    assert.deepEqual(JSON.parse(json.stdout), { tftp_root: root, ready: true, folders: [{ dir: root, serial: null, problems: [], notes: [] }] });
  });

  test('--serial fills <root>/<serial>/; Debian\'s -io DTB is installed under the name the bootloader asks for', async (t) => {
    const release = fakeRelease(t, 'bcm2711-rpi-cm4-io.dtb');
    const root = join(tempDir(t), 'tftp');
    const run = await netboot(t, ['populate', '--tftp-root', root, '--from-dir', release.dir, '--initrd', release.initrd, '--serial', SERIAL.toUpperCase(), '--json'], { CM4PROV_PUBLIC_URL: SERVER });
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout);
    const dir = join(root, SERIAL);
    assert.equal(result.dir, dir, 'the folder is named in lower case, as the bootloader asks');
    assert.deepEqual(readdirSync(root), [SERIAL], 'nothing in the root itself');
    assert.ok(readFileSync(join(dir, 'bcm2711-rpi-cm4.dtb')).equals(readFileSync(join(release.dir, 'bcm2711-rpi-cm4-io.dtb'))));
    assert.ok(result.notes.some((note: string) => /bcm2711-rpi-cm4\.dtb is .*bcm2711-rpi-cm4-io\.dtb/.test(note)), result.notes);
    assert.ok(result.files.find((f: any) => f.name === 'kernel8.img').bytes > 0);
    assert.equal(readFileSync(join(dir, 'cmdline.txt'), 'utf8'), `console=tty1 console=ttyS1,115200 provisioning_server=${SERVER}\n`, 'the URL from CM4PROV_PUBLIC_URL');
    assert.equal(result.check.ready, true);

    const check = await netboot(t, ['check', '--tftp-root', root]);
    assert.equal(check.code, 0, check.stdout);
    assert.match(check.stdout, /holds no boot files, so only devices with a folder of their own \(3e0e5f8c\) netboot/);
    assert.match(check.stdout, /is ready for Raspberry Pi 4\/CM4 netboot \(the root and device folders 3e0e5f8c\)/);
    assert.equal((await netboot(t, ['check', '--tftp-root', root, '--serial', SERIAL])).code, 0);
    const other = await netboot(t, ['check', '--tftp-root', root, '--serial', 'abcdef01']);
    assert.equal(other.code, 1);
    assert.match(other.stdout, /abcdef01\/ does not exist, so device abcdef01 boots from the TFTP root: fill the folder with cm4prov netboot populate --serial abcdef01\./);
  });

  test('check fails with one sentence naming the file and the fix when one thing at a time is broken', async (t) => {
    const release = fakeRelease(t);
    const base = tempDir(t);
    let round = 0;
    const populated = async (serial?: string) => {
      const tftpRoot = join(base, `tftp-${round++}`);
      const options: PopulateOptions = { tftpRoot, sourceDir: release.dir, initrd: release.initrd, server: SERVER, console: 'console=ttyS1,115200', serial };
      const { dir } = await populateTftpRoot(options);
      assert.equal(checkTftpRoot({ tftpRoot }).ready, true, 'ready before breaking it');
      return { tftpRoot, dir, edit: (name: string, change: (text: string) => string) => writeFileSync(join(dir, name), change(readFileSync(join(dir, name), 'utf8'))) };
    };
    const breakages: Array<[string, (p: Awaited<ReturnType<typeof populated>>) => void, RegExp]> = [
      ['delete start4cd.elf', (p) => rmSync(join(p.dir, 'start4cd.elf')), /^config\.txt sets start_file=start4cd\.elf \(line \d+\), but \S+\/start4cd\.elf is missing: copy it there or point start_file= at a firmware file that is\.$/],
      ['write initramfs=initrd.img', (p) => p.edit('config.txt', (s) => s.replace('initramfs initrd.img followkernel', 'initramfs=initrd.img')), /^config\.txt line \d+ says "initramfs=initrd\.img", which the firmware does not understand: write "initramfs initrd\.img followkernel" \(initramfs takes no "="\)\.$/],
      ['drop provisioning_server=', (p) => p.edit('cmdline.txt', (s) => s.replace(/ ?provisioning_server=\S+/, '')), /^\S+\/cmdline\.txt has no provisioning_server=: add provisioning_server=/],
      ['rename the DTB to -io', (p) => renameSync(join(p.dir, 'bcm2711-rpi-cm4.dtb'), join(p.dir, 'bcm2711-rpi-cm4-io.dtb')), /^\S+\/bcm2711-rpi-cm4\.dtb is missing, the device tree the CM4 bootloader asks for, but bcm2711-rpi-cm4-io\.dtb \(Debian's name for it\) is there: copy it as bcm2711-rpi-cm4\.dtb, or set device_tree=bcm2711-rpi-cm4-io\.dtb in config\.txt\.$/],
      ['gpu_mem=64 with the cut-down firmware', (p) => p.edit('config.txt', (s) => s.replace(/^gpu_mem=16$/m, 'gpu_mem=64')), /^config\.txt sets gpu_mem=64 \(line \d+\) but loads the cut-down firmware start4cd\.elf, which runs only with gpu_mem=16/],
      ['a mismatched fixup file', (p) => p.edit('config.txt', (s) => s.replace('fixup_file=fixup4cd.dat', 'fixup_file=fixup4.dat')), /^config\.txt pairs start4cd\.elf with fixup4\.dat, and an unmatched pair stops the board from booting: set fixup_file=fixup4cd\.dat\.$/],
      ['kernel= naming a missing file', (p) => p.edit('config.txt', (s) => s.replace('kernel=kernel8.img', 'kernel=vmlinuz')), /^config\.txt sets kernel=vmlinuz \(line \d+\), but \S+\/vmlinuz is missing/],
      ['the initramfs line naming a missing file', (p) => rmSync(join(p.dir, 'initrd.img')), /^config\.txt loads the initramfs initrd\.img \(line \d+\), but \S+\/initrd\.img is missing: copy initrd\.img there/],
      ['no initramfs line', (p) => p.edit('config.txt', (s) => s.replace(/^initramfs .*\n/m, '')), /^config\.txt has no initramfs line, so the kernel starts without the provisioning initramfs: add "initramfs initrd\.img followkernel" \(no "="\)\.$/],
      ['config.txt missing', (p) => rmSync(join(p.dir, 'config.txt')), /^\S+\/config\.txt is missing: without it the bootloader loads no initramfs/],
      ['cmdline.txt on two lines', (p) => p.edit('cmdline.txt', (s) => s.replace(' provisioning_server', '\nprovisioning_server')), /cmdline\.txt has 2 lines, but the firmware passes only the first to the kernel: put every parameter on one line\.$/],
      ['cmdline.txt missing', (p) => rmSync(join(p.dir, 'cmdline.txt')), /^\S+\/cmdline\.txt is missing: the initramfs then has no provisioning_server=/],
      ['an empty kernel8.img', (p) => writeFileSync(join(p.dir, 'kernel8.img'), ''), /kernel8\.img is empty/],
    ];
    for (const [what, breakIt, sentence] of breakages) {
      const p = await populated();
      breakIt(p);
      const report = checkTftpRoot({ tftpRoot: p.tftpRoot });
      const problems = report.folders.flatMap((folder) => folder.problems);
      assert.equal(report.ready, false, `${what}: not ready`);
      assert.ok(problems.some((problem) => sentence.test(problem)), `${what}: ${JSON.stringify(problems)}`);
      if (what !== 'cmdline.txt on two lines') assert.equal(problems.length, 1, `${what}: exactly one sentence: ${JSON.stringify(problems)}`);
    }

    // A device folder is used only when <serial>/start4.elf is there, whatever config.txt says.
    const device = await populated(SERIAL);
    rmSync(join(device.dir, 'start4.elf'));
    assert.deepEqual(checkTftpRoot({ tftpRoot: device.tftpRoot }).folders.flatMap((f) => f.problems).map((p) => p.replace(device.dir, 'DIR')), [
      'DIR/start4.elf is missing: the bootloader uses the folder 3e0e5f8c/ only when it finds 3e0e5f8c/start4.elf (it asks for that name whatever config.txt says), so copy start4.elf into it.',
    ]);

    // Through the command: the sentences on stdout, exit 1, a summary on stderr.
    const cli = await populated();
    rmSync(join(cli.dir, 'start4cd.elf'));
    cli.edit('config.txt', (s) => s.replace('initramfs initrd.img followkernel', 'initramfs=initrd.img'));
    const run = await netboot(t, ['check', '--tftp-root', cli.tftpRoot]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /start_file=start4cd\.elf .* is missing/);
    assert.match(run.stdout, /says "initramfs=initrd\.img"/);
    assert.match(run.stderr, /^cm4prov: TFTP root \S+ is not ready for Raspberry Pi 4\/CM4 netboot: 2 problems \(listed above\)\.\n$/);
    const json = await netboot(t, ['check', '--tftp-root', cli.tftpRoot, '--json']);
    assert.equal(json.code, 1);
    assert.equal(JSON.parse(json.stdout).folders[0].problems.length, 2);
    const nothing = await netboot(t, ['check', '--tftp-root', join(base, 'nowhere')]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stdout, /TFTP root \S+nowhere does not exist: fill it with cm4prov netboot populate\./);
  });

  test('without the cut-down firmware config.txt falls back to start4.elf with a note; a failed write leaves no temp file', async (t) => {
    const release = fakeRelease(t);
    rmSync(join(release.dir, 'start4cd.elf'));
    const tftpRoot = join(tempDir(t), 'tftp');
    const result = await populateTftpRoot({ tftpRoot, sourceDir: release.dir, initrd: release.initrd, server: SERVER, console: '' });
    assert.match(readFileSync(join(tftpRoot, 'config.txt'), 'utf8'), /^start_file=start4\.elf\nfixup_file=fixup4\.dat\n/m);
    assert.doesNotMatch(readFileSync(join(tftpRoot, 'config.txt'), 'utf8'), /gpu_mem/);
    assert.ok(result.notes.some((note) => /no start4cd\.elf and fixup4cd\.dat, so config\.txt uses the full firmware start4\.elf/.test(note)));
    assert.equal(checkTftpRoot({ tftpRoot }).ready, true);

    // The initramfs: the folder's own, else the default (build.sh's out/) when it exists.
    const noInitrd = { tftpRoot: join(tempDir(t), 'tftp'), sourceDir: release.dir, server: SERVER, console: '' };
    await assert.rejects(populateTftpRoot({ ...noInitrd, defaultInitrd: '/nonexistent/initrd.img' }), /has no initrd\.img: name the initramfs with --initrd PATH, or build one with network-boot-initramfs\/build\.sh\./);
    await populateTftpRoot({ ...noInitrd, defaultInitrd: release.initrd });
    assert.ok(readFileSync(join(noInitrd.tftpRoot, 'initrd.img')).equals(readFileSync(release.initrd)));
    // An initramfs whose own kernel (next to it) is not the one being installed: said in a note.
    writeFileSync(join(release.initrd, '..', 'kernel8.img'), randomBytes(5000));
    const mismatched = await populateTftpRoot({ ...noInitrd, initrd: release.initrd });
    assert.ok(mismatched.notes.some((note) => /kernel8\.img is not the kernel built with \S+initrd\.img .*modules load only into their own kernel/.test(note)), mismatched.notes.join('\n'));

    // A file that cannot be put in place (a folder in its way): a sentence, and no temp file left.
    const blocked = join(tempDir(t), 'tftp');
    mkdirSync(join(blocked, 'kernel8.img', 'x'), { recursive: true });
    await assert.rejects(populateTftpRoot({ ...noInitrd, tftpRoot: blocked, initrd: release.initrd }), /^BootFilesError: Could not write \S+\/kernel8\.img: /);
    assert.deepEqual(readdirSync(blocked).filter((name) => name.includes('partial')), []);
  });

  test('bad options stop with exit 2 and one sentence, before anything is written', async (t) => {
    const release = fakeRelease(t);
    const root = join(tempDir(t), 'tftp');
    const populate = (args: string[], env: NodeJS.ProcessEnv = { CM4PROV_PUBLIC_URL: SERVER }) =>
      netboot(t, ['populate', '--tftp-root', root, '--initrd', release.initrd, ...args], env);
    const cases: Array<[string[], NodeJS.ProcessEnv | undefined, RegExp]> = [
      [['--from-debian', '--from-dir', release.dir], undefined, /^cm4prov: Give one source of boot files: --from-debian or --from-dir DIR, not both\.$/m],
      [[], undefined, /^cm4prov: Name the source of the boot files: --from-debian \(build them from Debian packages\) or --from-dir DIR/m],
      [['--from-dir', release.dir, '--serial', 'xyz'], undefined, /^cm4prov: Invalid --serial: serial 'xyz' is not 8 hex digits: the bootloader looks for a folder named like its serial number, e\.g\. 3e0e5f8c\.$/m],
      [['--from-dir', release.dir, '--serial', '100000003e0e5f8c'], undefined, /Invalid --serial: .*the bootloader's folder is 3e0e5f8c\)\.$/m],
      [['--from-dir', release.dir], {}, /^cm4prov: cmdline\.txt needs the provisioning server URL: pass --server URL \(as devices reach this server, e\.g\. http:\/\/10\.20\.50\.1:5000\) or set CM4PROV_PUBLIC_URL\.$/m],
      [['--from-dir', release.dir, '--server', 'ftp://10.20.50.1'], undefined, /^cm4prov: Invalid --server: 'ftp:\/\/10\.20\.50\.1' is not an http:\/\/ or https:\/\/ URL\.$/m],
      [['--from-dir', release.dir], { CM4PROV_PUBLIC_URL: '10.20.50.1:5000' }, /^cm4prov: Invalid CM4PROV_PUBLIC_URL: /m],
      [['--from-dir', join(release.dir, 'nope')], undefined, /^cm4prov: --from-dir \S+nope is not a folder\.$/m],
    ];
    for (const [args, env, sentence] of cases) {
      const run = await populate(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, sentence);
      assert.equal(run.stderr.trim().split('\n').length, 1, 'one sentence');
      assert.equal(existsSync(root), false, `${args.join(' ')}: nothing written`);
    }
    const check = await netboot(t, ['check', '--tftp-root', root, '--serial', 'G0000000']);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /Invalid --serial: serial 'G0000000' is not 8 hex digits/);
  });
});

test('netboot populate --from-debian builds the boot files from Debian packages (build.sh --firmware) and the TFTP root passes check', { timeout: 20 * 60_000 }, async (t) => {
  const dataDir = join(tempDir(t, 'cm4prov-debian-'), 'data');
  const started = Date.now();
  const run = await netboot(t, ['populate', '--from-debian', '--data-dir', dataDir, '--server', SERVER, '--json']);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  const root = join(dataDir, 'tftp');
  const build = join(dataDir, 'netboot', 'build');
  t.diagnostic(`populate --from-debian: ${seconds.toFixed(1)} s; ${result.files.map((f: any) => `${f.name} ${f.bytes}`).join(', ')}`);
  const names = result.files.map((file: any) => file.name);
  for (const name of ['start4.elf', 'start4cd.elf', 'fixup4.dat', 'fixup4cd.dat', 'kernel8.img', 'initrd.img', 'bcm2711-rpi-cm4.dtb', 'config.txt', 'cmdline.txt']) {
    assert.ok(names.includes(name), `${name} written`);
    assert.ok(existsSync(join(root, name)), `${name} is in the TFTP root`);
  }
  for (const name of ['start4.elf', 'start4cd.elf', 'fixup4.dat', 'fixup4cd.dat']) {
    assert.ok(readFileSync(join(root, name)).equals(readFileSync(join(build, 'firmware', name))), `${name} from raspi-firmware`);
  }
  assert.ok(readFileSync(join(root, 'bcm2711-rpi-cm4.dtb')).equals(readFileSync(join(build, 'bcm2711-rpi-cm4-io.dtb'))), "Debian's CM4 IO board DTB");
  assert.ok(readFileSync(join(root, 'initrd.img')).equals(readFileSync(join(build, 'initrd.img'))));
  assert.equal(readFileSync(join(root, 'kernel8.img')).readUInt32LE(56), 0x644d5241, 'kernel8.img is an arm64 Image ("ARMd")');
  assert.equal(readFileSync(join(root, 'start4cd.elf')).subarray(0, 4).toString('latin1'), '\x7fELF', 'start4cd.elf is the real firmware');
  assert.match(readFileSync(join(build, 'firmware', 'package'), 'utf8'), /^raspi-firmware_/);
  assert.match(readFileSync(join(root, 'config.txt'), 'utf8'), /^start_file=start4cd\.elf\nfixup_file=fixup4cd\.dat\ngpu_mem=16$/m);
  assert.equal(result.check.ready, true, JSON.stringify(result.check));
  const check = await netboot(t, ['check', '--data-dir', dataDir]);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /is ready for Raspberry Pi 4\/CM4 netboot/);
});

// ---------------------------------------------------------------------------------------------
// CLI tests through bin/cm4prov.js (runCli). These need registerBootFileCommands wired into
// src/cli/main.ts (`registerBootFileCommands(registerNetbootCommands(program, context), env)`);
// until then they fail with "unknown command 'populate'".
// ---------------------------------------------------------------------------------------------
describe('cm4prov netboot populate/check as a user runs them (needs the main.ts wiring)', () => {
  test('populate --from-dir then check: exit 0; a broken root: exit 1 with the sentences', async (t) => {
    const release = fakeRelease(t);
    const dataDir = join(tempDir(t), 'data');
    const populate = await runCli(['netboot', 'populate', '--data-dir', dataDir, '--from-dir', release.dir, '--initrd', release.initrd, '--serial', SERIAL], { CM4PROV_PUBLIC_URL: SERVER });
    assert.equal(populate.code, 0, populate.stderr);
    assert.match(populate.stdout, /^start4cd\.elf +\S+ \S+ +\S+start4cd\.elf$/m);
    assert.match(populate.stdout, /is ready for Raspberry Pi 4\/CM4 netboot \(device folder 3e0e5f8c\/\)\./);
    assert.ok(readFileSync(join(dataDir, 'tftp', SERIAL, 'kernel8.img')).equals(readFileSync(join(release.dir, 'kernel8.img'))));
    const check = await runCli(['netboot', 'check'], { CM4PROV_DATA_DIR: dataDir });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /TFTP root \S+ is ready for Raspberry Pi 4\/CM4 netboot/);

    renameSync(join(dataDir, 'tftp', SERIAL, 'bcm2711-rpi-cm4.dtb'), join(dataDir, 'tftp', SERIAL, 'bcm2711-rpi-cm4-io.dtb'));
    const broken = await runCli(['netboot', 'check', '--data-dir', dataDir, '--serial', SERIAL]);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /bcm2711-rpi-cm4\.dtb is missing, .*copy it as bcm2711-rpi-cm4\.dtb, or set device_tree=bcm2711-rpi-cm4-io\.dtb in config\.txt\./);
    assert.match(broken.stderr, /^cm4prov: TFTP root \S+ is not ready for Raspberry Pi 4\/CM4 netboot: 1 problem \(listed above\)\.\n$/);
  });

  test('bad options exit 2 with one sentence', async (t) => {
    const release = fakeRelease(t);
    const root = join(tempDir(t), 'tftp');
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['--from-debian', '--from-dir', release.dir], { CM4PROV_PUBLIC_URL: SERVER }, /^cm4prov: Give one source of boot files/],
      [['--from-dir', release.dir, '--serial', '1234'], { CM4PROV_PUBLIC_URL: SERVER }, /^cm4prov: Invalid --serial: serial '1234' is not 8 hex digits/],
      [['--from-dir', release.dir], {}, /^cm4prov: cmdline\.txt needs the provisioning server URL/],
      [['--from-dir', release.dir, '--no-such-flag'], { CM4PROV_PUBLIC_URL: SERVER }, /unknown option '--no-such-flag'/],
    ];
    for (const [args, env, sentence] of cases) {
      const run = await runCli(['netboot', 'populate', '--tftp-root', root, '--initrd', release.initrd, ...args], env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, sentence);
    }
    assert.equal(existsSync(root), false);
  });
});
