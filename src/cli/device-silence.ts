import type { DeviceView } from '../devices/service.js';
import type { JobView } from '../jobs/view.js';

const START_CLIENT = 'netboot it, or start device/provisioning-client.sh';

/** `45 s`, `12 min`, `3 h`, `2 d`: how long, roughly, as a person says it. */
export function roughly(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86_400)} d`;
}

/** Milliseconds since the server last heard from the device, by the server's clock. */
export const silentFor = (device: DeviceView, serverNow: number) => serverNow - Date.parse(device.last_seen_at);

/**
 * Why work ordered for this device may not start soon: its client has not polled for the
 * stale time (90 s), or has never run. Undefined while the device is polling.
 */
export function silenceWarning(device: DeviceView, serverNow: number): string | undefined {
  if (!device.registered) {
    const stage = device.netboot.stage ? ` (it netbooted: ${device.netboot.stage})` : '';
    return `warning: ${device.mac} has not run its provisioning client yet${stage}; it starts this job only when its client polls (${START_CLIENT})`;
  }
  if (!device.stale) return undefined;
  return `warning: ${device.mac} was last heard from ${roughly(silentFor(device, serverNow))} ago; it starts this job only when its client polls again (${START_CLIENT})`;
}

/** The status line of a job that waits for its device to poll. */
export function queuedLine(job: JobView, device: DeviceView | undefined, serverNow: number): string {
  const mac = job.device_mac;
  if (device && !device.registered) return `job ${job.id}: queued; ${mac} has not run its client yet, waiting for it to poll…`;
  if (device?.stale) return `job ${job.id}: queued; ${mac} silent for ${roughly(silentFor(device, serverNow))}, waiting for its client to poll…`;
  return `job ${job.id}: waiting for ${mac} to poll…`;
}
