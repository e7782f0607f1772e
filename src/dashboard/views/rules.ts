import type { LineState, RuleService, RuleView } from '../../rules/index.js';
import { bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

export type RuleVerb = 'enable' | 'disable' | 'up' | 'down' | 'delete' | 'pause' | 'resume';
export const RULE_VERBS: readonly RuleVerb[] = ['enable', 'disable', 'up', 'down', 'delete', 'pause', 'resume'];

/** What a button on the Rules page does, through the same service as the admin API. */
export function applyRuleVerb(rules: RuleService, verb: RuleVerb, id: number | undefined) {
  if (verb === 'pause') return rules.pause();
  if (verb === 'resume') return rules.resume();
  const rule = rules.get(id ?? 0);
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

const button = (verb: RuleVerb, label: string, id?: number, extra = '') =>
  html`<button type="button" class="button-quiet" hx-post="/dashboard/rules" hx-vals='${JSON.stringify(id === undefined ? { verb } : { verb, id })}'
    hx-target="#rules-body" hx-swap="outerHTML"${extra ? html` ${extra}` : ''}>${label}</button>`;

function lineSwitch(line: LineState): SafeHtml {
  return line.paused
    ? html`<p class="warning" id="line-state"><strong>Line paused</strong> since ${timestamp(line.paused_at!)}: no rule orders anything, and queued rule jobs wait. ${button('resume', 'Resume line')}</p>`
    : html`<p id="line-state">Line running: the first matching rule acts when a device with no job registers or polls. ${button('pause', 'Pause line')}</p>`;
}

/** The part of the page the buttons redraw. */
export function rulesBody(rules: RuleView[], line: LineState, held: ReturnType<RuleService['held']>): SafeHtml {
  return html`<div id="rules-body">
${lineSwitch(line)}
<div class="table-wrap">
  <table class="rules">
    <thead><tr><th scope="col">#</th><th scope="col">Rule</th><th scope="col">Matches</th><th scope="col">Does</th><th scope="col">Devices</th><th scope="col">Actions</th></tr></thead>
    <tbody>
      ${rules.map((rule, index) => html`<tr id="rule-${rule.id}">
        <td data-label="#">${rule.position}</td>
        <th scope="row" data-label="Rule">${rule.name}${rule.enabled ? '' : html` <span class="badge">off</span>`}</th>
        <td data-label="Matches">${matchText(rule)}</td>
        <td data-label="Does">${rule.does}${rule.retries ? `; retries ${rule.retries}` : ''}${rule.provision_again ? '; again on each registration' : ''}</td>
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
${rules.length ? '' : html`<p class="empty">No rules: a device waits for a person. Add one with <code>cm4prov rules add NAME --action deploy</code> or <code>POST /api/rules</code>.</p>`}
<h2>Held devices</h2>
${held.length
  ? html`<ul class="held">${held.map((entry) => html`<li><code>${entry.mac}</code>, by rule ${entry.rule.name}: ${entry.reason ?? 'held'}</li>`)}</ul>`
  : html`<p class="empty">No device is held.</p>`}
</div>`;
}

export function rulesPage(rules: RuleView[], line: LineState, held: ReturnType<RuleService['held']>): SafeHtml {
  return html`<h1>Rules</h1>
<p>Tried in order; the first that matches a device acts. <code>cm4prov rules test MAC</code> shows which rule would act on a device, and why the others would not.</p>
${rulesBody(rules, line, held)}`;
}
