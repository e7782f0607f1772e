import type { Command } from 'commander';
import type { DeliveryView, WebhookView } from '../notify/index.js';
import { JOB_EVENTS } from '../notify/index.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { printJson, printTable, say, when } from './output.js';

/** `cm4prov webhooks …`: who is told about job events, and how the telling went. */
export function registerWebhookCommands(program: Command, context: CommandContext) {
  const webhooks = context
    .command(program, 'webhooks', 'URLs that receive every job event as signed JSON (webhooks add URL, rm ID, deliveries ID, retry DELIVERY)')
    .option('--json', 'print JSON')
    .enablePositionalOptions()
    .action(async (options: { json?: boolean }) => {
      const { webhooks: list } = await context.api(options).get<{ webhooks: WebhookView[] }>('/api/webhooks');
      if (options.json) return printJson(list);
      printTable(
        ['ID', 'URL', 'EVENTS', 'PENDING', 'FAILED', 'LAST DELIVERED', 'LAST ERROR'],
        list.map((hook) => [hook.id, hook.url, hook.events.length === JOB_EVENTS.length ? 'all' : hook.events.join(','),
          hook.deliveries.pending, hook.deliveries.failed, when(hook.deliveries.last_delivered_at), hook.deliveries.last_error]),
        'No webhooks. Add one: cm4prov webhooks add https://example.test/hook',
      );
    });

  context
    .command(webhooks, 'add', 'register a URL; prints the signing secret, which is shown only this once')
    .argument('<url>', 'http:// or https:// URL that takes a POST')
    .option('--events <list>', `comma-separated, of: ${JOB_EVENTS.join(', ')} (default: all)`)
    .option('--json', 'print JSON')
    .action(async (url: string, options: { events?: string; json?: boolean }) => {
      const events = options.events?.split(',').map((event) => event.trim()).filter(Boolean);
      if (events && events.length === 0) throw new CliError('--events needs at least one event name', EXIT.usage);
      const hook = await context.api(options).post<WebhookView & { secret: string }>('/api/webhooks', { url, events });
      if (options.json) return printJson(hook);
      say(`Added webhook ${hook.id}: ${hook.url} (${hook.events.join(', ')}).`);
      say(`Signing secret (shown only now; keep it where the receiver checks X-CM4Prov-Signature): ${hook.secret}`);
    });

  context
    .command(webhooks, 'rm', 'remove a webhook and its deliveries')
    .argument('<id>', 'webhook id (see: cm4prov webhooks)', numericId('webhook'))
    .option('--json', 'print JSON')
    .action(async (id: number, options: { json?: boolean }) => {
      await context.api(options).delete(`/api/webhooks/${id}`);
      if (options.json) return printJson({ deleted: id });
      console.log(`Removed webhook ${id}.`);
    });

  context
    .command(webhooks, 'deliveries', "a webhook's recent deliveries, newest first")
    .argument('<id>', 'webhook id (see: cm4prov webhooks)', numericId('webhook'))
    .option('--json', 'print JSON')
    .action(async (id: number, options: { json?: boolean }) => {
      const { deliveries } = await context.api(options).get<{ deliveries: DeliveryView[] }>(`/api/webhooks/${id}/deliveries`);
      if (options.json) return printJson(deliveries);
      printDeliveries(deliveries, 'No deliveries yet.');
    });

  context
    .command(webhooks, 'retry', 'send a failed delivery (or a label) again, from its first attempt')
    .argument('<delivery>', 'delivery id (see: cm4prov webhooks deliveries ID)', numericId('delivery'))
    .option('--json', 'print JSON')
    .action(async (id: number, options: { json?: boolean }) => {
      const delivery = await context.api(options).post<DeliveryView>(`/api/webhooks/deliveries/${id}/retry`);
      if (options.json) return printJson(delivery);
      console.log(`Delivery ${id} is queued again.`);
    });
}

/** One table for webhook deliveries and labels alike. */
export function printDeliveries(deliveries: DeliveryView[], empty: string) {
  printTable(
    ['ID', 'EVENT', 'JOB', 'STATE', 'ATTEMPTS', 'LAST ATTEMPT', 'NEXT ATTEMPT', 'LAST ERROR'],
    deliveries.map((d) => [d.id, d.event, d.job_id, d.state, d.attempts, when(d.last_attempt_at), when(d.next_attempt_at), d.last_error]),
    empty,
  );
}

/** A positive id as the API takes it; anything else is a usage error, not a request. */
export function numericId(what: string) {
  return (input: string): number => {
    if (/^[1-9]\d{0,8}$/.test(input.trim())) return Number(input.trim());
    throw new CliError(`'${input}' is not a ${what} id: expected a number`, EXIT.usage);
  };
}
