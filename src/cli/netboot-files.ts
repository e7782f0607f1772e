import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import {
  BootFilesError, DEFAULT_CONSOLE, buildDebianBootFiles, checkTftpRoot, populateTftpRoot, serialProblem, serverUrlProblem,
  type CheckReport,
} from '../netboot/boot-files/index.js';
import type { Settings } from '../config.js';
import { CliError, EXIT } from './errors.js';
import { printJson, printTable, size } from './output.js';
import { LOCATION_HELP, locate, type CliSurroundings } from './server-location.js';

const BUILD_SCRIPT = fileURLToPath(new URL('../../network-boot-initramfs/build.sh', import.meta.url));
const BUILT_INITRD = fileURLToPath(new URL('../../network-boot-initramfs/out/initrd.img', import.meta.url));

interface WhereOptions {
  dataDir?: string;
  tftpRoot?: string;
  config?: string;
  serial?: string;
  json?: boolean;
}

interface PopulateOptions extends WhereOptions {
  fromDebian?: boolean;
  fromDir?: string;
  initrd?: string;
  server?: string;
  cmdlineExtra?: string;
  console: string;
}

/** `cm4prov netboot populate` and `cm4prov netboot check`: the TFTP root's boot files. Run on the server host. */
export function registerBootFileCommands(netbootCommand: Command, env: NodeJS.ProcessEnv, defaultConfigFile?: string) {
  const cli: CliSurroundings = { env, defaultConfigFile };
  const where = (command: Command) =>
    command
      .option('--tftp-root <dir>', "the TFTP root (env CM4PROV_TFTP_ROOT; else the settings file's tftp-root; default <data-dir>/tftp)")
      .option('--data-dir <dir>', LOCATION_HELP.dataDir)
      .option('--config <file>', LOCATION_HELP.config)
      .option('--serial <hex8>', "a device's folder <tftp-root>/<serial>/ (the bootloader's TFTP_PREFIX: 8 hex digits)")
      .option('--json', 'print JSON');

  where(netbootCommand.command('populate').description('fill the TFTP root with the Pi 4/CM4 boot files, config.txt and cmdline.txt, then check it'))
    .option('--from-debian', 'build them from Debian packages (network-boot-initramfs/build.sh --firmware)')
    .option('--from-dir <dir>', 'copy them from a folder, e.g. a Raspberry Pi firmware release boot/ (start4*.elf, fixup4*.dat, kernel8.img, bcm2711-rpi-cm4*.dtb, overlays/)')
    .option('--initrd <path>', 'the initramfs (default: the source folder\'s initrd.img, else network-boot-initramfs/out/initrd.img)')
    .option('--server <url>', "provisioning server URL devices use, written into cmdline.txt (env CM4PROV_PUBLIC_URL; else the settings file's public-url)")
    .option('--cmdline-extra <text>', 'more kernel parameters, appended to cmdline.txt')
    .option('--console <text>', 'kernel console parameters', DEFAULT_CONSOLE)
    .action(async (options: PopulateOptions) => {
      const { settings, dataDir, tftpRoot, serial } = locateBootFiles(options, cli);
      if (options.fromDebian && options.fromDir) throw new CliError('Give one source of boot files: --from-debian or --from-dir DIR, not both.', EXIT.usage);
      if (!options.fromDebian && !options.fromDir) {
        throw new CliError('Name the source of the boot files: --from-debian (build them from Debian packages) or --from-dir DIR (e.g. a Raspberry Pi firmware release boot/ folder).', EXIT.usage);
      }
      const server = serverUrl(options.server, settings);
      if (options.fromDir && !statSync(options.fromDir, { throwIfNoEntry: false })?.isDirectory()) {
        throw new CliError(`--from-dir ${options.fromDir} is not a folder.`, EXIT.usage);
      }
      if (options.initrd && !statSync(options.initrd, { throwIfNoEntry: false })?.isFile()) {
        throw new CliError(`--initrd ${options.initrd} is not a file.`, EXIT.usage);
      }
      const result = await failed(async () => {
        const sourceDir = options.fromDir
          ? resolve(options.fromDir)
          : await buildDebianBootFiles({ script: BUILD_SCRIPT, out: join(dataDir, 'netboot', 'build'), log: process.stderr });
        return populateTftpRoot({
          tftpRoot, sourceDir, server, serial,
          initrd: options.initrd && resolve(options.initrd),
          defaultInitrd: BUILT_INITRD,
          console: options.console,
          cmdlineExtra: options.cmdlineExtra,
        });
      });
      const report = checkTftpRoot({ tftpRoot, serial });
      if (options.json) {
        const files = result.files.map((file) => ({ name: file.name, bytes: file.bytes, source: file.source ?? null }));
        printJson({ tftp_root: tftpRoot, dir: result.dir, serial: serial ?? null, files, notes: result.notes, check: checkJson(report) });
      } else {
        printTable(['FILE', 'SIZE', 'FROM'], result.files.map((file) => [file.name, size(file.bytes), file.source ?? '(written)']), 'No files written.');
        for (const note of result.notes) console.log(`note: ${note}`);
        console.log(`Wrote ${result.files.length} files to ${result.dir}.`);
        printCheck(report, serial);
      }
      if (!report.ready) throw notReady(report, options.json);
    });

  where(netbootCommand.command('check').description('check that the TFTP root holds what the Pi 4/CM4 bootloader loads, and that it fits together'))
    .action((options: WhereOptions) => {
      const { tftpRoot, serial } = locateBootFiles(options, cli);
      const report = checkTftpRoot({ tftpRoot, serial });
      if (options.json) printJson(checkJson(report));
      else printCheck(report, serial);
      if (!report.ready) throw notReady(report, options.json);
    });
}

