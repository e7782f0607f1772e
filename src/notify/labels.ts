import { inTransaction, type Queries } from '../db/database.js';
import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict } from '../shared/errors.js';
import type { JobChange } from './events.js';
import { parseLabelOutput } from './label-output.js';
import { checkTemplate, LABEL_VARIABLES, labelValues, renderLabel } from './label-template.js';
import { createNotifyStore, type NotifyStore } from './store.js';
import { toDeliveryView, type DeliveryView } from './views.js';

export interface LabelSettingsView {
  /** Every job that ends ok prints a label (deploys; backups too with `backups`). */
  enabled: boolean;
  template: string | null;
  /** tcp://host:port (a printer's raw port) or a spool folder on the server. */
  output: string | null;
  backups: boolean;
  variables: readonly string[];
  recent: DeliveryView[];
}

export interface LabelSettingsInput {
  enabled?: boolean;
  template?: string;
  output?: string;
  backups?: boolean;
}

/** Done, for a label: ended ok, and, for a deploy that asked for it, its first boot confirmed. */
export const isDone = (job: Pick<JobRow, 'state' | 'boot_confirm' | 'boot_state'>) =>
  job.state === 'ok' && (job.boot_confirm !== 1 || job.boot_state === 'confirmed');

/** Renders and queues a job's label; its id, or undefined when there is nothing to print it with (or it was queued before). */
async function queueLabel(store: NotifyStore, change: Pick<JobChange, 'job' | 'view' | 'device'>, event: 'label' | 'label.reprint', now: number) {
  const row = await store.labelSettings();
  if (!row.template || !row.output) return undefined;
  const body = renderLabel(row.template, labelValues(change.view, change.device));
  return store.enqueue({ webhookId: null, event, jobId: change.job.id, target: row.output, body }, now);
}

/**
 * A job just ended ok, or its first boot was just confirmed: its label, when labels are on
 * (backups only if asked for); true when that queued one. A deploy that asked for confirmation is
 * labelled only then. Run it on a transaction's store, as queueJobEvent (webhooks.ts).
 */
export async function queueLabelOfDone(store: NotifyStore, change: Pick<JobChange, 'job' | 'view' | 'device'>, now: number): Promise<boolean> {
  const row = await store.labelSettings();
  const { job } = change;
  if (row.enabled !== 1 || (job.kind === 'backup' && row.backups !== 1) || !isDone(job)) return false;
  return (await queueLabel(store, change, 'label', now)) !== undefined;
}

/** Labels: the printer settings, and reprints of a finished job's label. */
export function createLabels(deps: { db: Queries; jobs: JobService; devices: DeviceStore; clock: Clock; kick: () => void }) {
  const { db, jobs, devices, clock, kick } = deps;
  const store = createNotifyStore(db);

  async function settings(): Promise<LabelSettingsView> {
    const row = await store.labelSettings();
    return {
      enabled: row.enabled === 1,
      template: row.template,
      output: row.output,
      backups: row.backups === 1,
      variables: LABEL_VARIABLES,
      recent: (await store.labelDeliveries(20)).map(toDeliveryView),
    };
  }

  return {
    settings,

    async save(input: LabelSettingsInput): Promise<LabelSettingsView> {
      if (input.template !== undefined) checkTemplate(input.template);
      if (input.output !== undefined) parseLabelOutput(input.output);
      // What is not given stays as it is: read and written back with the row locked, so that two
      // saves at once (two browsers, two stations) each keep what the other changed.
      await inTransaction(db, async (tx) => {
        const locked = createNotifyStore(tx);
        const row = await locked.labelSettingsForUpdate();
        const template = input.template ?? row.template;
        const output = input.output === undefined ? row.output : input.output.trim();
        const enabled = input.enabled ?? (row.enabled === 1 || input.template !== undefined || input.output !== undefined);
        if (enabled && (!template || !output)) throw badRequest('labels need both a template and an output (tcp://host:9100 or a spool folder) before they can be on');
        const backups = input.backups ?? row.backups === 1;
        // Reconciliation prints missed labels only of jobs that ended after labels covered them.
        const widened = enabled && (row.enabled !== 1 || (backups && row.backups !== 1));
        const enabledAt = !enabled ? null : widened ? clock.now() : row.enabled_at;
        await locked.saveLabelSettings({ enabled: enabled ? 1 : 0, template, output, backups: backups ? 1 : 0, enabled_at: enabledAt });
      });
      return settings();
    },

    /** Prints a finished job's label again. */
    async reprint(jobId: number): Promise<DeliveryView> {
      const job = await jobs.get(jobId);
      if (job.state !== 'ok') throw conflict(`job ${jobId} is ${job.state}: only a job that ended ok gets a label`);
      const change = { job, view: await jobs.view(job), device: await devices.get(job.device_mac) };
      const id = await queueLabel(store, change, 'label.reprint', clock.now());
      if (id === undefined) throw conflict('no label printer is set up: set a template and a printer or spool folder first (cm4prov labels set)');
      kick();
      return toDeliveryView((await store.delivery(id))!);
    },
  };
}

export type Labels = ReturnType<typeof createLabels>;
