import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { FirstBootHook } from '../first-boot/hook-files.js';
import type { FirstBootView } from '../first-boot/view.js';
import { stateText, type JobView } from '../jobs/view.js';
import type { RuleView } from '../rules/index.js';
import type { ApiClient } from './api-client.js';
import { CliError, EXIT } from './errors.js';
import { deviceOf } from './follow.js';
import { duration, printable, when } from './output.js';
import { createStatusLine } from './progress.js';

/** How often a wait for a first boot asks the server: the watchdog decides every 5 s, a call confirms at once. */
const POLL_MS = 1000;
const MIN_TIMEOUT_S = 30;
const MAX_TIMEOUT_S = 86_400;
const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600 };
/** Every hook the server takes (the object makes TypeScript check the list is whole). */
const HOOKS = Object.keys({ cmdline: true, 'cmdline-boot': true, none: true } satisfies Record<FirstBootHook, true>) as FirstBootHook[];

/** `--confirm-timeout 600 | 90s | 10m | 1h` as seconds, 30 s to 24 h; anything else is a usage error. */
export function durationArgument(text: string): number {
  const found = /^(\d{1,9})\s*([smh]?)$/i.exec(text.trim());
  if (!found) throw new CliError(`--confirm-timeout takes seconds (600) or a number with s, m or h (90s, 10m, 1h), not '${text}'`, EXIT.usage);
  const seconds = Number(found[1]) * UNIT_SECONDS[found[2]!.toLowerCase()]!;
  if (seconds < MIN_TIMEOUT_S || seconds > MAX_TIMEOUT_S) throw new CliError(`--confirm-timeout takes 30 s to 24 h, not '${text}'`, EXIT.usage);
  return seconds;
}

/**
 * --confirm-boot (and, for a rule, --no-confirm-boot), --confirm-timeout and --first-boot-hook:
 * the same flags on deploy, rules add and rules edit.
 */
export function confirmBootOptions(command: Command, forRule: boolean): Command {
  const needs = forRule ? '' : 'with --confirm-boot: ';
  command.option(
    '--confirm-boot',
    forRule
      ? 'its deploys await the first-boot call; a device counts as provisioned only then (the default for new deploy rules)'
      : 'ask the installed OS to confirm its first boot: the job ends ok · awaiting first boot, then confirmed or not confirmed',
  );
  if (forRule) command.option('--no-confirm-boot', 'its deploys end at the verified write');
  return command
    .option('--confirm-timeout <duration>', `${needs}how long a first boot is awaited after an ok deploy: seconds, or 90s, 10m, 1h (30 s to 24 h; default 10m)`, durationArgument)
    .option('--first-boot-hook <hook>', `${needs}the hook written into the image: cmdline (default; boot partition at /boot/firmware), cmdline-boot (at /boot), or none (the profile carries one)`, hookArgument);
}

/** `--first-boot-hook cmdline | cmdline-boot | none`. */
export function hookArgument(text: string): FirstBootHook {
  if ((HOOKS as string[]).includes(text)) return text as FirstBootHook;
  throw new CliError(`--first-boot-hook takes ${HOOKS.slice(0, -1).join(', ')} or ${HOOKS.at(-1)}, not '${text}'`, EXIT.usage);
}

export interface ConfirmOptions {
  confirmBoot?: boolean;
  confirmTimeout?: number;
  firstBootHook?: FirstBootHook;
  waitBoot?: boolean;
}

/**
 * A deploy's first-boot fields for the API. The flags that only mean something with
 * --confirm-boot are a usage error without it, found before any request.
 */
export function deployConfirmFields(options: ConfirmOptions) {
  if (!options.confirmBoot) {
    const stray = [
      options.confirmTimeout !== undefined && '--confirm-timeout',
      options.firstBootHook !== undefined && '--first-boot-hook',
      options.waitBoot && '--wait-boot',
    ].filter((flag): flag is string => Boolean(flag));
    if (stray.length > 0) {
      throw new CliError(`${stray.join(' and ')} ${stray.length > 1 ? 'need' : 'needs'} --confirm-boot (a deploy without it awaits no first boot)`, EXIT.usage);
    }
    return {};
  }
  return { confirm_boot: true, confirm_timeout: options.confirmTimeout, first_boot_hook: options.firstBootHook };
}

