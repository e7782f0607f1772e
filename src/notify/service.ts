import type { Logger } from 'pino';
import { inTransaction, type Queries } from '../db/database.js';
import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { eventOf, type JobChange, type JobEvent } from './events.js';
import { createLabels, queueLabelOfDone } from './labels.js';
import { reconcile } from './reconcile.js';
import { createNotifyStore } from './store.js';
import { awaitingEvent, createWebhooks, queueJobEvent } from './webhooks.js';
import { createDeliveryWorker } from './worker.js';

export interface NotifyDeps {
  db: Queries;
  bus: EventBus;
  jobs: JobService;
  devices: DeviceStore;
  clock: Clock;
  log: Logger;
}

/** A job state after which a job may be done, and labelled (a confirmed first boot included). */
const mayBeDone = (state: string) => state === 'ok' || state === 'confirmed';

/**
 * Webhooks and labels: job events become outbox rows the moment they happen, and a worker
 * sends them (retrying with back-off) whenever the server runs. Call `start()` once the server
 * is up (it first queues what a crash kept from the outbox: reconcile.ts) and `stop()` before
 * the database closes.
 */
export function createNotifyService(deps: NotifyDeps) {
  const { db, bus, jobs, devices, clock, log } = deps;
  const store = createNotifyStore(db);
  const worker = createDeliveryWorker({ store, clock, log });
  const webhooks = createWebhooks({ store, clock, kick: worker.kick });
  const labels = createLabels({ db, jobs, devices, clock, kick: worker.kick });
  /** Job events being queued by the listener below: stop() waits for them. */
  const queueing = new Set<Promise<void>>();
  /** recordJobChange wrote rows that the worker has not been told of (it is told after the commit). */
  let unannounced = false;
  let starting: Promise<void> | undefined;

  /**
   * Writes the outbox rows of a job change (its webhook deliveries; its label when it is done)
   * with `tx`, and with nothing else: a caller that changes the job in the same transaction gets
   * the job change and its notifications all or none. Rows written before (by this or another
   * station) are not written again. The worker hears of them at the next 'job.changed', which
   * must be emitted after the transaction committed. All it needs comes in `change`: nothing may
   * be read outside an open transaction (with SQLite, that read and the transaction wait for each other).
   */
  async function recordJobChange(tx: Queries, change: JobChange): Promise<void> {
    const event = eventOf(change.state);
    if (!event) return;
    const outbox = createNotifyStore(tx);
    const now = clock.now();
    const queued = await queueJobEvent(outbox, event, change, now);
    const labelled = mayBeDone(change.state) && (await queueLabelOfDone(outbox, change, now));
    if (queued > 0 || labelled) unannounced = true;
  }

  /** Whether a change may still need a row: a webhook without its event, or a label not yet queued. */
  async function wanted(jobId: number, state: string, event: JobEvent): Promise<boolean> {
    if ((await awaitingEvent(store, jobId, event)).length > 0) return true;
    if (!mayBeDone(state) || (await store.labelSettings()).enabled !== 1) return false;
    return !(await store.queuedFor(jobId, 'label')).has(null);
  }

  async function queueFor(jobId: number, state: string, event: JobEvent, snapshot: JobRow | undefined) {
    // The job as the change left it; read now only when the change came without it.
    const job = snapshot ?? (await jobs.get(jobId));
    if (await wanted(jobId, state, event)) {
      const change = { state, job, view: await jobs.view(job), device: await devices.get(job.device_mac) };
      await inTransaction(db, (tx) => recordJobChange(tx, change));
    }
    if (unannounced) {
      unannounced = false;
      worker.kick();
    }
  }

  bus.on('job.changed', ({ jobId, state, snapshot }) => {
    const event = eventOf(state);
    if (!event) return;
    // Whatever goes wrong here must not fail the job change that announced it; a crash before
    // the rows are written is caught up at the next start (reconcile.ts).
    const work = queueFor(jobId, state, event, snapshot)
      .catch((error) => log.error({ err: error, job: jobId, event }, 'could not queue the webhook deliveries or label of a job event'))
      .finally(() => queueing.delete(work));
    queueing.add(work);
  });

  return {
    webhooks,
    labels,
    recordJobChange,
    /**
     * Sends what is due now, once the start-up catch-up and the job events announced so far are
     * in the outbox (tests move the clock, then call this instead of waiting).
     */
    async deliverDue() {
      await starting;
      await Promise.all(queueing);
      await worker.deliverDue();
    },
    /** Queues the events a crash kept from the outbox, then sends what is pending. Never rejects. */
    start(): Promise<void> {
      starting ??= (async () => {
        try {
          await reconcile({ db, jobs, devices, clock, log });
        } catch (error) {
          // Never keeps the server or pending deliveries from starting.
          log.error({ err: error }, 'could not look for job events missing from the outbox');
        }
        worker.start();
      })();
      return starting;
    },
    async stop() {
      await starting;
      await Promise.all(queueing);
      await worker.stop();
    },
  };
}

export type NotifyService = ReturnType<typeof createNotifyService>;
