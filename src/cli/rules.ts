import type { Command } from 'commander';
import type { FirstBootHook } from '../first-boot/hook-files.js';
import type { LineState, RuleVerdict, RuleView } from '../rules/index.js';
import type { CommandContext } from './context.js';
import { finishOption } from './devices.js';
import { CliError, EXIT } from './errors.js';
import { confirmBootOptions, ruleConfirmFields, ruleFirstBootText } from './first-boot.js';
import { macArgument } from './mac-argument.js';
import { printJson, printTable, say, size } from './output.js';

const ACTIONS = ['deploy', 'backup-deploy', 'backup', 'hold'];
const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** "8G" (decimal, as eMMCs are sold), "7.2GiB", or bytes. */
function sizeArgument(text: string): number {
  const found = /^(\d+(?:\.\d+)?)\s*([kmgt](?:ib)?)?b?$/i.exec(text.trim());
  const bytes = found ? Math.round(Number(found[1]) * UNITS[(found[2] ?? '').toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(bytes)) throw new CliError(`'${text}' is not a size: use bytes, or a number with K, M, G, T (or KiB, MiB, GiB, TiB)`, EXIT.usage);
  return bytes;
}

function wholeArgument(text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`'${text}' is not a whole number`, EXIT.usage);
  return Number(text);
}

function emmcText(min: number | null, max: number | null): string | null {
  if (min !== null && max !== null) return `eMMC ${size(min)}..${size(max)}`;
  if (min !== null) return `eMMC >= ${size(min)}`;
  return max === null ? null : `eMMC <= ${size(max)}`;
}

