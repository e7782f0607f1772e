import type { DeliveryView, LabelSettingsView, WebhookView } from '../../notify/index.js';
import { JOB_EVENTS } from '../../notify/index.js';
import { timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

/** How many of the newest webhook deliveries the page lists. */
export const DELIVERY_ROWS = 20;

/** The webhook table; redrawn in place when one is added, and by the page's poll. */
export function webhookTable(webhooks: WebhookView[], oob = false): SafeHtml {
  return html`<div id="webhook-table" class="table-wrap"${oob ? html` hx-swap-oob="outerHTML"` : ''}>
  <table class="webhooks">
    <thead><tr><th scope="col">ID</th><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Pending</th>
      <th scope="col">Failed</th><th scope="col">Last delivered</th><th scope="col">Last error</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>
      ${webhooks.map((hook) => html`<tr id="webhook-${hook.id}">
        <th scope="row" data-label="ID">${hook.id}</th>
        <td data-label="URL"><code>${hook.url}</code> <span class="sub">secret ${hook.secret_hint}</span></td>
        <td data-label="Events">${hook.events.length === JOB_EVENTS.length ? 'all' : hook.events.join(', ')}</td>
        <td data-label="Pending">${hook.deliveries.pending}</td>
        <td data-label="Failed">${hook.deliveries.failed}</td>
        <td data-label="Last delivered">${timestamp(hook.deliveries.last_delivered_at)}</td>
        <td data-label="Last error">${hook.deliveries.last_error ? html`<span class="error-text">${hook.deliveries.last_error}</span>` : '–'}</td>
        <td data-label="Actions"><button type="button" class="button-quiet" hx-delete="/api/webhooks/${hook.id}" hx-swap="none"
          hx-confirm="Remove webhook ${hook.id} (${hook.url}) and its pending deliveries?" data-toast="Webhook ${hook.id} removed">Remove</button></td>
      </tr>`)}
    </tbody>
  </table>
  ${webhooks.length ? '' : html`<p class="empty">No webhooks yet.</p>`}
</div>`;
}

/** What the page shows once after adding a webhook: its secret. */
export function webhookAdded(hook: WebhookView & { secret: string }, all: WebhookView[]): SafeHtml {
  return html`<p class="notice" role="status">Webhook ${hook.id} added. Its signing secret, shown only now:
  <code class="hash">${hook.secret}</code></p>${webhookTable(all, true)}`;
}

const badge = (delivery: DeliveryView) =>
  html`<span class="badge badge-${delivery.state === 'delivered' ? 'ok' : delivery.state}">${delivery.state === 'delivered' ? 'sent' : delivery.state}</span>
      ${delivery.last_error ? html`<span class="sub error-text">${delivery.last_error} (${delivery.attempts} attempts)</span>` : ''}`;

/** Send again: a failed (or sent) delivery from its first attempt; the tables are redrawn after it. */
const sendAgain = (delivery: DeliveryView, done: string) =>
  delivery.state === 'pending'
    ? ''
    : html`<button type="button" class="button-quiet" hx-post="/dashboard/notify/deliveries/${delivery.id}/retry" hx-swap="none" data-toast="${done}">Send again</button>`;

const when = (delivery: DeliveryView) => timestamp(delivery.delivered_at ?? delivery.last_attempt_at ?? delivery.created_at);

function webhookDeliveries(deliveries: DeliveryView[], oob = false): SafeHtml {
  return html`<div id="webhook-deliveries"${oob ? html` hx-swap-oob="outerHTML"` : ''}>
  <div class="table-wrap"><table class="deliveries">
    <thead><tr><th scope="col">Delivery</th><th scope="col">Webhook</th><th scope="col">Event</th><th scope="col">Job</th><th scope="col">State</th>
      <th scope="col">When</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${deliveries.map((delivery) => html`<tr id="delivery-${delivery.id}">
      <th scope="row" data-label="Delivery">${delivery.id}</th>
      <td data-label="Webhook">${delivery.webhook_id}</td>
      <td data-label="Event">${delivery.event}</td>
      <td data-label="Job"><a href="/history#job-${delivery.job_id}">${delivery.job_id}</a></td>
      <td data-label="State">${badge(delivery)}</td>
      <td data-label="When">${when(delivery)}</td>
      <td data-label="Actions">${sendAgain(delivery, `Delivery ${delivery.id} queued again`)}</td>
    </tr>`)}</tbody>
  </table></div>
  ${deliveries.length ? '' : html`<p class="empty">No deliveries yet.</p>`}
</div>`;
}

function labelDeliveries(labels: DeliveryView[], oob = false): SafeHtml {
  return html`<div id="label-deliveries"${oob ? html` hx-swap-oob="outerHTML"` : ''}>
  <div class="table-wrap"><table class="labels">
    <thead><tr><th scope="col">Job</th><th scope="col">Sent to</th><th scope="col">State</th><th scope="col">When</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${labels.map((delivery) => html`<tr id="delivery-${delivery.id}">
      <th scope="row" data-label="Job"><a href="/history#job-${delivery.job_id}">${delivery.job_id}</a></th>
      <td data-label="Sent to"><code>${delivery.target ?? ''}</code></td>
      <td data-label="State">${badge(delivery)}</td>
      <td data-label="When">${when(delivery)}</td>
      <td data-label="Actions">${sendAgain(delivery, `Label of job ${delivery.job_id} queued again`)}</td>
    </tr>`)}</tbody>
  </table></div>
  ${labels.length ? '' : html`<p class="empty">No labels sent yet.</p>`}
</div>`;
}

/** What the page's poll gets: the webhook table and both delivery tables, each swapped in place. */
export function notifyUpdate(webhooks: WebhookView[], deliveries: DeliveryView[], labels: DeliveryView[]): SafeHtml {
  return html`${webhookTable(webhooks, true)}${webhookDeliveries(deliveries, true)}${labelDeliveries(labels, true)}`;
}

/** The event (an HX-Trigger answer) that makes the page ask for its tables at once. */
export const NOTIFY_CHANGED = 'notify-changed';
/** The page asks for its tables every few seconds (the outbox has no live stream), and at once after Send again. */
const POLL = `every 5s, ${NOTIFY_CHANGED} from:body`;

export function notifyPage(webhooks: WebhookView[], deliveries: DeliveryView[], labels: LabelSettingsView): SafeHtml {
  const option = (value: boolean, yes: string, no: string) =>
    html`<option value="true" ${value ? 'selected' : ''}>${yes}</option><option value="false" ${value ? '' : 'selected'}>${no}</option>`;
  return html`<h1>Webhooks &amp; labels</h1>
<div hidden hx-get="/dashboard/notify/live" hx-trigger="${POLL}" hx-swap="none" data-poll></div>
<section aria-labelledby="webhooks-heading">
  <h2 id="webhooks-heading">Webhooks</h2>
  <p>Every job event (${JOB_EVENTS.join(', ')}) is POSTed as JSON, signed in <code>X-CM4Prov-Signature</code>; failed deliveries are retried for hours, across restarts.</p>
  ${webhookTable(webhooks)}
  <form class="filters" hx-post="/dashboard/webhooks" hx-target="#webhook-added" hx-swap="innerHTML">
    <span class="filter"><label for="webhook-url">URL</label>
      <input id="webhook-url" name="url" type="url" required maxlength="2000" placeholder="https://example.test/hook"></span>
    <span class="filter"><label for="webhook-events">Events</label>
      <input id="webhook-events" name="events" maxlength="400" placeholder="all (or job.ok,job.failed)"></span>
    <button type="submit" class="button-primary">Add webhook</button>
  </form>
  <div id="webhook-added"></div>
  <h3>Last deliveries</h3>
  ${webhookDeliveries(deliveries)}
</section>
<section aria-labelledby="labels-heading">
  <h2 id="labels-heading">Labels</h2>
  <form hx-post="/api/labels" hx-swap="none" data-toast="Label settings saved">
    <label for="label-enabled">Print a label</label>
    <select id="label-enabled" name="enabled">${option(labels.enabled, 'when a job ends ok', 'never (off)')}</select>
    <label for="label-backups">For backups too</label>
    <select id="label-backups" name="backups">${option(labels.backups, 'yes', 'no, deploys only')}</select>
    <label for="label-output">Printer or spool folder</label>
    <input id="label-output" name="output" value="${labels.output ?? ''}" maxlength="1000" placeholder="tcp://10.20.50.9:9100 or /var/spool/labels">
    <label for="label-template">ZPL template</label>
    <textarea id="label-template" name="template" rows="8" spellcheck="false">${labels.template ?? ''}</textarea>
    <p class="sub">Variables: ${labels.variables.map((name) => html`<code>{{${name}}}</code> `)}; a value the device lacks prints as “-”.</p>
    <button type="submit" class="button-primary">Save label settings</button>
  </form>
  <h3>Last labels</h3>
  ${labelDeliveries(labels.recent)}
</section>`;
}
