import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  CM4_DTB, CM4_IO_DTB, CMDLINE_TXT, CONFIG_TXT, INITRD, KERNEL, SERIAL_FOLDER, fixupFor, isCutDown, lastEntry,
  parseCmdline, parseConfigTxt, serverUrlProblem, type ConfigEntry,
} from './config-files.js';

export interface FolderReport {
  dir: string;
  /** Set for a device folder (`<root>/<serial>/`), absent for the TFTP root itself. */
  serial?: string;
  /** Each one sentence naming the file and what to do; any problem means "not ready". */
  problems: string[];
  notes: string[];
}

export interface CheckReport {
  tftpRoot: string;
  ready: boolean;
  folders: FolderReport[];
}

const isDir = (path: string) => statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
const BOOT_FILES = ['start4.elf', 'start4cd.elf', CONFIG_TXT, CMDLINE_TXT, KERNEL, INITRD, CM4_DTB];

/**
 * Checks a TFTP root the way the Pi 4 / CM4 bootloader will read it: the root and every device
 * folder in it (the bootloader's TFTP_PREFIX default, 8 hex digits), or just one device's folder.
 */
export function checkTftpRoot(options: { tftpRoot: string; serial?: string }): CheckReport {
  const { tftpRoot, serial } = options;
  const report = (folders: FolderReport[]) => ({ tftpRoot, ready: folders.every((f) => f.problems.length === 0), folders });
  if (!isDir(tftpRoot)) {
    return report([{ dir: tftpRoot, problems: [`TFTP root ${tftpRoot} does not exist: fill it with cm4prov netboot populate.`], notes: [] }]);
  }
  if (serial) {
    const dir = join(tftpRoot, serial);
    if (isDir(dir)) return report([checkBootFolder(dir, serial)]);
    const problem = `${dir}/ does not exist, so device ${serial} boots from the TFTP root: fill the folder with cm4prov netboot populate --serial ${serial}.`;
    return report([{ dir, serial, problems: [problem], notes: [] }]);
  }
  const names = readdirSync(tftpRoot).filter((name) => /^[0-9a-f]{8}$/i.test(name) && isDir(join(tftpRoot, name))).sort();
  const serials = names.filter((name) => SERIAL_FOLDER.test(name));
  const root = checkBootFolder(tftpRoot);
  if (serials.length > 0 && !BOOT_FILES.some((name) => fileSize(join(tftpRoot, name)) !== undefined)) {
    root.problems = [];
    root.notes.push(`${tftpRoot} holds no boot files, so only devices with a folder of their own (${serials.join(', ')}) netboot.`);
  }
  for (const name of names.filter((name) => !SERIAL_FOLDER.test(name))) {
    root.problems.push(`${join(tftpRoot, name)}/ is named in upper case, but the bootloader asks for ${name.toLowerCase()}/: rename the folder.`);
  }
  return report([root, ...serials.map((name) => checkBootFolder(join(tftpRoot, name), name))]);
}

function fileSize(path: string): number | undefined {
  const stats = statSync(path, { throwIfNoEntry: false });
  return stats?.isFile() ? stats.size : undefined;
}

/** One folder the bootloader loads everything from; `serial` when it is a device's folder. */
export function checkBootFolder(dir: string, serial?: string): FolderReport {
  const problems: string[] = [];
  const notes: string[] = [];
  const at = (name: string) => join(dir, name);
  /** "is missing" / "is empty", or undefined when the file is there with bytes in it. */
  const lacks = (name: string) => {
    const size = fileSize(at(name));
    return size === undefined ? 'is missing' : size === 0 ? 'is empty' : undefined;
  };
  const populate = `cm4prov netboot populate${serial ? ` --serial ${serial}` : ''}`;
  const folder = { dir, ...(serial ? { serial } : {}), problems, notes };
  if (BOOT_FILES.every((name) => fileSize(at(name)) === undefined)) {
    problems.push(`${dir} holds no boot files: fill it with ${populate}.`);
    return folder;
  }

  const someFirmware = !lacks('start4.elf') || !lacks('start4cd.elf');
  if (!someFirmware) {
    problems.push(`${dir} has neither start4.elf nor start4cd.elf, so the bootloader has no GPU firmware to start: copy them from Debian's raspi-firmware or a Raspberry Pi firmware release (${populate} does).`);
  } else if (serial && lacks('start4.elf')) {
    problems.push(`${at('start4.elf')} ${lacks('start4.elf')}: the bootloader uses the folder ${serial}/ only when it finds ${serial}/start4.elf (it asks for that name whatever config.txt says), so copy start4.elf into it.`);
  }

  let entries: ConfigEntry[] = [];
  if (lacks(CONFIG_TXT)) {
    problems.push(`${at(CONFIG_TXT)} ${lacks(CONFIG_TXT)}: without it the bootloader loads no initramfs and looks for a 32-bit kernel; write it with ${populate}.`);
  } else {
    entries = readConfig(dir, CONFIG_TXT, problems, 0);
    checkConfig(entries, { at, lacks, problems, notes, someFirmware });
  }
  checkDeviceTree(entries, { at, lacks, problems });
  checkCmdline(lastEntry(entries, 'cmdline')?.value || CMDLINE_TXT, { at, lacks, problems, populate });
  return folder;
}

