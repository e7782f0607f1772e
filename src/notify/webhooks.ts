import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import { eventBody, JOB_EVENTS, type JobChange, type JobEvent } from './events.js';
import { newSecret } from './signing.js';
import type { NotifyStore, WebhookRow } from './store.js';
import { toDeliveryView, toWebhookView, type DeliveryView, type WebhookView } from './views.js';

export interface NewWebhook {
  url: string;
  events?: string[];
  /** The operator's own secret; one is made when absent. */
  secret?: string;
}

/** http(s) only, and no user:password in it (listings show the URL; the signature authenticates). */
function checkUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw badRequest(`'${text}' is not a URL: expected http://host/path or https://host/path`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badRequest(`a webhook URL must start with http:// or https://, not ${url.protocol}//`);
  if (url.username || url.password) throw badRequest('a webhook URL must not carry a user name or password: each delivery is signed with the webhook secret instead');
  return url.href;
}

function checkEvents(events: string[] | undefined): JobEvent[] {
  if (events === undefined) return [...JOB_EVENTS];
  const unknown = events.find((event) => !(JOB_EVENTS as readonly string[]).includes(event));
  if (unknown !== undefined) throw badRequest(`'${unknown}' is not a webhook event (known: ${JOB_EVENTS.join(', ')})`);
  if (events.length === 0) throw badRequest('a webhook needs at least one event');
  return JOB_EVENTS.filter((event) => events.includes(event));
}

/** The webhooks that take `event` and have no row of it for this job yet. */
export async function awaitingEvent(store: NotifyStore, jobId: number, event: JobEvent): Promise<WebhookRow[]> {
  const hooks = (await store.webhooks()).filter((hook) => (JSON.parse(hook.events) as string[]).includes(event));
  if (hooks.length === 0) return [];
  const had = await store.queuedFor(jobId, event);
  return hooks.filter((hook) => !had.has(hook.id));
}

/**
 * Queues `event` of a job change for every webhook that takes it and has not had it yet; how many
 * rows that made. Run it on a transaction's store: the rows are then written with whatever else
 * that transaction holds, or not at all.
 */
export async function queueJobEvent(store: NotifyStore, event: JobEvent, change: JobChange, now: number): Promise<number> {
  const { job } = change;
  // A webhook made while a job already ran does not hear that it started (progress repeats 'running').
  const fresh = (await awaitingEvent(store, job.id, event)).filter((hook) => !(event === 'job.started' && job.started_at !== null && hook.created_at > job.started_at));
  if (fresh.length === 0) return 0;
  const body = eventBody(event, change.view, change.device, now);
  let queued = 0;
  for (const hook of fresh) {
    if ((await store.enqueue({ webhookId: hook.id, event, jobId: job.id, target: null, body }, now)) !== undefined) queued++;
  }
  return queued;
}

/** Webhooks: who gets which job events, and their deliveries. */
export function createWebhooks(deps: { store: NotifyStore; clock: Clock; kick: () => void }) {
  const { store, clock, kick } = deps;

  async function requireWebhook(id: number) {
    const hook = await store.webhook(id);
    if (!hook) throw notFound(`there is no webhook ${id}`);
    return hook;
  }

  const withStats = async (hook: WebhookRow) => toWebhookView(hook, await store.stats(hook.id));

  return {
    list: async (): Promise<WebhookView[]> => Promise.all((await store.webhooks()).map(withStats)),

    /** Makes a webhook; the only reply that ever holds its secret. */
    async add(input: NewWebhook): Promise<WebhookView & { secret: string }> {
      const url = checkUrl(input.url);
      const events = checkEvents(input.events);
      const secret = input.secret ?? newSecret();
      const hook = await store.addWebhook(url, secret, events, clock.now());
      return { ...(await withStats(hook)), secret };
    },

    async remove(id: number) {
      if (!(await store.removeWebhook(id))) throw notFound(`there is no webhook ${id}`);
    },

    async deliveries(id: number, limit: number): Promise<DeliveryView[]> {
      await requireWebhook(id);
      return (await store.deliveriesOf(id, limit)).map(toDeliveryView);
    },

    /** The newest deliveries of every webhook, newest first (the dashboard's table). */
    recentDeliveries: async (limit: number): Promise<DeliveryView[]> => (await store.webhookDeliveries(limit)).map(toDeliveryView),

    /** Sends a failed (or already delivered) delivery again, from the first attempt. */
    async retry(deliveryId: number): Promise<DeliveryView> {
      // One conditional write: a delivery that is pending (or gone) is left as it is, and only then looked at.
      if (!(await store.requeue(deliveryId, clock.now()))) {
        const row = await store.delivery(deliveryId);
        if (!row) throw notFound(`there is no delivery ${deliveryId}`);
        throw conflict(`delivery ${deliveryId} is still pending: it is retried by itself (next at ${new Date(row.next_attempt_at).toISOString()})`);
      }
      kick();
      const row = await store.delivery(deliveryId);
      if (!row) throw notFound(`there is no delivery ${deliveryId}`);
      return toDeliveryView(row);
    },
  };
}

export type Webhooks = ReturnType<typeof createWebhooks>;
