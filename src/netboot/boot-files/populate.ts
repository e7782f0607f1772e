import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  CM4_DTB, CM4_IO_DTB, CMDLINE_TXT, CONFIG_TXT, CUT_DOWN_FIRMWARE, FULL_FIRMWARE, INITRD, KERNEL, renderCmdline,
  renderConfigTxt, serialProblem, serverUrlProblem, type Firmware,
} from './config-files.js';

/** A boot-files failure, one sentence for the person at the terminal. */
export class BootFilesError extends Error {
  override name = 'BootFilesError';
}

export interface PopulateOptions {
  tftpRoot: string;
  /** A folder of boot files: a firmware release's boot/, or build.sh --firmware's output. */
  sourceDir: string;
  /** The initramfs; default the source's initrd.img, else `defaultInitrd` when it exists. */
  initrd?: string;
  defaultInitrd?: string;
  /** Fill `<tftpRoot>/<serial>/` (the bootloader's TFTP_PREFIX) instead of the root. */
  serial?: string;
  /** The provisioning server as devices reach it: `provisioning_server=` on cmdline.txt. */
  server: string;
  console: string;
  cmdlineExtra?: string;
}

export interface WrittenFile {
  /** Relative to the folder written. */
  name: string;
  bytes: number;
  /** The file it was copied from, or undefined when generated (config.txt, cmdline.txt). */
  source?: string;
}

export interface PopulateResult {
  dir: string;
  files: WrittenFile[];
  notes: string[];
}

const fileSize = (path: string) => {
  const stats = statSync(path, { throwIfNoEntry: false });
  return stats?.isFile() ? stats.size : undefined;
};
const FIRMWARE_FILE = /^(start4\w*\.elf|fixup4\w*\.dat)$/;

/**
 * Fills a TFTP folder for a CM4 from a folder of boot files: the Pi 4 firmware, kernel8.img,
 * the CM4 device tree under the name the bootloader asks for, the initramfs, overlays/ if any,
 * and a config.txt and cmdline.txt written for them. Every file appears whole (temp + rename);
 * config.txt comes last, so a Pi booting meanwhile never reads one naming files not yet there.
 */