/** config.txt with its `include` files expanded in place (as the firmware reads them). */
function readConfig(dir: string, name: string, problems: string[], depth: number): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  for (const entry of parseConfigTxt(readFileSync(join(dir, name), 'utf8'))) {
    if (entry.name !== 'include') {
      entries.push(entry);
    } else if (fileSize(join(dir, entry.value)) === undefined) {
      problems.push(`${name} includes ${entry.value} (line ${entry.line}), but ${join(dir, entry.value)} is missing: copy it there or remove the line.`);
    } else if (depth < 4) {
      entries.push(...readConfig(dir, entry.value, problems, depth + 1));
    }
  }
  return entries;
}

interface Context {
  at: (name: string) => string;
  lacks: (name: string) => string | undefined;
  problems: string[];
}

function checkConfig(entries: ConfigEntry[], context: Context & { notes: string[]; someFirmware: boolean }) {
  const { at, lacks, problems, notes } = context;
  const value = (name: string) => lastEntry(entries, name)?.value;
  const line = (name: string) => `line ${lastEntry(entries, name)?.line}`;
  const gpuMemText = value('gpu_mem');
  const gpuMem = gpuMemText === undefined ? undefined : Number(gpuMemText);

  // The GPU firmware: start_file, else what start_x or gpu_mem=16 select; fixup_file must match it.
  const startFile = value('start_file') || (value('start_x') === '1' ? 'start4x.elf' : gpuMem === 16 ? 'start4cd.elf' : 'start4.elf');
  const fixupFile = value('fixup_file') || fixupFor(startFile);
  for (const [key, file] of [['start_file', startFile], ['fixup_file', fixupFile]] as const) {
    const missing = lacks(file);
    if (!missing || (key === 'start_file' && !context.someFirmware)) continue;
    const why = value(key) ? `config.txt sets ${key}=${file} (${line(key)})` : `config.txt sets no ${key}=, so the bootloader loads ${file}`;
    problems.push(`${why}, but ${at(file)} ${missing}: copy it there or point ${key}= at a firmware file that is.`);
  }
  if (/^start4\w*\.elf$/.test(startFile) && /^fixup4\w*\.dat$/.test(fixupFile) && fixupFor(startFile) !== fixupFile) {
    problems.push(`config.txt pairs ${startFile} with ${fixupFile}, and an unmatched pair stops the board from booting: set fixup_file=${fixupFor(startFile)}.`);
  }
  if (isCutDown(startFile) && gpuMem !== 16) {
    const setting = gpuMemText === undefined ? 'sets no gpu_mem' : `sets gpu_mem=${gpuMemText} (${line('gpu_mem')})`;
    problems.push(`config.txt ${setting} but loads the cut-down firmware ${startFile}, which runs only with gpu_mem=16: set gpu_mem=16, or use start4.elf and fixup4.dat.`);
  }

  const arm64 = (value('arm_64bit') ?? '0') !== '0';
  const kernel = value('kernel') || (arm64 ? KERNEL : 'kernel7l.img');
  if (lacks(kernel)) {
    const why = value('kernel') ? `config.txt sets kernel=${kernel} (${line('kernel')})` : `config.txt sets no kernel=${arm64 ? '' : ' and no arm_64bit=1'}, so the bootloader loads ${kernel}`;
    problems.push(`${why}, but ${at(kernel)} ${lacks(kernel)}: copy kernel8.img from the same build as the initramfs there${arm64 ? '' : ' and set arm_64bit=1'}.`);
  }

  // `initramfs FILE followkernel` takes no "="; ramfsfile=FILE[,FILE] is its "=" spelling.
  const initramfs = entries.findLast((entry) => entry.name === 'initramfs' || entry.name === 'ramfsfile');
  if (!initramfs) {
    problems.push(`config.txt has no initramfs line, so the kernel starts without the provisioning initramfs: add "initramfs ${INITRD} followkernel" (no "=").`);
  } else if (initramfs.name === 'initramfs' && initramfs.separator !== ' ') {
    const file = initramfs.value.split(/\s+/)[0] || INITRD;
    problems.push(`config.txt line ${initramfs.line} says "${initramfs.name}${initramfs.separator}${initramfs.value}", which the firmware does not understand: write "initramfs ${file} followkernel" (initramfs takes no "=").`);
  } else {
    const files = (initramfs.name === 'initramfs' ? initramfs.value.split(/\s+/)[0]! : initramfs.value).split(',').filter(Boolean);
    if (files.length === 0) problems.push(`config.txt line ${initramfs.line} names no initramfs file: write "initramfs ${INITRD} followkernel".`);
    for (const file of files.filter((name) => lacks(name))) {
      problems.push(`config.txt loads the initramfs ${file} (line ${initramfs.line}), but ${at(file)} ${lacks(file)}: copy initrd.img there (network-boot-initramfs/build.sh builds it).`);
    }
  }

  const overlayPrefix = value('overlay_prefix') || 'overlays/';
  for (const entry of entries.filter((e) => e.name === 'dtoverlay' && e.value !== '')) {
    const file = `${overlayPrefix}${entry.value.split(/[,:]/)[0]!.trim()}.dtbo`;
    if (lacks(file)) problems.push(`config.txt loads the overlay ${file} (line ${entry.line}), but ${at(file)} ${lacks(file)}: copy the overlays/ folder of a firmware release there or remove the line.`);
  }
  if (value('os_prefix')) notes.push(`config.txt sets os_prefix=${value('os_prefix')}: this check looked for the kernel, initramfs and device tree without that prefix.`);
}

