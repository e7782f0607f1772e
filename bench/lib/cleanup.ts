/**
 * Everything a benchmark sets up (processes, namespaces, files) registers how to undo it here.
 * Undo runs last-in first-out, once, from the benchmark's `finally` or from the SIGINT handler,
 * whichever comes first; one failing step never stops the others. Once `runAll` has begun (the
 * run is ending or was interrupted), `add` refuses, so nothing new is set up behind it.
 */
export interface Cleanup {
  /** Registers `undo`; the returned function runs it now (and only once). */
  add(what: string, undo: () => void | Promise<void>): () => Promise<void>;
  /** Runs every registered undo that has not run yet, newest first. */
  runAll(): Promise<void>;
  readonly closed: boolean;
}

export class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

export function createCleanup(warn: (line: string) => void): Cleanup {
  const steps: { what: string; undo: () => void | Promise<void>; done: boolean }[] = [];
  let closed = false;

  async function runStep(step: (typeof steps)[number]) {
    if (step.done) return;
    step.done = true;
    try {
      await step.undo();
    } catch (error) {
      warn(`clean-up of ${step.what} failed: ${(error as Error).message}`);
    }
  }

  return {
    add(what, undo) {
      if (closed) throw new Interrupted();
      const step = { what, undo, done: false };
      steps.push(step);
      return () => runStep(step);
    },
    async runAll() {
      closed = true;
      while (steps.some((step) => !step.done)) {
        for (const step of [...steps].reverse()) await runStep(step);
      }
    },
    get closed() {
      return closed;
    },
  };
}
