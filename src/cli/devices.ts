import type { Command } from 'commander';
import { DEVICE_STATES } from '../devices/list-query.js';
import type { DeviceView } from '../devices/service.js';
import type { JobView } from '../jobs/view.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import type { ApiClient } from './api-client.js';
import { silenceWarning } from './device-silence.js';
import { confirmBootOptions, deployConfirmFields, describeFirstBoot, followFirstBoot, type ConfirmOptions } from './first-boot.js';
import { deviceOf, describeFinished, followJob } from './follow.js';
import { macArgument } from './mac-argument.js';
import { printable, printJson, printTable, say, size, when } from './output.js';

export function registerDeviceCommands(program: Command, context: CommandContext) {
  context
    .command(program, 'devices', 'list the devices that have registered, first seen first')
    .option('--search <text>', 'part of a MAC (any separators), an IP, a serial or a model')
    .option('--state <state>', 'active, running, queued, stale, netbooting or ready')
    .option('--newest', 'newest first')
    .option('--limit <n>', 'at most this many (up to 500)', '100')
    .option('--cursor <next>', 'continue a listing where it ended')
    .option('--json', 'print JSON')
    .action(async (options: { search?: string; state?: string; newest?: boolean; limit: string; cursor?: string; json?: boolean }) => {
      const query = new URLSearchParams({ limit: options.limit });
      if (options.search) query.set('search', options.search);
      if (options.state) query.set('state', stateOption(options.state));
      if (options.newest) query.set('order', 'newest');
      if (options.cursor) query.set('cursor', options.cursor);
      const page = await context.api(options).get<{ devices: DeviceView[]; total: number; next: string | null }>(`/api/devices?${query}`);
      if (options.json) printJson(page.devices);
      else printDevices(page.devices, Boolean(options.search || options.state || options.cursor));
      if (page.next) console.error(`${page.devices.length} of ${page.total} devices shown; narrow with --search or --state, or add --cursor ${page.next}`);
    });

  confirmBootOptions(context.command(program, 'deploy', "write an image to a device's eMMC"), false)
    .argument('<mac>', 'the device, e.g. dc:a6:32:01:02:03', macArgument)
    .option('--image <name>', 'image to deploy (default: the default image)')
    .option('--then <boot>', 'after it ends ok, boot: emmc (default) or netboot')
    .option('--full-match', 'make the whole target equal the image (zero what the image leaves empty; one full hash)')
    .option('--finish <what>', 'after it ends ok, the device: reboot (default), poweroff, or wait (LED steady on)')
    .option('--profile <name>', 'per-device files to write after the image (see: cm4prov profiles)')
    .option('--wait', 'follow the job to its end; exit 1 if it fails')
    .option('--wait-boot', 'with --confirm-boot: --wait, then wait for the first boot; exit 1 if it is not confirmed in time')
    .option('--json', 'print JSON')
    .action(async (mac: string, options: { image?: string; then?: string; fullMatch?: boolean; finish?: string; profile?: string; wait?: boolean; json?: boolean } & ConfirmOptions) => {
      const body = {
        profile: options.profile,
        image: options.image,
        after: afterOption(options.then),
        full_match: options.fullMatch || undefined,
        finish: finishOption(options.finish),
        ...deployConfirmFields(options),
      };
      const api = context.api(options);
      const job = await api.post<JobView>(`/api/devices/${encodeURIComponent(mac)}/deploy`, body);
      await reportJob(job, { ...options, wait: options.wait || options.waitBoot }, api);
    });

  context
    .command(program, 'cancel', "cancel a device's queued or running job")
    .argument('<mac>', 'the device', macArgument)
    .option('--json', 'print JSON')
    .action(async (mac: string, options: { json?: boolean }) => {
      const job = await context.api(options).post<JobView>(`/api/devices/${encodeURIComponent(mac)}/cancel`);
      if (options.json) return printJson(job);
      console.log(`Cancelled job ${job.id} (${job.kind} on ${job.device_mac}).`);
    });
}

function printDevices(devices: DeviceView[], filtered: boolean) {
  printTable(
    ['MAC', 'IP', 'SERIAL', 'MODEL', 'EMMC', 'LAST SEEN', 'NEXT BOOT', 'STAGE', 'JOB'],
    devices.map((d) => [
      d.mac, d.ip, d.serial, d.model, size(d.storage_bytes), `${when(d.last_seen_at)}${d.stale ? ' (stale)' : ''}`,
      d.netboot.enabled ? 'netboot' : 'eMMC',
      [d.netboot.stage, d.registered ? '' : 'no client yet'].filter(Boolean).join(', '),
      d.active_job ? `${d.active_job.id} ${d.active_job.kind} ${d.active_job.state}` : '',
    ]),
    filtered ? 'No device matches.' : 'No device has registered yet. Netboot one, or run device/provisioning-client.sh.',
  );
}

function stateOption(state: string): string {
  if ((DEVICE_STATES as readonly string[]).includes(state)) return state;
  throw new CliError(`--state takes ${DEVICE_STATES.join(', ')}, not '${state}'`, EXIT.usage);
}

/** `--then emmc|netboot` as the API's `after`; a wrong word is a usage error, not a request. */
export function afterOption(then: string | undefined): 'emmc' | 'netboot' | undefined {
  if (then === undefined) return undefined;
  if (then === 'emmc' || then === 'netboot') return then;
  throw new CliError(`--then takes emmc or netboot, not '${then}'`, EXIT.usage);
}

/** `--finish reboot|poweroff|wait` as the API's `finish`; a wrong word is a usage error. */
export function finishOption(finish: string | undefined): 'reboot' | 'poweroff' | 'wait' | undefined {
  if (finish === undefined) return undefined;
  if (finish === 'reboot' || finish === 'poweroff' || finish === 'wait') return finish;
  throw new CliError(`--finish takes reboot, poweroff or wait, not '${finish}'`, EXIT.usage);
}

/**
 * Prints a newly queued job, and follows it with --wait. Warns first (stderr) when its device
 * has gone silent or never ran its client: the job then waits until the client polls.
 */
export async function reportJob(job: JobView, options: { wait?: boolean; waitBoot?: boolean; json?: boolean }, api: ApiClient) {
  const device = await deviceOf(api, job.device_mac);
  const warning = device && silenceWarning(device, api.serverNow());
  if (warning) process.stderr.write(`${printable(warning)}\n`);
  if (!options.wait) {
    if (options.json) return printJson(job);
    const what = job.kind === 'deploy' ? `deploy ${job.image?.name} (${size(job.image?.size)})` : 'backup';
    console.log(`Queued job ${job.id}: ${what} on ${job.device_mac}. The device starts it at its next poll.`);
    return;
  }
  const finished = await followJob(api, job.id, { quiet: options.json, warned: Boolean(warning) });
  if (!options.json) {
    say(describeFinished(finished));
    const firstBoot = describeFirstBoot(finished);
    if (firstBoot) say(firstBoot);
  }
  if (!options.waitBoot) {
    if (options.json) printJson(finished);
    return;
  }
  // --wait-boot: the deploy is verified; now the installed OS must call back before the deadline.
  const booted = await followFirstBoot(api, finished, { quiet: options.json });
  if (options.json) return printJson(booted);
  say(describeFirstBoot(booted)!);
}
