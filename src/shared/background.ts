import type { Logger } from 'pino';

/** One log line per task per this long: a database that stays locked must not flood the log. */
const REPEAT_LOG_MS = 60_000;

/**
 * Wraps work that runs outside any request (timers, watchers, log readers) so that a failure —
 * a locked or damaged database, a full disk — is logged and the process goes on serving. An
 * exception thrown in a timer would otherwise end the whole server, and every device with it.
 */
export function guarded<A extends unknown[]>(log: Logger, task: string, work: (...args: A) => unknown): (...args: A) => void {
  let lastLogged = 0;
  const report = (error: unknown) => {
    const now = Date.now();
    if (now - lastLogged < REPEAT_LOG_MS) return;
    lastLogged = now;
    log.error({ err: error, task }, `background task failed: ${task} (the server goes on; it is retried)`);
  };
  return (...args: A) => {
    try {
      const result = work(...args);
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  };
}
