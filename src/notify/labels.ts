import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict } from '../shared/errors.js';
import { parseLabelOutput } from './label-output.js';
import { checkTemplate, LABEL_VARIABLES, labelValues, renderLabel } from './label-template.js';
import type { NotifyStore } from './store.js';
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

/** Labels: the printer settings, and a rendered label queued in the outbox for a finished job. */
/** Done, for a label: ended ok, and, for a deploy that asked for it, its first boot confirmed. */
export const isDone = (job: Pick<JobRow, 'state' | 'boot_confirm' | 'boot_state'>) =>
  job.state === 'ok' && (job.boot_confirm !== 1 || job.boot_state === 'confirmed');

export function createLabels(deps: { store: NotifyStore; jobs: JobService; devices: DeviceStore; clock: Clock; kick: () => void }) {
  const { store, jobs, devices, clock, kick } = deps;

  function settings(): LabelSettingsView {
    const row = store.labelSettings();
    return {
      enabled: row.enabled === 1,
      template: row.template,
      output: row.output,
      backups: row.backups === 1,
      variables: LABEL_VARIABLES,
      recent: store.labelDeliveries(20).map(toDeliveryView),
    };
  }

  /** Renders and queues a job's label; undefined when there is nothing to print it with. */
  function queue(jobId: number, event: 'label' | 'label.reprint'): number | undefined {
    const row = store.labelSettings();
    if (!row.template || !row.output) return undefined;
    const job = jobs.get(jobId);
    const body = renderLabel(row.template, labelValues(jobs.view(job), devices.get(job.device_mac)));
    const id = store.enqueue({ webhookId: null, event, jobId, target: row.output, body }, clock.now());
    kick();
    return id;
  }

  return {
    settings,

    save(input: LabelSettingsInput): LabelSettingsView {
      const row = store.labelSettings();
      const template = input.template ?? row.template;
      if (input.template !== undefined) checkTemplate(input.template);
      const output = input.output === undefined ? row.output : input.output.trim();
      if (input.output !== undefined) parseLabelOutput(output!);
      const enabled = input.enabled ?? (row.enabled === 1 || input.template !== undefined || input.output !== undefined);
      if (enabled && (!template || !output)) throw badRequest('labels need both a template and an output (tcp://host:9100 or a spool folder) before they can be on');
      const backups = input.backups ?? row.backups === 1;
      // Reconciliation prints missed labels only of jobs that ended after labels covered them.
      const widened = enabled && (row.enabled !== 1 || (backups && row.backups !== 1));
      const enabledAt = !enabled ? null : widened ? clock.now() : row.enabled_at;
      store.saveLabelSettings({ enabled: enabled ? 1 : 0, template, output, backups: backups ? 1 : 0, enabled_at: enabledAt });
      return settings();
    },

    /**
     * A job just ended ok, or its first boot was just confirmed: its label, when labels are on
     * (backups only if asked for). A deploy that asked for confirmation is labelled only then.
     */
    jobDone(jobId: number) {
      const row = store.labelSettings();
      if (row.enabled !== 1) return;
      const job = jobs.get(jobId);
      if (job.kind === 'backup' && row.backups !== 1) return;
      if (!isDone(job)) return;
      queue(jobId, 'label');
    },

    /** Prints a finished job's label again. */
    reprint(jobId: number): DeliveryView {
      const job = jobs.get(jobId);
      if (job.state !== 'ok') throw conflict(`job ${jobId} is ${job.state}: only a job that ended ok gets a label`);
      const id = queue(jobId, 'label.reprint');
      if (id === undefined) throw conflict('no label printer is set up: set a template and a printer or spool folder first (cm4prov labels set)');
      return toDeliveryView(store.delivery(id)!);
    },
  };
}

export type Labels = ReturnType<typeof createLabels>;
