import { EventEmitter } from 'node:events';
import type { JobRow } from '../jobs/store.js';

/** What changed, for listeners that keep views live (long-polls, SSE, `--wait`). */
export interface DomainEvents {
  'device.changed': { mac: string };
  'job.changed': {
    jobId: number;
    mac: string;
    state: string;
    /**
     * The row as this change left it, so a listener that acts on the change (a webhook's payload)
     * shows the job as it was then, not as a later change left it. This station's only: the relay
     * to other stations drops it (stations/relay.ts).
     */
    snapshot?: JobRow;
  };
  'image.changed': { name: string };
  'backup.changed': { backupId: number };
  'netboot.changed': Record<string, never>;
  /** A rule was added, changed, moved or removed, or the line paused or resumed (src/rules/). */
  'rules.changed': Record<string, never>;
}

export interface EventBus {
  emit<K extends keyof DomainEvents>(name: K, payload: DomainEvents[K]): void;
  on<K extends keyof DomainEvents>(name: K, listener: (payload: DomainEvents[K]) => void): () => void;
}

export function createEventBus(): EventBus {
  const emitter = new EventEmitter();
  // Every long-polling device adds a listener; a thousand of them is normal, not a leak.
  emitter.setMaxListeners(0);
  return {
    emit(name, payload) {
      emitter.emit(name, payload);
    },
    on(name, listener) {
      emitter.on(name, listener);
      return () => emitter.off(name, listener);
    },
  };
}
