import type { Db } from '../db/open.js';

export interface WebhookRow {
  id: number;
  url: string;
  secret: string;
  /** JSON array of event names. */
  events: string;
  created_at: number;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface OutboxRow {
  id: number;
  /** null: a label. */
  webhook_id: number | null;
  event: string;
  job_id: number;
  target: string | null;
  body: string;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: number;
  last_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  delivered_at: number | null;
  created_at: number;
}

export interface WebhookStats {
  pending: number;
  failed: number;
  last_delivered_at: number | null;
  last_attempt_at: number | null;
  last_error: string | null;
}

export interface LabelSettingsRow {
  enabled: number;
  template: string | null;
  output: string | null;
  backups: number;
  /** When labels were last switched on, or backups added to them (reconcile.ts); null while off. */
  enabled_at: number | null;
}

export interface NewDelivery {
  webhookId: number | null;
  event: string;
  jobId: number;
  target: string | null;
  body: string;
}

/** SQL for webhooks, the outbox of deliveries (webhook events and labels) and label settings. */
export function createNotifyStore(db: Db) {
  const insertWebhook = db.prepare<{ url: string; secret: string; events: string; now: number }>(
    'INSERT INTO webhooks (url, secret, events, created_at) VALUES (@url, @secret, @events, @now)',
  );
  const webhookById = db.prepare<[number], WebhookRow>('SELECT * FROM webhooks WHERE id = ?');
  const allWebhooks = db.prepare<[], WebhookRow>('SELECT * FROM webhooks ORDER BY id');
  const deleteWebhook = db.prepare<[number]>('DELETE FROM webhooks WHERE id = ?');
  const stats = db.prepare<{ id: number }, WebhookStats>(`
    SELECT
      (SELECT count(*) FROM outbox WHERE webhook_id = @id AND state = 'pending') AS pending,
      (SELECT count(*) FROM outbox WHERE webhook_id = @id AND state = 'failed') AS failed,
      (SELECT max(delivered_at) FROM outbox WHERE webhook_id = @id) AS last_delivered_at,
      (SELECT max(last_attempt_at) FROM outbox WHERE webhook_id = @id) AS last_attempt_at,
      (SELECT last_error FROM outbox WHERE webhook_id = @id AND last_error IS NOT NULL AND state <> 'delivered'
        ORDER BY last_attempt_at DESC LIMIT 1) AS last_error`);
  const insertDelivery = db.prepare<NewDelivery & { now: number }>(`
    INSERT OR IGNORE INTO outbox (webhook_id, event, job_id, target, body, next_attempt_at, created_at)
    VALUES (@webhookId, @event, @jobId, @target, @body, @now, @now)`);
  const alreadyQueued = db.prepare<{ jobId: number; event: string }, { webhook_id: number | null }>(
    'SELECT webhook_id FROM outbox WHERE job_id = @jobId AND event = @event',
  );
  const deliveryById = db.prepare<[number], OutboxRow>('SELECT * FROM outbox WHERE id = ?');
  // The oldest pending row of each queue (a webhook's, or the labels'): order within a queue holds.
  const heads = db.prepare<[], OutboxRow>(`
    SELECT * FROM outbox WHERE id IN (SELECT min(id) FROM outbox WHERE state = 'pending' GROUP BY coalesce(webhook_id, 0))`);
  const ofWebhook = db.prepare<{ webhookId: number; limit: number }, OutboxRow>(
    'SELECT * FROM outbox WHERE webhook_id = @webhookId ORDER BY id DESC LIMIT @limit',
  );
  const labels = db.prepare<{ limit: number }, OutboxRow>('SELECT * FROM outbox WHERE webhook_id IS NULL ORDER BY id DESC LIMIT @limit');
  const ofAllWebhooks = db.prepare<{ limit: number }, OutboxRow>('SELECT * FROM outbox WHERE webhook_id IS NOT NULL ORDER BY id DESC LIMIT @limit');
  // Rows are written in time order, so the newest id holds (near enough) the newest time.
  const newest = db.prepare<[], { created_at: number }>('SELECT created_at FROM outbox ORDER BY id DESC LIMIT 1');
  const delivered = db.prepare<{ id: number; now: number; status: number | null }>(`
    UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_attempt_at = @now, last_status = @status,
      last_error = NULL, delivered_at = @now WHERE id = @id AND state = 'pending'`);
  const attemptFailed = db.prepare<{ id: number; now: number; status: number | null; error: string; next: number; state: DeliveryState }>(`
    UPDATE outbox SET state = @state, attempts = attempts + 1, last_attempt_at = @now, last_status = @status,
      last_error = @error, next_attempt_at = @next WHERE id = @id AND state = 'pending'`);
  const requeue = db.prepare<{ id: number; now: number }>(
    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = @now WHERE id = @id AND state <> 'pending'",
  );
  const labelSettings = db.prepare<[], LabelSettingsRow>('SELECT enabled, template, output, backups, enabled_at FROM label_settings WHERE id = 1');
  const saveLabels = db.prepare<LabelSettingsRow>(
    'UPDATE label_settings SET enabled = @enabled, template = @template, output = @output, backups = @backups, enabled_at = @enabled_at WHERE id = 1',
  );

  return {
    /** Runs `work` in one SQLite transaction. */
    transaction: (work: () => void) => db.transaction(work)(),
    addWebhook(url: string, secret: string, events: string[], now: number): WebhookRow {
      const { lastInsertRowid } = insertWebhook.run({ url, secret, events: JSON.stringify(events), now });
      return webhookById.get(Number(lastInsertRowid))!;
    },
    webhook: (id: number) => webhookById.get(id),
    webhooks: () => allWebhooks.all(),
    removeWebhook: (id: number) => deleteWebhook.run(id).changes > 0,
    stats: (id: number) => stats.get({ id })!,
    /** Queues one delivery; its id, or undefined when that (webhook, job, event) was queued before. */
    enqueue(delivery: NewDelivery, now: number): number | undefined {
      const { changes, lastInsertRowid } = insertDelivery.run({ ...delivery, now });
      return changes > 0 ? Number(lastInsertRowid) : undefined;
    },
    /** The webhooks (null: labels) that already have this job's event queued. */
    queuedFor: (jobId: number, event: string) => new Set(alreadyQueued.all({ jobId, event }).map((row) => row.webhook_id)),
    delivery: (id: number) => deliveryById.get(id),
    heads: () => heads.all(),
    deliveriesOf: (webhookId: number, limit: number) => ofWebhook.all({ webhookId, limit }),
    labelDeliveries: (limit: number) => labels.all({ limit }),
    /** The newest deliveries of all webhooks, newest first. */
    webhookDeliveries: (limit: number) => ofAllWebhooks.all({ limit }),
    /** When the newest outbox row was written; undefined when there is none. */
    newestQueuedAt: () => newest.get()?.created_at,
    markDelivered: (id: number, now: number, status: number | null) => delivered.run({ id, now, status }),
    markAttemptFailed: (id: number, outcome: { now: number; status: number | null; error: string; next: number; giveUp: boolean }) =>
      attemptFailed.run({ id, now: outcome.now, status: outcome.status, error: outcome.error, next: outcome.next, state: outcome.giveUp ? 'failed' : 'pending' }),
    requeue: (id: number, now: number) => requeue.run({ id, now }).changes > 0,
    labelSettings: () => labelSettings.get()!,
    saveLabelSettings: (settings: LabelSettingsRow) => saveLabels.run(settings),
  };
}

export type NotifyStore = ReturnType<typeof createNotifyStore>;
