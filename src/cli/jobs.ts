import type { Command } from 'commander';
import { JOB_STATES } from '../jobs/store.js';
import { orderedByText, stateText, type JobView } from '../jobs/view.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { firstBootDetail } from './first-boot.js';
import { macArgument } from './mac-argument.js';
import { duration, printable, printJson, printTable, rate, say, size, when } from './output.js';
import { numericId } from './webhooks.js';

export function registerJobCommands(program: Command, context: CommandContext) {
  const jobsCommand = context
    .command(program, 'jobs', 'list deploy and backup jobs, newest first (jobs show ID: one job in full)')
    .option('--device <mac>', 'only this device', macArgument)
    .option('--state <state>', 'queued, running, ok, unconfirmed, failed or cancelled')
    .option('--limit <n>', 'at most this many', '50')
    .option('--cursor <next>', 'continue a listing: older jobs than the one it ended with')
    .option('--json', 'print JSON')
    // `jobs show 7 --json`: options after a subcommand are the subcommand's (see main.ts).
    .enablePositionalOptions()
    .action(async (options: { device?: string; state?: string; limit: string; cursor?: string; json?: boolean }) => {
      const query = new URLSearchParams({ limit: options.limit });
      if (options.device) query.set('device', options.device);
      if (options.state) query.set('state', jobState(options.state));
      if (options.cursor) query.set('cursor', options.cursor);
      const { jobs, total, next } = await context.api(options).get<{ jobs: JobView[]; total: number; next: string | null }>(`/api/jobs?${query}`);
      if (options.json) printJson(jobs);
      else printTable(
        ['ID', 'DEVICE', 'ACTION', 'STATE', 'SOURCE', 'BY', 'CREATED', 'TIME', 'RATE', 'RESULT'],
        jobs.map((j) => [
          j.id, j.device_mac, j.kind, stateText(j),
          j.kind === 'deploy' ? j.image?.name : j.backup_id ? `backup ${j.backup_id}` : '',
          orderedByText(j), when(j.created_at), duration(j.duration_seconds), rate(j.rate_bytes_per_second),
          j.state === 'ok' || j.state === 'unconfirmed' ? j.verification?.summary : j.error ?? j.phase ?? '',
        ]),
        'No jobs yet.',
      );
      if (next) console.error(`${jobs.length} of ${total} jobs shown; for older ones add --cursor ${next}`);
    });

  context
    .command(jobsCommand, 'show', 'one job: what it did, what it proved, and its first boot')
    .argument('<id>', 'job id (see: cm4prov jobs)', numericId('job'))
    .option('--json', 'print JSON')
    .action(async (id: number, options: { json?: boolean }) => {
      const job = await context.api(options).get<JobView>(`/api/jobs/${id}`);
      if (options.json) return printJson(job);
      printJob(job);
    });
}

function printJob(job: JobView) {
  const what = job.kind === 'deploy' ? `deploy ${job.image?.name ?? '(image deleted)'}${job.image ? ` (${size(job.image.size)})` : ''}` : `backup${job.backup_id ? ` ${job.backup_id}` : ''}`;
  say(`Job ${job.id}: ${what} on ${job.device_mac}, ordered by ${orderedByText(job)}`);
  say(`State: ${stateText(job)}${job.phase && (job.state === 'queued' || job.state === 'running') ? ` (${job.phase})` : ''}`);
  say(`Created ${when(job.created_at)}; started ${when(job.started_at)}; ended ${when(job.ended_at)}; took ${duration(job.duration_seconds)} (${rate(job.rate_bytes_per_second)})`);
  const phases = Object.entries(job.phase_seconds);
  // Tenths under a minute: a 1.5 s sync is worth seeing next to a 6 s verify.
  const spent = (seconds: number) => (seconds < 60 ? `${seconds.toFixed(1)} s` : duration(seconds));
  if (phases.length > 0) say(`Phases: ${phases.map(([phase, seconds]) => `${printable(phase)} ${spent(seconds)}`).join(', ')}`);
  if (job.verification) say(`Result: ${job.verification.summary}`);
  if (job.error) say(`Error: ${job.error}`);
  if (job.first_boot) say(`First boot: ${firstBootDetail(job.first_boot)}`);
}

function jobState(state: string): string {
  if ((JOB_STATES as readonly string[]).includes(state)) return state;
  throw new CliError(`--state takes ${JOB_STATES.join(', ')}, not '${state}'`, EXIT.usage);
}
