import type { ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';

export interface WatchedProcess {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  exited: Promise<number | null>;
  /** Resolves when the output matches `pattern`; rejects if the process exits or the time runs out first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal to the process group (the child was spawned detached), so its children get it too. */
  kill(signal?: NodeJS.Signals): void;
}

/** Collects a detached child's output and kills its process group when the test ends. */
export function watchProcess(t: TestContext, child: ChildProcess, name: string, defaultTimeoutMs: number): WatchedProcess {
  let text = '';
  const listeners = new Set<() => void>();
  const collect = (chunk: Buffer) => {
    text += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolveExit) => child.on('exit', (code) => resolveExit(code)));
  const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // Already gone.
    }
  };
  t.after(() => kill());
  return {
    child,
    output: () => text,
    exited,
    kill,
    waitForOutput(pattern, timeoutMs = defaultTimeoutMs) {
      return new Promise((resolveWait, reject) => {
        const fail = (why: string) => {
          if (listeners.delete(check)) reject(new Error(`${name} ${why} without printing ${pattern}; it printed:\n${text}`));
        };
        const timer = setTimeout(() => fail(`ran ${timeoutMs} ms`), timeoutMs);
        const check = () => {
          if (!pattern.test(text)) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolveWait();
        };
        listeners.add(check);
        // 'close', not 'exit': output still in the pipes when it exits may match.
        child.once('close', () => {
          clearTimeout(timer);
          fail('exited');
        });
        check();
      });
    },
  };
}
