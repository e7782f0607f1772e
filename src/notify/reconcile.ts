import type { Logger } from 'pino';
import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { JobView } from '../jobs/view.js';
import type { Clock } from '../shared/clock.js';
import { eventBody, eventOf, JOB_EVENTS, type JobEvent } from './events.js';
import { isDone, type Labels } from './labels.js';
import type { NotifyStore } from './store.js';

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
 * events since it was made; for labels, since they were switched on.
 */
export function reconcile(deps: { store: NotifyStore; jobs: JobService; devices: DeviceStore; labels: Labels; clock: Clock; log: Logger }) {
  const { store, jobs, devices, labels, clock, log } = deps;
  const newest = store.newestQueuedAt();
  const floor = newest === undefined ? -Infinity : newest - RECONCILE_MARGIN_MS;
  const hooks = store.webhooks().map((hook) => ({ id: hook.id, since: Math.max(hook.created_at, floor), events: JSON.parse(hook.events) as string[] }));
  const labelSettings = store.labelSettings();
  const labelsSince = labelSettings.enabled === 1 && labelSettings.enabled_at !== null ? Math.max(labelSettings.enabled_at, floor) : undefined;
  const since = Math.min(...hooks.map((hook) => hook.since), labelsSince ?? Infinity);
  if (since === Infinity) return { events: 0, labels: 0 };

  const missing: Array<{ hookId: number; event: JobEvent; at: number; job: JobRow }> = [];
  const missedLabels: JobRow[] = [];
  for (const job of jobs.changedSince(since)) {
    for (const { event, at } of eventsOf(job)) {
      const had = store.queuedFor(job.id, event);
      for (const hook of hooks) {
        if (at >= hook.since && hook.events.includes(event) && !had.has(hook.id)) missing.push({ hookId: hook.id, event, at, job });
      }
    }
    const labelled = labelsSince !== undefined && isDone(job) && job.ended_at! >= labelsSince && (job.kind === 'deploy' || labelSettings.backups === 1);
    if (labelled && !store.queuedFor(job.id, 'label').has(null)) missedLabels.push(job);
  }
  if (missing.length === 0 && missedLabels.length === 0) return { events: 0, labels: 0 };

  // Each webhook gets them in the order they happened, as it would have.
  const order = (event: JobEvent) => JOB_EVENTS.indexOf(event);
  missing.sort((a, b) => a.at - b.at || a.job.id - b.job.id || order(a.event) - order(b.event));
  missedLabels.sort((a, b) => a.ended_at! - b.ended_at! || a.id - b.id);
  const now = clock.now();
  const views = new Map<number, JobView>();
  const viewOf = (job: JobRow) => views.get(job.id) ?? views.set(job.id, jobs.view(job)).get(job.id)!;
  store.transaction(() => {
    for (const { hookId, event, at, job } of missing) {
      const body = eventBody(event, viewOf(job), devices.get(job.device_mac), at, now);
      store.enqueue({ webhookId: hookId, event, jobId: job.id, target: null, body }, now);
    }
    for (const job of missedLabels) labels.jobDone(job.id);
  });
  const counts = { events: missing.length, labels: missedLabels.length };
  const jobIds = [...new Set([...missing.map((item) => item.job.id), ...missedLabels.map((job) => job.id)])];
  log.warn({ ...counts, jobs: jobIds.slice(0, 50) },
    'job events had no outbox rows (the server stopped between a job change and its notification): queued now');
  return counts;
}
