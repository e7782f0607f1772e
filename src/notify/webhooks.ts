import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import { eventBody, JOB_EVENTS, type JobEvent } from './events.js';
import { newSecret } from './signing.js';
import type { NotifyStore } from './store.js';
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

/** Webhooks: who gets which job events, and the outbox rows made for them. */
export function createWebhooks(deps: { store: NotifyStore; jobs: JobService; devices: DeviceStore; clock: Clock; kick: () => void }) {
  const { store, jobs, devices, clock, kick } = deps;

  function requireWebhook(id: number) {
    const hook = store.webhook(id);
    if (!hook) throw notFound(`there is no webhook ${id}`);
    return hook;
  }

  return {
    /**
     * Queues `event` of a job for every webhook that takes it and has not had it yet, in the
     * caller's turn (one synchronous SQLite transaction): once this returns, a crash cannot lose it.
     */
    queueJobEvent(jobId: number, event: JobEvent) {
      const hooks = store.webhooks().filter((hook) => (JSON.parse(hook.events) as string[]).includes(event));
      if (hooks.length === 0) return;
      const had = store.queuedFor(jobId, event);
      const job = jobs.get(jobId);
      // A webhook made while a job already ran does not hear that it started (progress repeats 'running').
      const fresh = hooks.filter((hook) => !had.has(hook.id) && !(event === 'job.started' && job.started_at !== null && hook.created_at > job.started_at));
      if (fresh.length === 0) return;
      const now = clock.now();
      const body = eventBody(event, jobs.view(job), devices.get(job.device_mac), now);
      store.transaction(() => {
        for (const hook of fresh) store.enqueue({ webhookId: hook.id, event, jobId, target: null, body }, now);
      });
      kick();
    },

    list: (): WebhookView[] => store.webhooks().map((hook) => toWebhookView(hook, store.stats(hook.id))),

    /** Makes a webhook; the only reply that ever holds its secret. */
    add(input: NewWebhook): WebhookView & { secret: string } {
      const url = checkUrl(input.url);
      const events = checkEvents(input.events);
      const secret = input.secret ?? newSecret();
      const hook = store.addWebhook(url, secret, events, clock.now());
      return { ...toWebhookView(hook, store.stats(hook.id)), secret };
    },

    remove(id: number) {
      requireWebhook(id);
      store.removeWebhook(id);
    },

    deliveries(id: number, limit: number): DeliveryView[] {
      requireWebhook(id);
      return store.deliveriesOf(id, limit).map(toDeliveryView);
    },

    /** The newest deliveries of every webhook, newest first (the dashboard's table). */
    recentDeliveries: (limit: number): DeliveryView[] => store.webhookDeliveries(limit).map(toDeliveryView),

    /** Sends a failed (or already delivered) delivery again, from the first attempt. */
    retry(deliveryId: number): DeliveryView {
      const row = store.delivery(deliveryId);
      if (!row) throw notFound(`there is no delivery ${deliveryId}`);
      if (row.state === 'pending') throw conflict(`delivery ${deliveryId} is still pending: it is retried by itself (next at ${new Date(row.next_attempt_at).toISOString()})`);
      store.requeue(deliveryId, clock.now());
      kick();
      return toDeliveryView(store.delivery(deliveryId)!);
    },
  };
}

export type Webhooks = ReturnType<typeof createWebhooks>;
