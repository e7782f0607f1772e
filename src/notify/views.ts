import type { OutboxRow, WebhookRow, WebhookStats } from './store.js';
import { secretHint } from './signing.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export interface WebhookView {
  id: number;
  url: string;
  events: string[];
  /** The secret's last characters; the secret itself is shown only when the webhook is made. */
  secret_hint: string;
  created_at: string;
  deliveries: { pending: number; failed: number; last_delivered_at: string | null; last_attempt_at: string | null; last_error: string | null };
}

export function toWebhookView(hook: WebhookRow, stats: WebhookStats): WebhookView {
  return {
    id: hook.id,
    url: hook.url,
    events: JSON.parse(hook.events) as string[],
    secret_hint: secretHint(hook.secret),
    created_at: iso(hook.created_at)!,
    deliveries: {
      pending: stats.pending,
      failed: stats.failed,
      last_delivered_at: iso(stats.last_delivered_at),
      last_attempt_at: iso(stats.last_attempt_at),
      last_error: stats.last_error,
    },
  };
}

export interface DeliveryView {
  id: number;
  kind: 'webhook' | 'label';
  webhook_id: number | null;
  event: string;
  job_id: number;
  /** Labels: the printer (tcp://host:port) or spool folder it goes to. */
  target: string | null;
  /** pending: not yet sent (or retried after next_attempt_at); delivered: 2xx (a label: printer or file took it); failed: given up. */
  state: OutboxRow['state'];
  attempts: number;
  next_attempt_at: string | null;
  last_attempt_at: string | null;
  last_status: number | null;
  last_error: string | null;
  delivered_at: string | null;
  created_at: string;
}

export function toDeliveryView(row: OutboxRow): DeliveryView {
  return {
    id: row.id,
    kind: row.webhook_id === null ? 'label' : 'webhook',
    webhook_id: row.webhook_id,
    event: row.event,
    job_id: row.job_id,
    target: row.target,
    state: row.state,
    attempts: row.attempts,
    next_attempt_at: row.state === 'pending' ? iso(row.next_attempt_at) : null,
    last_attempt_at: iso(row.last_attempt_at),
    last_status: row.last_status,
    last_error: row.last_error,
    delivered_at: iso(row.delivered_at),
    created_at: iso(row.created_at)!,
  };
}
