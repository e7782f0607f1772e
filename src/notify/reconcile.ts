import type { Logger } from 'pino';
import { inTransaction, type Queries } from '../db/database.js';
import type { DeviceRow, DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { JobView } from '../jobs/view.js';
import type { Clock } from '../shared/clock.js';
import { eventBody, eventOf, JOB_EVENTS, type JobEvent } from './events.js';
import { isDone, queueLabelOfDone } from './labels.js';
import { createNotifyStore } from './store.js';

/**
 * How far before the newest outbox row reconciliation looks. A crash loses at most the events of
 * its last moment, all after every row already written; the margin covers a clock set back a little.
 */
export const RECONCILE_MARGIN_MS = 60 * 60_000;

/** The events a job has had so far, each with the job's own time of it. */
function eventsOf(job: JobRow): Array<{ event: JobEvent; at: number }> {
  const events: Array<{ event: JobEvent; at: number }> = [{ event: 'job.queued', at: job.created_at }];
  if (job.started_at !== null) events.push({ event: 'job.started', at: job.started_at });
  const ended = eventOf(job.state);
  if (job.ended_at !== null && ended && ended !== 'job.queued' && ended !== 'job.started') events.push({ event: ended, at: job.ended_at });
  if (job.boot_state === 'confirmed' && job.boot_confirmed_at !== null) events.push({ event: 'job.confirmed', at: job.boot_confirmed_at });
  if (job.boot_state === 'not_confirmed' && job.boot_deadline_at !== null) events.push({ event: 'job.not_confirmed', at: job.boot_deadline_at });
  return events;
}

/**
 * Closes the window between a job's change and its outbox rows (written by the 'job.changed'
 * listener, a moment later): at start, before anything is sent, every event of a recent job that a
 * webhook should have had and has no row gets one now, and so does the label of an ok job. The
 * body carries the job as it is now (`recovered_at`) and `occurred_at` from the job's own times.
 * Only jobs changed since the newest row (less a margin) are looked at, and for each webhook only
 * events since it was made; for labels, since they were switched on. Every row is written in one
 * transaction; one that a listener (or another station) wrote meanwhile is not written twice
 * (store.enqueue), and the counts are of the rows written here.
 */
export async function reconcile(deps: { db: Queries; jobs: JobService; devices: DeviceStore; clock: Clock; log: Logger }) {
  const { db, jobs, devices, clock, log } = deps;
  const store = createNotifyStore(db);
  const newest = await store.newestQueuedAt();
  const floor = newest === undefined ? -Infinity : newest - RECONCILE_MARGIN_MS;
  const hooks = (await store.webhooks()).map((hook) => ({ id: hook.id, since: Math.max(hook.created_at, floor), events: JSON.parse(hook.events) as string[] }));
  const labelSettings = await store.labelSettings();
  const labelsSince = labelSettings.enabled === 1 && labelSettings.enabled_at !== null ? Math.max(labelSettings.enabled_at, floor) : undefined;
  const since = Math.min(...hooks.map((hook) => hook.since), labelsSince ?? Infinity);
  if (since === Infinity) return { events: 0, labels: 0 };

  const missing: Array<{ hookId: number; event: JobEvent; at: number; job: JobRow }> = [];
  const missedLabels: JobRow[] = [];
  for (const job of await jobs.changedSince(since)) {
    for (const { event, at } of eventsOf(job)) {
      const had = await store.queuedFor(job.id, event);
      for (const hook of hooks) {
        if (at >= hook.since && hook.events.includes(event) && !had.has(hook.id)) missing.push({ hookId: hook.id, event, at, job });
      }
    }
    const labelled = labelsSince !== undefined && isDone(job) && job.ended_at! >= labelsSince && (job.kind === 'deploy' || labelSettings.backups === 1);
    if (labelled && !(await store.queuedFor(job.id, 'label')).has(null)) missedLabels.push(job);
  }
  if (missing.length === 0 && missedLabels.length === 0) return { events: 0, labels: 0 };

  // Each webhook gets them in the order they happened, as it would have.
  const order = (event: JobEvent) => JOB_EVENTS.indexOf(event);
  missing.sort((a, b) => a.at - b.at || a.job.id - b.job.id || order(a.event) - order(b.event));
  missedLabels.sort((a, b) => a.ended_at! - b.ended_at! || a.id - b.id);
  const now = clock.now();
  // Read before the transaction, which holds only the outbox's statements: with SQLite, a query
  // made outside it while it is open would wait for it to end, and it for that query.
  const views = new Map<number, { view: JobView; device: DeviceRow | undefined }>();
  for (const job of [...missing.map((item) => item.job), ...missedLabels]) {
    if (!views.has(job.id)) views.set(job.id, { view: await jobs.view(job), device: await devices.get(job.device_mac) });
  }
  const counts = await inTransaction(db, async (tx) => {
    const outbox = createNotifyStore(tx);
    const counts = { events: 0, labels: 0 };
    for (const { hookId, event, at, job } of missing) {
      const { view, device } = views.get(job.id)!;
      const body = eventBody(event, view, device, at, now);
      if ((await outbox.enqueue({ webhookId: hookId, event, jobId: job.id, target: null, body }, now)) !== undefined) counts.events++;
    }
    for (const job of missedLabels) {
      if (await queueLabelOfDone(outbox, { job, ...views.get(job.id)! }, now)) counts.labels++;
    }
    return counts;
  });
  if (counts.events + counts.labels === 0) return counts;
  const jobIds = [...new Set([...missing.map((item) => item.job.id), ...missedLabels.map((job) => job.id)])];
  log.warn({ ...counts, jobs: jobIds.slice(0, 50) },
    'job events had no outbox rows (the server stopped between a job change and its notification): queued now');
  return counts;
}