function checkDeviceTree(entries: ConfigEntry[], { at, lacks, problems }: Context) {
  const named = lastEntry(entries, 'device_tree');
  if (named?.value) {
    if (lacks(named.value)) problems.push(`config.txt sets device_tree=${named.value} (line ${named.line}), but ${at(named.value)} ${lacks(named.value)}: copy it there, or remove the line to use ${CM4_DTB}.`);
  } else if (lacks(CM4_DTB)) {
    problems.push(
      lacks(CM4_IO_DTB)
        ? `${at(CM4_DTB)} ${lacks(CM4_DTB)}, the device tree the CM4 bootloader asks for: copy it from the kernel's build (network-boot-initramfs/out/) or a firmware release.`
        : `${at(CM4_DTB)} ${lacks(CM4_DTB)}, the device tree the CM4 bootloader asks for, but ${CM4_IO_DTB} (Debian's name for it) is there: copy it as ${CM4_DTB}, or set device_tree=${CM4_IO_DTB} in config.txt.`,
    );
  }
}

function checkCmdline(name: string, { at, lacks, problems, populate }: Context & { populate: string }) {
  if (lacks(name)) {
    problems.push(`${at(name)} ${lacks(name)}: the initramfs then has no provisioning_server= and cannot find the server; write it with ${populate} --server URL.`);
    return;
  }
  const cmdline = parseCmdline(readFileSync(at(name), 'utf8'));
  if (cmdline.lines > 1) problems.push(`${at(name)} has ${cmdline.lines} lines, but the firmware passes only the first to the kernel: put every parameter on one line.`);
  if (cmdline.server === undefined) {
    problems.push(`${at(name)} has no provisioning_server=: add provisioning_server=http://SERVER:5000 (the address devices reach this server at) so the initramfs finds the server.`);
  } else if (serverUrlProblem(cmdline.server)) {
    problems.push(`${at(name)} says provisioning_server=${cmdline.server}, which is not usable (${serverUrlProblem(cmdline.server)}): write the server's URL, e.g. http://10.20.50.1:5000.`);
  }
}