function matchText(rule: RuleView): string {
  const { match } = rule;
  const parts = [
    match.mac && `mac ${match.mac}`,
    match.serial.length > 0 && `serial ${match.serial.join('|')}`,
    match.model && `model ~ ${match.model}`,
    emmcText(match.emmc_min_bytes, match.emmc_max_bytes),
    match.holds_image !== null && (match.holds_image ? 'holds image' : 'lacks image'),
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'any device';
}

const lineText = (line: LineState) => (line.paused ? `Line PAUSED since ${line.paused_at}: rules order nothing.` : 'Line running: rules act.');

export function registerRuleCommands(program: Command, context: CommandContext) {
  const rules = program.command('rules').description('zero-touch rules: what a device that registers with no job gets');

  /** A rule named by its id or its name. */
  async function ruleId(options: object, ref: string): Promise<number> {
    if (/^\d+$/.test(ref)) return Number(ref);
    const { rules: all } = await context.api(options).get<{ rules: RuleView[] }>('/api/rules');
    const found = all.find((rule) => rule.name === ref);
    if (!found) throw new CliError(`there is no rule named '${ref}' (cm4prov rules list)`, EXIT.failed);
    return found.id;
  }

  context.command(rules, 'list', 'the rules in the order they are tried, the line switch, and held devices')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const reply = await context.api(options).get<{ rules: RuleView[]; line: LineState; held: Array<{ mac: string; rule: { name: string }; reason: string }> }>('/api/rules');
      if (options.json) return printJson(reply);
      console.log(lineText(reply.line));
      printTable(
        ['#', 'ID', 'NAME', 'ON', 'MATCHES', 'DOES', 'FIRST BOOT', 'LIMIT', 'RETRIES', 'DEVICES'],
        reply.rules.map((r) => [r.position, r.id, r.name, r.enabled ? 'yes' : 'no', matchText(r), r.does, ruleFirstBootText(r), r.limit ?? 'none', r.retries, r.devices]),
        'No rules: devices wait for a person (cm4prov rules add NAME --action deploy).',
      );
      for (const held of reply.held) say(`held: ${held.mac} by rule '${held.rule.name}': ${held.reason}`);
    });

  confirmBootOptions(context.command(rules, 'add', 'add a rule at the end of the list'), true)
    .argument('<name>', 'a unique name, shown in history')
    .requiredOption('--action <action>', `what it does: ${ACTIONS.join(', ')}`)
    .option('--image <name>', 'image to deploy (default: the default image)')
    .option('--mac <pattern>', "MAC prefix ('dc:a6:32') or glob ('dc:a6:32:0?:*')")
    .option('--serial <glob...>', 'serial globs; any may match')
    .option('--model <text>', "text the model contains, e.g. 'Compute Module 4'")
    .option('--emmc-min <size>', 'smallest eMMC (8G, 7.2GiB, bytes)', sizeArgument)
    .option('--emmc-max <size>', 'largest eMMC', sizeArgument)
    .option('--holds-image <yes|no>', "only devices that already hold (yes) or do not hold (no) a verified deploy of the rule's image")
    .option('--after <boot>', 'what the device boots after an ok job: emmc or netboot')
    .option('--full-match', 'the whole eMMC must equal the image afterwards')
    .option('--profile <name>', 'profile of per-device files its deploys write (see: cm4prov profiles)')
    .option('--finish <what>', 'after an ok job, the device: reboot (default), poweroff, or wait (LED steady on)')
    .option('--limit <n>', 'at most this many devices', wholeArgument)
    .option('--retries <n>', 'order a failed job again this many times, then hold the device', wholeArgument)
    .option('--provision-again', 'act again each time a device it provisioned registers again')
    .option('--disabled', 'add it switched off')
    .option('--json', 'print JSON')
    .action(async (name: string, options: Record<string, unknown>) => {
      const action = String(options.action);
      if (!ACTIONS.includes(action)) throw new CliError(`--action takes ${ACTIONS.join(', ')}, not '${action}'`, EXIT.usage);
      const holds = options.holdsImage as string | undefined;
      if (holds !== undefined && holds !== 'yes' && holds !== 'no') throw new CliError(`--holds-image takes yes or no, not '${holds}'`, EXIT.usage);
      const body = {
        name, action: action.replace('-', '_'), image: options.image, mac: options.mac, serial: options.serial, model: options.model,
        emmc_min_bytes: options.emmcMin, emmc_max_bytes: options.emmcMax, holds_image: holds === undefined ? undefined : holds === 'yes',
        after: options.after, full_match: options.fullMatch === true || undefined, limit: options.limit, retries: options.retries,
        provision_again: options.provisionAgain === true || undefined, enabled: options.disabled ? false : undefined,
        finish: finishOption(options.finish as string | undefined),
        profile: options.profile as string | undefined,
        ...ruleConfirmFields(options as { confirmBoot?: boolean; confirmTimeout?: number; firstBootHook?: FirstBootHook }),
      };
      const rule = await context.api(options).post<RuleView>('/api/rules', body);
      if (options.json) printJson(rule);
      else say(`rule ${rule.id} '${rule.name}' added at position ${rule.position}: ${matchText(rule)} → ${rule.does}`);
    });

  confirmBootOptions(context.command(rules, 'edit', "change a rule's first-boot confirmation (other fields: PATCH /api/rules/:id)"), true)
    .argument('<rule>', 'rule id or name')
    .option('--json', 'print JSON')
    .action(async (ref: string, options: { confirmBoot?: boolean; confirmTimeout?: number; firstBootHook?: FirstBootHook; json?: boolean }) => {
      const body = ruleConfirmFields(options);
      if (Object.values(body).every((value) => value === undefined)) {
        throw new CliError('rules edit needs something to change: --confirm-boot, --no-confirm-boot, --confirm-timeout or --first-boot-hook', EXIT.usage);
      }
      const rule = await context.api(options).patch<RuleView>(`/api/rules/${await ruleId(options, ref)}`, body);
      if (options.json) return printJson(rule);
      say(`rule '${rule.name}' changed: first boot ${ruleFirstBootText(rule)}`);
    });

  context.command(rules, 'show', 'one rule in full: what it matches and does, its first-boot confirmation, its limits')
    .argument('<rule>', 'rule id or name')
    .option('--json', 'print JSON')
    .action(async (ref: string, options: { json?: boolean }) => {
      const rule = await context.api(options).get<RuleView>(`/api/rules/${await ruleId(options, ref)}`);
      if (options.json) return printJson(rule);
      say(`Rule ${rule.id} '${rule.name}', position ${rule.position}, ${rule.enabled ? 'on' : 'off'}: ${matchText(rule)} → ${rule.does}`);
      say(`First boot: ${ruleFirstBootText(rule)}`);
      say(`Limit: ${rule.limit ?? 'none'}; retries: ${rule.retries}; devices taken: ${rule.devices}; provision again: ${rule.provision_again ? 'yes' : 'no'}`);
    });

  for (const [verb, path, done] of [['enable', 'enable', 'enabled'], ['disable', 'disable', 'disabled']] as const) {
    context.command(rules, verb, `switch a rule ${verb === 'enable' ? 'on' : 'off'}`)
      .argument('<rule>', 'rule id or name')
      .action(async (ref: string, options: object) => {
        const rule = await context.api(options).post<RuleView>(`/api/rules/${await ruleId(options, ref)}/${path}`);
        say(`rule '${rule.name}' ${done}`);
      });
  }

  context.command(rules, 'rm', 'delete a rule (history keeps its name)')
    .argument('<rule>', 'rule id or name')
    .action(async (ref: string, options: object) => {
      const rule = await context.api(options).delete<RuleView>(`/api/rules/${await ruleId(options, ref)}`);
      say(`rule '${rule.name}' deleted`);
    });

  context.command(rules, 'move', 'put a rule at a position (1 is tried first)')
    .argument('<rule>', 'rule id or name')
    .argument('<position>', 'its new position', wholeArgument)
    .action(async (ref: string, position: number, options: object) => {
      const reply = await context.api(options).post<{ rules: RuleView[] }>(`/api/rules/${await ruleId(options, ref)}/move`, { position });
      for (const rule of reply.rules) say(`${rule.position}. ${rule.name}`);
    });

  context.command(rules, 'test', 'which rule would act on a device now, and why the others would not')
    .argument('<mac>', 'the device', macArgument)
    .option('--json', 'print JSON')
    .action(async (mac: string, options: { json?: boolean }) => {
      const reply = await context.api(options).get<{ paused: boolean; active_job: number | null; acting: string | null; rules: RuleVerdict[] }>(`/api/rules/test?mac=${encodeURIComponent(mac)}`);
      if (options.json) return printJson(reply);
      for (const verdict of reply.rules) say(`${verdict.acts ? '→' : ' '} ${verdict.rule.position}. ${verdict.rule.name}: ${verdict.reason}`);
      if (reply.rules.length === 0) console.log('No rules.');
      if (reply.active_job !== null) say(`The device has job ${reply.active_job}: no rule acts while it is active.`);
      else if (reply.paused) say(`The line is paused: ${reply.acting ? `rule '${reply.acting}' would act once it resumes` : 'no rule would act anyway'}.`);
      else say(reply.acting ? `Rule '${reply.acting}' acts when the device next registers or polls.` : 'No rule acts: the device waits for a person.');
    });

  const line = program.command('line').description('the Pause line switch: stops every rule at once');
  for (const [verb, describe] of [['pause', 'stop all rules; queued rule work stays queued'], ['resume', 'let the rules act again'], ['status', 'is the line paused?']] as const) {
    context.command(line, verb, describe)
      .option('--json', 'print JSON')
      .action(async (options: { json?: boolean }) => {
        const api = context.api(options);
        const state = verb === 'status' ? await api.get<LineState>('/api/line') : await api.post<LineState>(`/api/line/${verb}`);
        if (options.json) printJson(state);
        else console.log(lineText(state));
      });
  }
}