/** A rule's first-boot fields for the API (add or edit): `--no-confirm-boot` with a timeout or hook contradicts itself. */
export function ruleConfirmFields(options: { confirmBoot?: boolean; confirmTimeout?: number; firstBootHook?: FirstBootHook }) {
  if (options.confirmBoot === false) {
    const stray = [options.confirmTimeout !== undefined && '--confirm-timeout', options.firstBootHook !== undefined && '--first-boot-hook'].filter(Boolean);
    if (stray.length > 0) throw new CliError(`${stray.join(' and ')} cannot go with --no-confirm-boot (a rule that does not confirm first boots awaits none)`, EXIT.usage);
  }
  return { confirm_boot: options.confirmBoot, confirm_timeout: options.confirmTimeout, first_boot_hook: options.firstBootHook };
}

/** A rule's first-boot setting: `on, 10 min, hook cmdline` or `off`. */
export function ruleFirstBootText(rule: Pick<RuleView, 'confirm_boot' | 'confirm_timeout' | 'first_boot_hook'>): string {
  if (!rule.confirm_boot) return 'off';
  return `on, ${timeoutText(rule.confirm_timeout ?? 600)}, hook ${rule.first_boot_hook}`;
}

/** "10 min", "90 s", "1 h" (the server's own words for whole minutes, and hours). */
export const timeoutText = (seconds: number) =>
  seconds % 3600 === 0 ? `${seconds / 3600} h` : seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;

/**
 * The "First boot:" detail of a job: its summary, then the deadline (or when it was confirmed),
 * then the hook: `awaiting first boot; deadline 2026-11-25 10:14:05Z; hook cmdline`.
 */
export function firstBootDetail(firstBoot: FirstBootView): string {
  const time = {
    not_yet: null,
    not_awaited: null,
    awaiting: `deadline ${when(firstBoot.deadline_at)}`,
    confirmed: `confirmed at ${when(firstBoot.confirmed_at)}`,
    not_confirmed: `deadline was ${when(firstBoot.deadline_at)}`,
    superseded: null,
  }[firstBoot.state];
  return [firstBoot.summary, time, `hook ${firstBoot.hook}`].filter(Boolean).join('; ');
}

/** After `deploy --wait` of a confirming deploy: `job 12 ok · awaiting first boot; deadline …; hook cmdline` (stateText, then when). */
export function describeFirstBoot(job: JobView): string | undefined {
  if (!job.first_boot) return undefined;
  const shown = stateText(job);
  // stateText shows the first boot only once it is awaited; before (or without) that, the state alone.
  return shown === job.state ? `job ${job.id} ${job.state}; first boot: ${firstBootDetail(job.first_boot)}` : `job ${job.id} ${job.state} · ${firstBootDetail(job.first_boot)}`;
}

/** The status line while a first boot is awaited: the time left by the server's clock. */
export function awaitingLine(job: JobView, serverNow: number): string {
  const left = Date.parse(job.first_boot?.deadline_at ?? '') - serverNow;
  const remaining = !Number.isFinite(left) ? 'no deadline given' : left > 0 ? `${duration(left / 1000)} left` : 'deadline passed';
  return `job ${job.id}: ${stateText(job)} of ${job.device_mac}: ${remaining}`;
}

/**
 * Waits, after a confirming deploy ended ok, until its first boot is confirmed (returns the job)
 * or not (throws, exit 1: the deploy's OS did not come up, and the device netboots again).
 */
export async function followFirstBoot(api: ApiClient, job: JobView, options: { quiet?: boolean } = {}): Promise<JobView> {
  if (!job.first_boot) throw new CliError(`job ${job.id} did not ask for first-boot confirmation, so no first boot is awaited`, EXIT.failed);
  const status = createStatusLine();
  while (job.first_boot?.state === 'awaiting') {
    // The time left, ticking, on a terminal only: elsewhere the line before it said the deadline.
    if (!options.quiet && status.tty) status.update(printable(awaitingLine(job, api.serverNow())));
    await sleep(POLL_MS);
    job = await api.get<JobView>(`/api/jobs/${job.id}`);
  }
  status.done();
  const firstBoot = job.first_boot!;
  if (firstBoot.state === 'confirmed') return job;
  const what = `job ${job.id} (${job.kind} on ${job.device_mac})`;
  if (firstBoot.state === 'not_confirmed') {
    const device = await deviceOf(api, job.device_mac);
    const netboot = device === undefined
      ? 'the server switches its netboot back on, so its next power cycle brings it back into provisioning'
      : device.netboot.enabled
        ? `netboot is back on for ${job.device_mac}, so its next power cycle brings it back into provisioning`
        : `${job.device_mac} still boots its eMMC (its netboot was switched off since)`;
    throw new CliError(`${what} ${firstBoot.summary}; ${netboot}`, EXIT.failed);
  }
  // Superseded: a newer job was ordered for the device, so this deploy's first boot will never be confirmed.
  throw new CliError(`${what} ${firstBoot.summary}`, EXIT.failed);
}
