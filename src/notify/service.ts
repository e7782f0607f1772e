import type { Logger } from 'pino';
import type { Db } from '../db/open.js';
import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { eventOf } from './events.js';
import { createLabels } from './labels.js';
import { reconcile } from './reconcile.js';
import { createNotifyStore } from './store.js';
import { createWebhooks } from './webhooks.js';
import { createDeliveryWorker } from './worker.js';

export interface NotifyDeps {
  db: Db;
  bus: EventBus;
  jobs: JobService;
  devices: DeviceStore;
  clock: Clock;
  log: Logger;
}

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
  const webhooks = createWebhooks({ store, jobs, devices, clock, kick: worker.kick });
  const labels = createLabels({ store, jobs, devices, clock, kick: worker.kick });

  bus.on('job.changed', ({ jobId, state }) => {
    const event = eventOf(state);
    if (!event) return;
    // Whatever goes wrong here must not fail the job change that announced it.
    try {
      webhooks.queueJobEvent(jobId, event);
      // A deploy that asked for first-boot confirmation is done, and labelled, once it is confirmed.
      if (state === 'ok' || state === 'confirmed') labels.jobDone(jobId);
    } catch (error) {
      log.error({ err: error, job: jobId, event }, 'could not queue the webhook deliveries or label of a job event');
    }
  });

  return {
    webhooks,
    labels,
    /** Sends what is due now (tests move the clock, then call this instead of waiting). */
    deliverDue: worker.deliverDue,
    /** Queues the events a crash kept from the outbox, then sends what is pending. */
    start() {
      try {
        reconcile({ store, jobs, devices, labels, clock, log });
      } catch (error) {
        // Never keeps the server or pending deliveries from starting.
        log.error({ err: error }, 'could not look for job events missing from the outbox');
      }
      worker.start();
    },
    stop: worker.stop,
  };
}

export type NotifyService = ReturnType<typeof createNotifyService>;