/** The data folder and TFTP root `cm4prov serve` would use (flags, environment, settings file). */
function locateBootFiles(options: WhereOptions, cli: CliSurroundings) {
  const problem = options.serial === undefined ? undefined : serialProblem(options.serial);
  if (problem) throw new CliError(`Invalid --serial: ${problem}.`, EXIT.usage);
  const settings = locate(options, cli);
  const dataDir = settings.get('dataDir').value;
  const tftpRoot = settings.get('tftpRoot').value ?? join(dataDir, 'tftp');
  return { settings, dataDir, tftpRoot, serial: options.serial?.toLowerCase() };
}

function serverUrl(flag: string | undefined, settings: Settings): string {
  const [url, name] = flag ? [flag, '--server'] : [settings.get('publicUrl').value, settings.get('publicUrl').origin.replace(/^from /, '')];
  if (!url) {
    throw new CliError('cmdline.txt needs the provisioning server URL: pass --server URL (as devices reach this server, e.g. http://10.20.50.1:5000) or set CM4PROV_PUBLIC_URL.', EXIT.usage);
  }
  const problem = serverUrlProblem(url);
  if (problem) throw new CliError(`Invalid ${name}: ${problem}.`, EXIT.usage);
  // The client appends /api/…: no trailing slash, or paths would start with "//".
  return url.replace(/\/+$/, '');
}

async function failed<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof BootFilesError) throw new CliError(error.message, EXIT.failed);
    throw error;
  }
}

const checkJson = (report: CheckReport) => ({
  tftp_root: report.tftpRoot,
  ready: report.ready,
  folders: report.folders.map((folder) => ({ dir: folder.dir, serial: folder.serial ?? null, problems: folder.problems, notes: folder.notes })),
});

function printCheck(report: CheckReport, serial: string | undefined) {
  for (const folder of report.folders) {
    for (const note of folder.notes) console.log(`note: ${note}`);
    for (const problem of folder.problems) console.log(problem);
  }
  if (!report.ready) return;
  const devices = report.folders.flatMap((folder) => (folder.serial ? [folder.serial] : []));
  const scope = serial ? ` (device folder ${serial}/)` : devices.length > 0 ? ` (the root and device folders ${devices.join(', ')})` : '';
  console.log(`TFTP root ${report.tftpRoot} is ready for Raspberry Pi 4/CM4 netboot${scope}.`);
}

function notReady(report: CheckReport, json: boolean | undefined): CliError {
  const count = report.folders.reduce((sum, folder) => sum + folder.problems.length, 0);
  const where = json ? 'in the JSON' : 'listed above';
  return new CliError(`TFTP root ${report.tftpRoot} is not ready for Raspberry Pi 4/CM4 netboot: ${count} problem${count === 1 ? '' : 's'} (${where}).`, EXIT.failed);
}
