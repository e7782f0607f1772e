/** Thrown by a work limiter whose queue is full: the caller should answer "busy, try again". */
export class LimiterFullError extends Error {
  override name = 'LimiterFullError';
}

/**
 * Runs at most `concurrency` tasks at once and lets at most `queue` more wait for a turn; a
 * task beyond that is refused at once with LimiterFullError rather than piling up.
 */
export function createWorkLimiter({ concurrency, queue }: { concurrency: number; queue: number }) {
  let running = 0;
  const waiting: Array<() => void> = [];

  const next = () => {
    running -= 1;
    const start = waiting.shift();
    if (start) {
      running += 1;
      start();
    }
  };

  return {
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (running >= concurrency) {
        if (waiting.length >= queue) throw new LimiterFullError('too many tasks waiting');
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        running += 1;
      }
      try {
        return await task();
      } finally {
        next();
      }
    },
    get running() {
      return running;
    },
    get waiting() {
      return waiting.length;
    },
  };
}

export type WorkLimiter = ReturnType<typeof createWorkLimiter>;
