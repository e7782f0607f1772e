import type { LineState, RuleService, RuleView } from '../../rules/index.js';
import type { RuleBody } from '../../rules/schemas.js';
import { bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';
import { timeoutWords } from '../../first-boot/view.js';
import { DEFAULT_CONFIRM_MINUTES, FINISH_CHOICES, HOOK_CHOICES, hookOptions, profileOptions, type ProfileChoice } from './devices.js';

type HeldDevice = Awaited<ReturnType<RuleService['held']>>[number];

export type RuleVerb = 'enable' | 'disable' | 'up' | 'down' | 'delete' | 'pause' | 'resume';
export const RULE_VERBS: readonly RuleVerb[] = ['enable', 'disable', 'up', 'down', 'delete', 'pause', 'resume'];

/** What a button on the Rules page does, through the same service as the admin API. */
export async function applyRuleVerb(rules: RuleService, verb: RuleVerb, id: number | undefined): Promise<unknown> {
  if (verb === 'pause') return rules.pause();
  if (verb === 'resume') return rules.resume();
  const rule = await rules.get(id ?? 0);
  if (verb === 'enable' || verb === 'disable') return rules.update(rule.id, { enabled: verb === 'enable' });
  if (verb === 'delete') return rules.remove(rule.id);
  return rules.move(rule.id, verb === 'up' ? rule.position - 1 : rule.position + 1);
}

function matchText(rule: RuleView): string {
  const { match } = rule;
  const parts = [
    match.mac && `MAC ${match.mac}`,
    match.serial.length > 0 && `serial ${match.serial.join(' or ')}`,
    match.model && `model contains "${match.model}"`,
    match.emmc_min_bytes !== null && `eMMC at least ${bytes(match.emmc_min_bytes)}`,
    match.emmc_max_bytes !== null && `eMMC at most ${bytes(match.emmc_max_bytes)}`,
    match.holds_image !== null && (match.holds_image ? 'already holds the image' : 'does not hold the image yet'),
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'any device';
}

/**
 * The "Add a rule" form as posted: serial globs come as one comma-separated text, and the first
 * boot's timeout in minutes.
 */
export type RuleForm = Omit<RuleBody, 'serial' | 'confirm_timeout'> & { serial?: string; confirm_timeout_minutes?: number };

const deploys = (action: RuleBody['action'] | undefined) => action === 'deploy' || action === 'backup_deploy';

/**
 * The API's rule body from the form: "a*, b*" becomes ["a*", "b*"]; empty fields were left out by
 * the form parser. The form always shows "Confirm first boot": left unticked it says false (the
 * API's default for a deploy rule is true); its timeout and hook count only when it is ticked,
 * and only for a rule that deploys. The default timeout (10 min) is left to the rule's default.
 */
export function ruleFromForm(form: RuleForm): RuleBody {
  const { serial, confirm_boot: confirm, confirm_timeout_minutes: minutes, first_boot_hook: hook, ...rest } = form;
  const globs = serial?.split(',').map((glob) => glob.trim()).filter(Boolean) ?? [];
  const body: RuleBody = globs.length ? { ...rest, serial: globs } : rest;
  if (!deploys(form.action)) return body;
  if (confirm !== true) return { ...body, confirm_boot: false };
  return {
    ...body,
    confirm_boot: true,
    ...(minutes === undefined || minutes === DEFAULT_CONFIRM_MINUTES ? {} : { confirm_timeout: minutes * 60 }),
    ...(hook === undefined ? {} : { first_boot_hook: hook }),
  };
}

/** The Rules list's "First boot": how long its deploys wait for the call, and which hook they write. */
function firstBootText(rule: RuleView): string {
  if (!deploys(rule.action)) return '–';
  if (!rule.confirm_boot) return 'not asked for';
  const hook = HOOK_CHOICES.find((choice) => choice.value === rule.first_boot_hook);
  return `awaited up to ${timeoutWords(rule.confirm_timeout ?? DEFAULT_CONFIRM_MINUTES * 60)}; hook: ${hook?.label ?? rule.first_boot_hook}`;
}

/** What a rule does after its match: the action, then the options that change what a device ends up with. */
function doesText(rule: RuleView): string {
  const finish = FINISH_CHOICES.find((choice) => choice.value === rule.finish);
  return [
    rule.does,
    // A rule that holds orders no job: nothing is written and nothing follows a success.
    rule.action !== 'hold' && rule.profile && `per-device files '${rule.profile}'`,
    rule.action !== 'hold' && finish && `then the device ${finish.label}`,
    rule.retries && `retries ${rule.retries}`,
    rule.provision_again && 'again on each registration',
  ].filter(Boolean).join('; ');
}

const button = (verb: RuleVerb, label: string, id?: number, extra = '') =>
  html`<button type="button" class="button-quiet" hx-post="/dashboard/rules" hx-vals='${JSON.stringify(id === undefined ? { verb } : { verb, id })}'
    hx-target="#rules-body" hx-swap="outerHTML"${extra ? html` ${extra}` : ''}>${label}</button>`;

function lineSwitch(line: LineState): SafeHtml {
  return line.paused
    ? html`<p class="warning" id="line-state"><strong>Line paused</strong> since ${timestamp(line.paused_at!)}: no rule orders anything, and queued rule jobs wait. ${button('resume', 'Resume line')}</p>`
    : html`<p id="line-state">Line running: the first matching rule acts when a device with no job registers or polls. ${button('pause', 'Pause line')}</p>`;
}

/** The part of the page the buttons redraw. */
export function rulesBody(rules: RuleView[], line: LineState, held: HeldDevice[]): SafeHtml {
  return html`<div id="rules-body">
${lineSwitch(line)}
<div class="table-wrap">
  <table class="rules">
    <thead><tr><th scope="col">#</th><th scope="col">Rule</th><th scope="col">Matches</th><th scope="col">Does</th><th scope="col">First boot</th><th scope="col">Devices</th><th scope="col">Actions</th></tr></thead>
    <tbody>
      ${rules.map((rule, index) => html`<tr id="rule-${rule.id}">
        <td data-label="#">${rule.position}</td>
        <th scope="row" data-label="Rule">${rule.name}${rule.enabled ? '' : html` <span class="badge">off</span>`}</th>
        <td data-label="Matches">${matchText(rule)}</td>
        <td data-label="Does">${doesText(rule)}</td>
        <td data-label="First boot" data-rule-first-boot="${deploys(rule.action) ? (rule.confirm_boot ? 'confirm' : 'off') : 'none'}">${firstBootText(rule)}</td>
        <td data-label="Devices">${rule.devices}${rule.limit === null ? '' : ` of ${rule.limit}`}</td>
        <td data-label="Actions">
          ${rule.enabled ? button('disable', 'Turn off', rule.id) : button('enable', 'Turn on', rule.id)}
          ${index > 0 ? button('up', 'Up', rule.id) : ''}
          ${index < rules.length - 1 ? button('down', 'Down', rule.id) : ''}
          ${button('delete', 'Delete', rule.id, `hx-confirm="Delete rule '${rule.name}'? Its history stays." data-confirm-yes="Delete it"`)}
        </td>
      </tr>`)}
    </tbody>
  </table>
</div>
${rules.length ? '' : html`<p class="empty">No rules: a device waits for a person. Add one below, with <code>cm4prov rules add NAME --action deploy</code> or <code>POST /api/rules</code>.</p>`}
<h2>Held devices</h2>
${held.length
  ? html`<ul class="held">${held.map((entry) => html`<li><code>${entry.mac}</code>, by rule ${entry.rule.name}: ${entry.reason ?? 'held'}</li>`)}</ul>`
  : html`<p class="empty">No device is held.</p>`}
</div>`;
}

/** What the "Add a rule" form offers: the images a rule may deploy (by name) and the profiles. */
export interface RuleChoices {
  images: Array<{ name: string; default: boolean }>;
  profiles: readonly ProfileChoice[];
}

const ACTIONS: Array<[RuleBody['action'], string]> = [
  ['deploy', 'deploy'],
  ['backup_deploy', 'back up, then deploy'],
  ['backup', 'back up'],
  ['hold', 'hold for a person'],
];

/** Adds a rule through the same service as POST /api/rules; a refusal shows the API's sentence in the form. */
function addRuleForm(choices: RuleChoices): SafeHtml {
  const defaultImage = choices.images.find((image) => image.default);
  return html`<section aria-labelledby="add-rule-heading">
<h2 id="add-rule-heading">Add a rule</h2>
<form id="rule-add" class="upload-form form-grid" hx-post="/dashboard/rules/add" hx-target="#rules-body" hx-swap="outerHTML"
  data-reset-on-success data-toast="Rule added">
  <label for="rule-name">Name</label>
  <input id="rule-name" name="name" required maxlength="64" autocomplete="off">
  <label for="rule-action">Does</label>
  <select id="rule-action" name="action">${ACTIONS.map(([value, label]) => html`<option value="${value}">${label}</option>`)}</select>
  <label for="rule-image">Image</label>
  <select id="rule-image" name="image" aria-describedby="rule-image-hint">
    <option value="" selected>the default image${defaultImage ? ` (now ${defaultImage.name})` : ''}</option>
    ${choices.images.map((image) => html`<option value="${image.name}">${image.name}</option>`)}
  </select>
  <p id="rule-image-hint" class="hint">Only for deploying; a rule that backs up or holds names no image.</p>
  ${choices.profiles.length
    ? html`<label for="rule-profile">Per-device files</label>
  <select id="rule-profile" name="profile">${profileOptions(choices.profiles)}</select>`
    : ''}
  <label for="rule-mac">MAC</label>
  <input id="rule-mac" name="mac" maxlength="17" autocomplete="off" placeholder="dc:a6:32 or dc:a6:32:0?:*" aria-describedby="rule-match-hint">
  <label for="rule-serial">Serials</label>
  <input id="rule-serial" name="serial" maxlength="4000" autocomplete="off" placeholder="10000000c0ffee*, 10000000beef*" aria-describedby="rule-serial-hint">
  <p id="rule-serial-hint" class="hint">Globs, separated by commas; any of them may match.</p>
  <label for="rule-model">Model contains</label>
  <input id="rule-model" name="model" maxlength="200" autocomplete="off" placeholder="Compute Module 4" aria-describedby="rule-match-hint">
  <p id="rule-match-hint" class="hint">A field left empty matches any device; one the device has not reported matches none.</p>
  <label for="rule-limit">Limit</label>
  <input id="rule-limit" name="limit" type="number" min="1" max="1000000" step="1" placeholder="no limit" aria-describedby="rule-limit-hint">
  <p id="rule-limit-hint" class="hint">At most this many devices.</p>
  <label for="rule-retries">Retries</label>
  <input id="rule-retries" name="retries" type="number" min="0" max="100" step="1" value="0" aria-describedby="rule-retries-hint">
  <p id="rule-retries-hint" class="hint">A failed job is ordered again this many times; then the device is held.</p>
  <label for="rule-finish">After success the device</label>
  <select id="rule-finish" name="finish">${FINISH_CHOICES.map((choice) => html`<option value="${choice.value}" ${choice.value === 'reboot' ? 'selected' : ''}>${choice.label}${choice.value === 'reboot' ? ' (default)' : ''}</option>`)}</select>
  <div class="form-grid-control checkbox-line">
    <input id="rule-confirm-boot" name="confirm_boot" type="checkbox" value="true" checked
      data-enables="rule-confirm-timeout rule-first-boot-hook" aria-describedby="rule-confirm-hint"><label for="rule-confirm-boot">Confirm first boot</label>
  </div>
  <p id="rule-confirm-hint" class="hint">Its deploys wait for the installed OS to call back, and a device counts as provisioned only then. No call in time: the device netboots again, and the rule retries or holds it.</p>
  <label for="rule-confirm-timeout">Timeout (minutes)</label>
  <input id="rule-confirm-timeout" name="confirm_timeout_minutes" type="number" min="1" max="1440" step="1" value="${DEFAULT_CONFIRM_MINUTES}">
  <label for="rule-first-boot-hook">First-boot hook</label>
  <select id="rule-first-boot-hook" name="first_boot_hook">${hookOptions()}</select>
  <p class="form-error form-grid-control" data-dialog-error role="alert" hidden></p>
  <div class="form-grid-control"><button type="submit" class="button-primary">Add rule</button></div>
</form>
</section>`;
}

export function rulesPage(rules: RuleView[], line: LineState, held: HeldDevice[], choices: RuleChoices): SafeHtml {
  return html`<h1>Rules</h1>
<p>Tried in order; the first that matches a device acts. <code>cm4prov rules test MAC</code> shows which rule would act on a device, and why the others would not.</p>
${rulesBody(rules, line, held)}
${addRuleForm(choices)}`;
}
