/**
 * config.txt and cmdline.txt for a Raspberry Pi 4 / CM4 that netboots the provisioning
 * initramfs: the names the bootloader asks for, rendering, and a parser that follows the
 * firmware's rules (Raspberry Pi documentation, "config.txt": boot options and filters).
 */

/** The device tree the CM4 firmware asks for. Debian ships it only as the -io name (NOTES.md). */
export const CM4_DTB = 'bcm2711-rpi-cm4.dtb';
export const CM4_IO_DTB = 'bcm2711-rpi-cm4-io.dtb';
export const KERNEL = 'kernel8.img';
export const INITRD = 'initrd.img';
export const CONFIG_TXT = 'config.txt';
export const CMDLINE_TXT = 'cmdline.txt';
/** Screen and the CM4's GPIO14/15 mini UART (network-boot-initramfs/README.md); the last one gets /init's status lines. */
export const DEFAULT_CONSOLE = 'console=tty1 console=ttyS1,115200';

/** start_file and fixup_file are a matched pair: an unmatched pair stops the board from booting. */
export interface Firmware {
  startFile: string;
  fixupFile: string;
}
export const FULL_FIRMWARE: Firmware = { startFile: 'start4.elf', fixupFile: 'fixup4.dat' };
/** The cut-down GPU firmware: smaller and faster over TFTP, runs only with gpu_mem=16. */
export const CUT_DOWN_FIRMWARE: Firmware = { startFile: 'start4cd.elf', fixupFile: 'fixup4cd.dat' };

export const isCutDown = (startFile: string) => /cd\.elf$/.test(startFile);
/** start4cd.elf → fixup4cd.dat, start4.elf → fixup4.dat. */
export const fixupFor = (startFile: string) => startFile.replace(/^start/, 'fixup').replace(/\.elf$/, '.dat');

/** The bootloader's default TFTP_PREFIX: the serial number as 8 lower-case hex digits. */
export const SERIAL_FOLDER = /^[0-9a-f]{8}$/;

/** Why `input` cannot name a device folder, or undefined when it can. */
export function serialProblem(input: string): string | undefined {
  if (SERIAL_FOLDER.test(input.toLowerCase())) return undefined;
  const hex = input.toLowerCase().replace(/^0x/, '');
  const hint = /^[0-9a-f]{9,16}$/.test(hex) ? ` (for the serial ${input} the bootloader's folder is ${hex.slice(-8)})` : '';
  return `serial '${input}' is not 8 hex digits: the bootloader looks for a folder named like its serial number, e.g. 3e0e5f8c${hint}`;
}

/** Why `url` cannot be the provisioning server on the kernel command line, or undefined. */
export function serverUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `'${url}' is not a URL: expected the provisioning server as devices reach it, e.g. http://10.20.50.1:5000`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `'${url}' is not an http:// or https:// URL`;
  if (/\s/.test(url)) return `'${url}' holds white space, which would split it on the kernel command line`;
  return undefined;
}

export function renderConfigTxt(firmware: Firmware): string {
  const cutDown = isCutDown(firmware.startFile);
  return [
    '# Written by cm4prov netboot populate: the provisioning initramfs on a Raspberry Pi 4 / CM4.',
    'arm_64bit=1',
    `kernel=${KERNEL}`,
    '# initramfs takes its file and address as words: "initramfs=" is not understood.',
    `initramfs ${INITRD} followkernel`,
    ...(cutDown ? ['# The cut-down GPU firmware: less to load over TFTP; it runs only with gpu_mem=16.'] : []),
    `start_file=${firmware.startFile}`,
    `fixup_file=${firmware.fixupFile}`,
    ...(cutDown ? ['gpu_mem=16'] : []),
    '# Keeps the mini UART (ttyS1, GPIO14/15) clock steady for the serial console.',
    'enable_uart=1',
    '',
  ].join('\n');
}

/** One line, as the firmware passes only the first line of cmdline.txt to the kernel. */
export function renderCmdline(options: { console: string; server: string; extra?: string }): string {
  const parts = [options.console, `provisioning_server=${options.server}`, options.extra ?? ''];
  return `${parts.map((part) => part.trim()).filter(Boolean).join(' ')}\n`;
}

export interface ConfigEntry {
  /** 1-based line number in its file. */
  line: number;
  name: string;
  value: string;
  /** How name and value were separated: `initramfs` must use a space, the rest `=`. */
  separator: '=' | ' ' | '';
}

/** Conditional filters that never match a CM4; `[none]` matches nothing. */
const OTHER_MODELS = new Set(['pi0', 'pi0w', 'pi02', 'pi1', 'pi2', 'pi3', 'pi3+', 'pi400', 'pi5', 'pi500', 'cm5', 'cm4s', 'none']);
const MODELS = new Set([...OTHER_MODELS, 'pi4', 'cm4']);

/**
 * The entries of config.txt that apply to a CM4, in file order. `[all]` resets the filters; a
 * model filter replaces the previous model filter; other filters (serial, gpio, tryboot, …) are
 * taken to match, so the check looks at everything a CM4 may load.
 */
export function parseConfigTxt(text: string): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  let modelMatches = true;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const filter = /^\[(.*)\]$/.exec(line)?.[1]?.trim().toLowerCase();
    if (filter !== undefined) {
      if (filter === 'all') modelMatches = true;
      else if (MODELS.has(filter)) modelMatches = !OTHER_MODELS.has(filter);
      return;
    }
    if (!modelMatches) return;
    const match = /^([A-Za-z0-9_]+)(\s*=\s*|\s+)?(.*)$/.exec(line);
    if (!match) return;
    const separator = match[2] === undefined ? '' : match[2].includes('=') ? '=' : ' ';
    entries.push({ line: index + 1, name: match[1]!.toLowerCase(), value: match[3]!.trim(), separator });
  });
  return entries;
}

/** The value the firmware uses for `name`: the last applicable one. */
export const lastEntry = (entries: ConfigEntry[], name: string) => entries.findLast((entry) => entry.name === name);

export interface Cmdline {
  /** Lines holding something; the kernel gets only the first. */
  lines: number;
  params: string[];
  server?: string;
}

export function parseCmdline(text: string): Cmdline {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const params = (lines[0] ?? '').trim().split(/\s+/).filter(Boolean);
  const server = params.findLast((param) => param.startsWith('provisioning_server='))?.slice('provisioning_server='.length);
  return { lines: lines.length, params, ...(server === undefined ? {} : { server }) };
}
