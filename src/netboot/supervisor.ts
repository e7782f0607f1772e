import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';

export type DnsmasqState = 'stopped' | 'starting' | 'running' | 'restarting';

export interface DnsmasqStatus {
  state: DnsmasqState;
  pid: number | null;
  since: string | null;
  restarts: number;
  /** How the last run ended, e.g. "exit code 2" or "signal SIGKILL". */
  last_exit: string | null;
  /** dnsmasq's own last lines before it stopped: usually the reason. */
  last_output: string[];
}

export interface SupervisorOptions {
  command: string;
  args: string[];
  log: Logger;
  clock: Clock;
  /** Every line dnsmasq logs (stdout and stderr). */
  onLine: (line: string) => void;
  onChange?: (status: DnsmasqStatus) => void;
  /** Waits before each restart; the last one repeats. */
  restartDelaysMs?: number[];
}

/**
 * Runs dnsmasq as a child process and keeps it running: a crash is followed by a restart with
 * growing back-off, a stop ends it (SIGTERM, then SIGKILL). dnsmasq runs with --no-daemon, so
 * the PID is the child's.
 */
export function createDnsmasqSupervisor(options: SupervisorOptions) {
  const { command, args, log, clock, onLine } = options;
  const delays = options.restartDelaysMs ?? [500, 1000, 2000, 5000, 10_000, 30_000];
  let child: ChildProcess | undefined;
  let state: DnsmasqState = 'stopped';
  let since: number | null = null;
  let restarts = 0;
  let failuresInARow = 0;
  let lastExit: string | null = null;
  const recent: string[] = [];
  let retry: NodeJS.Timeout | undefined;
  let stopping = false;

  const status = (): DnsmasqStatus => ({
    state,
    pid: child?.pid ?? null,
    since: since === null ? null : new Date(since).toISOString(),
    restarts,
    last_exit: lastExit,
    last_output: [...recent],
  });
  const setState = (next: DnsmasqState) => {
    state = next;
    since = clock.now();
    options.onChange?.(status());
  };

  function launch() {
    setState('starting');
    const started = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    for (const stream of [started.stdout!, started.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        recent.push(line);
        if (recent.length > 20) recent.shift();
        if (state === 'starting' && /dnsmasq\[\d+\]: started/.test(line)) {
          failuresInARow = 0;
          setState('running');
        }
        onLine(line);
      });
    }
    started.on('error', (error) => {
      lastExit = `could not start ${command}: ${error.message}`;
      log.error({ err: error }, 'dnsmasq could not be started');
    });
    started.on('exit', (code, signal) => {
      child = undefined;
      lastExit = signal ? `signal ${signal}` : `exit code ${code}`;
      if (stopping) {
        setState('stopped');
        return;
      }
      failuresInARow += 1;
      restarts += 1;
      const delay = delays[Math.min(failuresInARow - 1, delays.length - 1)]!;
      log.warn({ lastExit, output: recent.slice(-3), delay }, 'dnsmasq stopped; restarting it');
      setState('restarting');
      retry = setTimeout(() => {
        retry = undefined;
        launch();
      }, delay);
    });
  }

  return {
    status,
    start() {
      stopping = false;
      if (!child && !retry) launch();
    },
    async stop(): Promise<void> {
      stopping = true;
      clearTimeout(retry);
      retry = undefined;
      const running = child;
      if (!running) {
        if (state !== 'stopped') setState('stopped');
        return;
      }
      const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
      running.kill('SIGTERM');
      const timer = setTimeout(() => running.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export type DnsmasqSupervisor = ReturnType<typeof createDnsmasqSupervisor>;
