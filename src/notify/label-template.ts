import type { DeviceRow } from '../devices/store.js';
import type { JobView } from '../jobs/view.js';
import { badRequest } from '../shared/errors.js';

/** What a label template may name, as `{{name}}`. */
export const LABEL_VARIABLES = ['serial', 'mac', 'mac_plain', 'model', 'image', 'image_sha256_short', 'job_id', 'date', 'time', 'verification'] as const;
type LabelVariable = (typeof LABEL_VARIABLES)[number];

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
export const MAX_TEMPLATE_BYTES = 64 * 1024;
/** What a value the job or device does not have prints as (a device may have no serial). */
export const MISSING = '-';

/** Refuses a template that is empty, too big, or names a variable there is no value for. */
export function checkTemplate(template: string) {
  if (!template.trim()) throw badRequest('the label template is empty');
  if (Buffer.byteLength(template) > MAX_TEMPLATE_BYTES) throw badRequest(`the label template is larger than ${MAX_TEMPLATE_BYTES / 1024} KiB`);
  for (const [, name] of template.matchAll(PLACEHOLDER)) {
    if (!(LABEL_VARIABLES as readonly string[]).includes(name!)) {
      throw badRequest(`the label template names {{${name}}}, which is not a label variable (known: ${LABEL_VARIABLES.join(', ')})`);
    }
  }
}

/**
 * A value put into ZPL: `^` and `~` start ZPL commands, so a device's serial or model (sent by
 * whatever is on the LAN) could otherwise reprogram the printer; they and control characters
 * become spaces.
 */
const zplSafe = (value: string | null | undefined) => {
  const text = (value ?? '').replace(/[\^~\u0000-\u001f\u007f]/g, ' ').trim();
  return text === '' ? MISSING : text;
};

/** The variables of one finished job; times are UTC, of the job's end. */
export function labelValues(job: JobView, device: DeviceRow | undefined): Record<LabelVariable, string> {
  const at = job.ended_at ?? job.created_at;
  return {
    serial: zplSafe(device?.serial),
    mac: job.device_mac,
    mac_plain: job.device_mac.replaceAll(':', ''),
    model: zplSafe(device?.model),
    image: zplSafe(job.image?.name),
    image_sha256_short: zplSafe(job.image?.sha256.slice(0, 12)),
    job_id: String(job.id),
    date: at.slice(0, 10),
    time: at.slice(11, 19),
    verification: zplSafe(job.verification?.summary),
  };
}

/** Fills a (checked) template. */
export function renderLabel(template: string, values: Record<LabelVariable, string>): string {
  return template.replace(PLACEHOLDER, (_whole, name: string) => values[name as LabelVariable] ?? MISSING);
}
