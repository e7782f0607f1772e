import { sql } from 'kysely';
import type { Queries } from '../db/database.js';

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

const LABEL_SETTINGS = ['enabled', 'template', 'output', 'backups', 'enabled_at'] as const;

/** SQL for webhooks, the outbox of deliveries (webhook events and labels) and label settings. */
export function createNotifyStore(db: Queries) {
  const outbox = () => db.selectFrom('outbox').selectAll();
  const newestFirst = (query: ReturnType<typeof outbox>, limit: number) => query.orderBy('id', 'desc').limit(limit).execute() as Promise<OutboxRow[]>;
  const changedOne = (result: { numUpdatedRows: bigint }) => Number(result.numUpdatedRows) === 1;

  return {
    addWebhook: (url: string, secret: string, events: string[], now: number): Promise<WebhookRow> =>
      db.insertInto('webhooks').values({ url, secret, events: JSON.stringify(events), created_at: now }).returningAll().executeTakeFirstOrThrow(),
    webhook: (id: number): Promise<WebhookRow | undefined> => db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst(),
    webhooks: (): Promise<WebhookRow[]> => db.selectFrom('webhooks').selectAll().orderBy('id').execute(),
    /** false when there was no such webhook. Its deliveries go with it (ON DELETE CASCADE). */
    async removeWebhook(id: number): Promise<boolean> {
      const result = await db.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) === 1;
    },
    async stats(id: number): Promise<WebhookStats> {
      const { rows } = await sql<WebhookStats>`SELECT
          (SELECT count(*) FROM outbox WHERE webhook_id = ${id} AND state = 'pending') AS pending,
          (SELECT count(*) FROM outbox WHERE webhook_id = ${id} AND state = 'failed') AS failed,
          (SELECT max(delivered_at) FROM outbox WHERE webhook_id = ${id}) AS last_delivered_at,
          (SELECT max(last_attempt_at) FROM outbox WHERE webhook_id = ${id}) AS last_attempt_at,
          (SELECT last_error FROM outbox WHERE webhook_id = ${id} AND last_error IS NOT NULL AND state <> 'delivered'
            ORDER BY last_attempt_at DESC LIMIT 1) AS last_error`.execute(db);
      return rows[0]!;
    },
    /**
     * Queues one delivery; its id, or undefined when that (webhook, job, event) was queued before:
     * the unique index outbox_once (migrations/0011) decides, so two writers racing both succeed
     * and one row results. PostgreSQL infers a partial expression index only from the very same
     * expressions and predicate, written out here; reprints are outside the index and may repeat.
     */
    async enqueue(delivery: NewDelivery, now: number): Promise<number | undefined> {
      const { webhookId, event, jobId, target, body } = delivery;
      const row = await db
        .insertInto('outbox')
        .values({ webhook_id: webhookId, event, job_id: jobId, target, body, next_attempt_at: now, created_at: now })
        .onConflict((oc) => oc.expression(sql`coalesce(webhook_id, 0), job_id, event`).where(sql<boolean>`event <> 'label.reprint'`).doNothing())
        .returning('id')
        .executeTakeFirst();
      return row?.id;
    },
    /** The webhooks (null: labels) that already have this job's event queued. */
    async queuedFor(jobId: number, event: string): Promise<Set<number | null>> {
      const rows = await db.selectFrom('outbox').select('webhook_id').where('job_id', '=', jobId).where('event', '=', event).execute();
      return new Set(rows.map((row) => row.webhook_id));
    },
    delivery: (id: number) => outbox().where('id', '=', id).executeTakeFirst() as Promise<OutboxRow | undefined>,
    /** The oldest pending row of each queue (a webhook's, or the labels'): order within a queue holds. */
    heads: () =>
      outbox()
        .where('id', 'in', db.selectFrom('outbox').select((eb) => eb.fn.min<number>('id').as('id')).where('state', '=', 'pending').groupBy(sql`coalesce(webhook_id, 0)`))
        .orderBy('id')
        .execute() as Promise<OutboxRow[]>,
    deliveriesOf: (webhookId: number, limit: number) => newestFirst(outbox().where('webhook_id', '=', webhookId), limit),
    labelDeliveries: (limit: number) => newestFirst(outbox().where('webhook_id', 'is', null), limit),
    /** The newest deliveries of all webhooks, newest first. */
    webhookDeliveries: (limit: number) => newestFirst(outbox().where('webhook_id', 'is not', null), limit),
    /** When the newest outbox row was written; undefined when there is none. Rows are written in time order, so the newest id holds (near enough) the newest time. */
    async newestQueuedAt(): Promise<number | undefined> {
      const row = await db.selectFrom('outbox').select('created_at').orderBy('id', 'desc').limit(1).executeTakeFirst();
      return row?.created_at;
    },
    /**
     * Moves a pending delivery's due time from `from` to `to`; false when it is no longer pending
     * at `from` (delivered, given up, or moved by another station meanwhile). The worker claims a
     * delivery this way before sending it, so two stations never send the same one at once.
     */
    reschedule: async (id: number, from: number, to: number) =>
      changedOne(await db.updateTable('outbox').set({ next_attempt_at: to }).where('id', '=', id).where('state', '=', 'pending').where('next_attempt_at', '=', from).executeTakeFirst()),
    markDelivered: async (id: number, now: number, status: number | null) =>
      changedOne(
        await db
          .updateTable('outbox')
          .set((eb) => ({ state: 'delivered', attempts: eb('attempts', '+', 1), last_attempt_at: now, last_status: status, last_error: null, delivered_at: now }))
          .where('id', '=', id)
          .where('state', '=', 'pending')
          .executeTakeFirst(),
      ),
    markAttemptFailed: async (id: number, outcome: { now: number; status: number | null; error: string; next: number; giveUp: boolean }) =>
      changedOne(
        await db
          .updateTable('outbox')
          .set((eb) => ({
            state: outcome.giveUp ? 'failed' : 'pending',
            attempts: eb('attempts', '+', 1),
            last_attempt_at: outcome.now,
            last_status: outcome.status,
            last_error: outcome.error,
            next_attempt_at: outcome.next,
          }))
          .where('id', '=', id)
          .where('state', '=', 'pending')
          .executeTakeFirst(),
      ),
    /** Sends a delivered or given-up delivery again from its first attempt; false when it is pending (or gone). */
    requeue: async (id: number, now: number) =>
      changedOne(await db.updateTable('outbox').set({ state: 'pending', attempts: 0, next_attempt_at: now }).where('id', '=', id).where('state', '<>', 'pending').executeTakeFirst()),
    labelSettings: (): Promise<LabelSettingsRow> => db.selectFrom('label_settings').select(LABEL_SETTINGS).where('id', '=', 1).executeTakeFirstOrThrow(),
    /**
     * The label settings, their row locked until the transaction this store runs in ends: a read
     * that is about to be written back. A write that changes nothing takes the lock on both databases
     * (SQLite has no SELECT … FOR UPDATE; its write lock covers the whole file).
     */
    labelSettingsForUpdate: (): Promise<LabelSettingsRow> =>
      db.updateTable('label_settings').set((eb) => ({ enabled: eb.ref('enabled') })).where('id', '=', 1).returning(LABEL_SETTINGS).executeTakeFirstOrThrow(),
    saveLabelSettings: async (settings: LabelSettingsRow) => {
      await db.updateTable('label_settings').set(settings).where('id', '=', 1).execute();
    },
  };
}

export type NotifyStore = ReturnType<typeof createNotifyStore>;
