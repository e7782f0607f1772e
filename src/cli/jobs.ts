import type { Command } from 'commander';
import { JOB_STATES } from '../jobs/store.js';
import { orderedByText, type JobView } from '../jobs/view.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { macArgument } from './mac-argument.js';
import { duration, printJson, printTable, rate, when } from './output.js';

export function registerJobCommands(program: Command, context: CommandContext) {
  context
    .command(program, 'jobs', 'list deploy and backup jobs, newest first')
    .option('--device <mac>', 'only this device', macArgument)
    .option('--state <state>', 'queued, running, ok, unconfirmed, failed or cancelled')
    .option('--limit <n>', 'at most this many', '50')
    .option('--cursor <next>', 'continue a listing: older jobs than the one it ended with')
    .option('--json', 'print JSON')
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
          j.id, j.device_mac, j.kind, j.state,
          j.kind === 'deploy' ? j.image?.name : j.backup_id ? `backup ${j.backup_id}` : '',
          orderedByText(j), when(j.created_at), duration(j.duration_seconds), rate(j.rate_bytes_per_second),
          j.state === 'ok' || j.state === 'unconfirmed' ? j.verification?.summary : j.error ?? j.phase ?? '',
        ]),
        'No jobs yet.',
      );
      if (next) console.error(`${jobs.length} of ${total} jobs shown; for older ones add --cursor ${next}`);
    });
}

function jobState(state: string): string {
  if ((JOB_STATES as readonly string[]).includes(state)) return state;
  throw new CliError(`--state takes ${JOB_STATES.join(', ')}, not '${state}'`, EXIT.usage);
}
