import type { Logger } from 'pino';
import { guarded } from '../shared/background.js';
import type { Clock } from '../shared/clock.js';
import { parseLabelOutput, sendLabel } from './label-output.js';
import type { NotifyStore, OutboxRow } from './store.js';
import { postWebhook, type SendOutcome } from './webhook-send.js';

export const SEND_TIMEOUT_MS = 10_000;
export const FIRST_RETRY_MS = 5_000;
export const MAX_RETRY_MS = 3_600_000;
/** After this many attempts a delivery is `failed`: shown, and sent again only by hand. */
export const MAX_ATTEMPTS = 20;
/** The longest the worker sleeps between looks at the outbox, whatever the next due time. */
const MAX_SLEEP_MS = 60_000;

/** 5 s, 10 s, 20 s … doubling after each failed attempt, at most an hour. */
export const retryDelayMs = (attempts: number) => Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1));

/**
 * Sends what the outbox holds. Each queue (one per webhook, one for labels) goes strictly in
 * order: its oldest pending delivery is tried until it is delivered or given up, and only then
 * the next. Due times are on the injectable clock; `deliverDue()` is the one way in, which the
 * timer, new deliveries and tests all use. Stations sharing one database each run a worker: a
 * delivery is claimed before it is sent (store.reschedule), so only one of them sends it.
 */
export function createDeliveryWorker(deps: { store: NotifyStore; clock: Clock; log: Logger; timeoutMs?: number }) {
  const { store, clock, log, timeoutMs = SEND_TIMEOUT_MS } = deps;
  // A claim outlasts any send (each is cut at timeoutMs); one whose station died runs out after it.
  const claimMs = 2 * timeoutMs;
  const stopping = new AbortController();
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> | undefined;
  let again = false;

  async function send(row: OutboxRow): Promise<SendOutcome> {
    if (row.webhook_id === null) {
      try {
        await sendLabel(parseLabelOutput(row.target ?? ''), row.body, `cm4prov-job-${row.job_id}-${row.id}`, timeoutMs, stopping.signal);
        return { ok: true, status: null };
      } catch (error) {
        return { ok: false, status: null, error: (error as Error).message };
      }
    }
    const hook = await store.webhook(row.webhook_id);
    if (!hook) return { ok: false, status: null, error: 'the webhook was removed' };
    return postWebhook({ url: hook.url, secret: hook.secret, event: row.event, deliveryId: row.id, body: row.body }, timeoutMs, stopping.signal);
  }

  async function attempt(row: OutboxRow) {
    const claimedUntil = clock.now() + claimMs;
    if (!(await store.reschedule(row.id, row.next_attempt_at, claimedUntil))) return; // another station sends it
    const outcome = await send(row);
    // Cut short by a stop: not an attempt; handed back, so that the next start sends it again.
    if (stopping.signal.aborted) {
      await store.reschedule(row.id, claimedUntil, row.next_attempt_at);
      return;
    }
    const now = clock.now();
    if (outcome.ok) {
      await store.markDelivered(row.id, now, outcome.status);
      return;
    }
    const attempts = row.attempts + 1;
    const giveUp = attempts >= MAX_ATTEMPTS;
    await store.markAttemptFailed(row.id, { now, status: outcome.status, error: outcome.error, next: now + retryDelayMs(attempts), giveUp });
    // Never the URL (it may carry a token) nor the secret: the webhook's id says which.
    const where = row.webhook_id === null ? { label: row.id } : { webhook: row.webhook_id, delivery: row.id };
    log.warn({ ...where, event: row.event, job: row.job_id, attempts, error: outcome.error }, giveUp ? `delivery given up after ${attempts} attempts` : 'delivery failed; it is retried');
  }

  async function sendAllDue() {
    while (!stopping.signal.aborted) {
      const now = clock.now();
      const due = (await store.heads()).filter((row) => row.next_attempt_at <= now);
      if (due.length === 0) return;
      // Every attempt settles before the pass ends (stop() waits for the pass), even when one fails.
      const failed = (await Promise.allSettled(due.map(attempt))).find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
    }
  }

  /** How long until the next look at the outbox; undefined: nothing pending (a new delivery wakes the worker). */
  async function sleepMs(): Promise<number | undefined> {
    const next = Math.min(...(await store.heads()).map((row) => row.next_attempt_at));
    return next === Infinity ? undefined : Math.min(MAX_SLEEP_MS, Math.max(0, next - clock.now()));
  }

  const wake = guarded(log, 'sending webhook deliveries and labels', () => deliverDue());

  /** Sends every delivery that is due; resolves when they have been tried (and any that came in meanwhile). Never rejects. */
  function deliverDue(): Promise<void> {
    if (pass) {
      again = true;
      return pass;
    }
    pass = (async () => {
      // A database that fails is looked at again after the longest sleep.
      let sleep: number | undefined = MAX_SLEEP_MS;
      try {
        do {
          again = false;
          await sendAllDue();
          sleep = await sleepMs();
        } while (again && !stopping.signal.aborted);
      } catch (error) {
        if (!stopping.signal.aborted) log.error({ err: error }, 'sending deliveries failed; tried again later');
      } finally {
        pass = undefined;
      }
      clearTimeout(timer);
      if (!started || stopping.signal.aborted || sleep === undefined) return;
      timer = setTimeout(wake, sleep);
      timer.unref();
    })();
    return pass;
  }

  return {
    deliverDue,
    /** A delivery was queued: send it now (once started). */
    kick() {
      if (started && !stopping.signal.aborted) setImmediate(wake);
    },
    /** Sends what a previous process left pending, then keeps going. */
    start() {
      started = true;
      wake();
    },
    /** Stops sending; a send cut short stays pending for the next start. */
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await pass;
    },
  };
}

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