export async function populateTftpRoot(options: PopulateOptions): Promise<PopulateResult> {
  const { sourceDir } = options;
  const serverProblem = serverUrlProblem(options.server);
  if (serverProblem) throw new BootFilesError(`Invalid provisioning server URL: ${serverProblem}.`);
  if (options.serial && serialProblem(options.serial)) throw new BootFilesError(`Invalid --serial: ${serialProblem(options.serial)}.`);
  if (/[\r\n]/.test(`${options.console}${options.cmdlineExtra ?? ''}`)) throw new BootFilesError('The kernel command line must be one line: remove the line breaks.');
  const here = (name: string) => [join(sourceDir, name), join(sourceDir, 'firmware', name)].find((path) => fileSize(path) !== undefined);
  const notes: string[] = [];

  const firmwareFiles = new Map<string, string>();
  for (const dir of [join(sourceDir, 'firmware'), sourceDir]) {
    for (const name of listFiles(dir).filter((name) => FIRMWARE_FILE.test(name))) firmwareFiles.set(name, join(dir, name));
  }
  if (!firmwareFiles.has('start4.elf')) {
    throw new BootFilesError(`${sourceDir} has no start4.elf (nor firmware/start4.elf): use a folder with the Pi 4 firmware, e.g. a Raspberry Pi firmware release's boot/, or --from-debian.`);
  }
  let firmware: Firmware = CUT_DOWN_FIRMWARE;
  if (!firmwareFiles.has(CUT_DOWN_FIRMWARE.startFile) || !firmwareFiles.has(CUT_DOWN_FIRMWARE.fixupFile)) {
    firmware = FULL_FIRMWARE;
    notes.push(`${sourceDir} has no start4cd.elf and fixup4cd.dat, so config.txt uses the full firmware start4.elf, which is larger over TFTP than the cut-down one.`);
  }
  if (!firmwareFiles.has(firmware.fixupFile)) throw new BootFilesError(`${sourceDir} has ${firmware.startFile} but not ${firmware.fixupFile}, its matching fixup file: copy the whole firmware release.`);

  const kernel = here(KERNEL);
  if (!kernel) throw new BootFilesError(`${sourceDir} has no ${KERNEL}: use a folder with the 64-bit kernel, e.g. network-boot-initramfs/build.sh's output.`);
  const dtb = here(CM4_DTB) ?? here(CM4_IO_DTB);
  if (!dtb) throw new BootFilesError(`${sourceDir} has neither ${CM4_DTB} nor ${CM4_IO_DTB}: use a folder with the CM4 device tree.`);
  if (basename(dtb) !== CM4_DTB) notes.push(`${CM4_DTB} is ${dtb}: the bootloader asks for the CM4 device tree under that name.`);
  const initrd = options.initrd ?? here(INITRD) ?? (options.defaultInitrd && fileSize(options.defaultInitrd) ? options.defaultInitrd : undefined);
  if (!initrd) throw new BootFilesError(`${sourceDir} has no ${INITRD}: name the initramfs with --initrd PATH, or build one with network-boot-initramfs/build.sh.`);
  if (fileSize(initrd) === undefined) throw new BootFilesError(`The initramfs ${initrd} is not a file.`);
  const pairedKernel = join(dirname(initrd), KERNEL);
  if (dirname(initrd) !== dirname(kernel) && fileSize(pairedKernel) && !(await sameBytes(kernel, pairedKernel))) {
    notes.push(`${kernel} is not the kernel built with ${initrd} (that is ${pairedKernel}): the initramfs's modules load only into their own kernel, so Ethernet and eMMC need drivers built into this one.`);
  }

  const dir = options.serial ? join(options.tftpRoot, options.serial.toLowerCase()) : options.tftpRoot;
  const files: WrittenFile[] = [];
  const copy = async (name: string, source: string) => files.push({ name, source, bytes: await writeWhole(join(dir, name), source) });
  await mkdir(dir, { recursive: true });
  for (const [name, source] of [...firmwareFiles].sort(([a], [b]) => a.localeCompare(b))) await copy(name, source);
  await copy(KERNEL, kernel);
  await copy(CM4_DTB, dtb);
  await copy(INITRD, initrd);
  const overlays = listFiles(join(sourceDir, 'overlays'));
  if (overlays.length > 0) await mkdir(join(dir, 'overlays'), { recursive: true });
  for (const name of overlays) await copy(`overlays/${name}`, join(sourceDir, 'overlays', name));

  const generated: Array<[string, string]> = [
    [CMDLINE_TXT, renderCmdline({ console: options.console, server: options.server, extra: options.cmdlineExtra })],
    [CONFIG_TXT, renderConfigTxt(firmware)],
  ];
  for (const [name, text] of generated) files.push({ name, bytes: await writeWhole(join(dir, name), Buffer.from(text)) });
  return { dir, files, notes };
}

const listFiles = (dir: string) => {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((entry) => fileSize(join(dir, entry.name)) !== undefined).map((entry) => entry.name).sort();
  } catch {
    return [];
  }
};

/** Writes `target` under a temp name in its own folder, then renames it: never half a file. */
async function writeWhole(target: string, from: string | Buffer): Promise<number> {
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(4).toString('hex')}.partial`);
  try {
    if (typeof from === 'string') await copyFile(from, temp);
    else await writeFile(temp, from);
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw new BootFilesError(`Could not write ${target}: ${(error as Error).message}.`);
  }
  return statSync(target).size;
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  if (fileSize(a) !== fileSize(b)) return false;
  const hash = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const sha = createHash('sha256');
      createReadStream(path).on('data', (chunk) => sha.update(chunk)).on('error', reject).on('end', () => resolve(sha.digest('hex')));
    });
  return (await hash(a)) === (await hash(b));
}

/**
 * Runs network-boot-initramfs/build.sh --firmware into `out` (Debian's kernel, initramfs, CM4
 * device tree and raspi-firmware) and returns `out`. Its progress lines go to `log`.
 */
export function buildDebianBootFiles(options: { script: string; out: string; log?: NodeJS.WritableStream }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.script, ['--firmware', '--out', options.out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      options.log?.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) => reject(new BootFilesError(`Could not run ${options.script}: ${error.message}.`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(options.out);
      const lines = tail.trim().split('\n');
      const reason = (lines.findLast((line) => line.includes('error: ')) ?? lines.at(-1) ?? '').replace(/^.*?error: /, '');
      reject(new BootFilesError(`${basename(options.script)} --firmware failed (${signal ?? `exit ${code}`})${reason ? `: ${reason.replace(/\.$/, '')}` : ''}.`));
    });
  });
}
