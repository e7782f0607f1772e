import type { DeviceRow } from '../devices/store.js';
import type { JobRow } from '../jobs/store.js';
import type { JobView } from '../jobs/view.js';

/** The job events a webhook can receive, one per state a job enters. */
export const JOB_EVENTS = ['job.queued', 'job.started', 'job.ok', 'job.failed', 'job.cancelled', 'job.unconfirmed', 'job.confirmed', 'job.not_confirmed'] as const;
export type JobEvent = (typeof JOB_EVENTS)[number];

const BY_STATE: Record<string, JobEvent> = {
  queued: 'job.queued',
  running: 'job.started',
  ok: 'job.ok',
  failed: 'job.failed',
  cancelled: 'job.cancelled',
  unconfirmed: 'job.unconfirmed',
  // A deploy's first boot (src/first-boot/): the installed OS called back, or did not in time.
  confirmed: 'job.confirmed',
  not_confirmed: 'job.not_confirmed',
};

/** The event a job entering `state` means (running: started). */
export const eventOf = (state: string): JobEvent | undefined => BY_STATE[state];

/**
 * A job entering `state` (a job state, or 'confirmed' / 'not_confirmed' of its first boot), with
 * what its notifications are made of: the job as it is in that state, its view, its device.
 */
export interface JobChange {
  state: string;
  job: JobRow;
  view: JobView;
  device: DeviceRow | undefined;
}

/** The device as a payload shows it. */
export interface PayloadDevice {
  mac: string;
  serial: string | null;
  model: string | null;
}

/**
 * The JSON body of a webhook delivery, made when the event happens (not when it is sent): the
 * job as GET /api/jobs/:id showed it then, and its device. An event found missing at start
 * (reconcile.ts) carries `recovered_at`: its job is as it was at that moment, not at `occurred_at`.
 */
export function eventBody(event: JobEvent, job: JobView, device: DeviceRow | undefined, occurredAt: number, recoveredAt?: number): string {
  const payload = {
    event,
    occurred_at: new Date(occurredAt).toISOString(),
    ...(recoveredAt === undefined ? {} : { recovered_at: new Date(recoveredAt).toISOString() }),
    job,
    device: { mac: job.device_mac, serial: device?.serial ?? null, model: device?.model ?? null } satisfies PayloadDevice,
  };
  return JSON.stringify(payload);
}
