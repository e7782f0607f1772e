import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Channel } from '../db/pg-channel.js';
import { createEventBus, type DomainEvents, type EventBus } from '../shared/events.js';

/** What other stations' dashboards and parked polls follow: every domain event, by name. */
export const RELAYED_EVENTS: readonly (keyof DomainEvents)[] = [
  'device.changed',
  'job.changed',
  'image.changed',
  'backup.changed',
  'netboot.changed',
  'rules.changed',
];

const TOPIC = 'events';

interface Relayed {
  /** The process that sent it: a station's own events come back to it through NOTIFY and are dropped. */
  from: string;
  name: keyof DomainEvents;
  payload: unknown;
}

/** An event's payload without what stays on this station (a job change's row snapshot). */
function forOtherStations(payload: object): object {
  if (!('snapshot' in payload)) return payload;
  const { snapshot: _local, ...shared } = payload;
  return shared;
}

export interface StationEvents {
  /** Every station's events: this station's as they happen, the others' as they arrive. For views and waiters. */
  bus: EventBus;
  /** Calls `listener` with another station's event only (what this station did itself, it already knows). */
  onRemote<K extends keyof DomainEvents>(name: K, listener: (payload: DomainEvents[K]) => void): () => void;
  close(): void;
}

/**
 * Joins this station's event bus to the others' through the channel (PostgreSQL LISTEN/NOTIFY):
 * a device that changed on station A redraws its row on B's dashboard, and an order placed on A
 * wakes the device's parked poll on B. Domain listeners (webhooks, labels, files) stay on the
 * local bus, so each change is acted on once, by the station where it happened.
 */
export function relayStationEvents(options: { local: EventBus; channel: Channel; log: Logger }): StationEvents {
  const { local, channel, log } = options;
  const instance = randomUUID();
  const all = createEventBus();
  const remote = createEventBus();
  const offs = RELAYED_EVENTS.map((name) =>
    local.on(name, (payload) => {
      all.emit(name, payload);
      const message: Relayed = { from: instance, name, payload: forOtherStations(payload) };
      channel.publish(TOPIC, message).catch((error: Error) => log.warn({ err: error, event: name }, 'could not tell the other stations of a change'));
    }),
  );
  const unsubscribe = channel.subscribe(TOPIC, (message) => {
    const { from, name, payload } = message as Relayed;
    if (from === instance || !RELAYED_EVENTS.includes(name)) return;
    all.emit(name, payload as never);
    remote.emit(name, payload as never);
  });
  return {
    bus: all,
    onRemote: (name, listener) => remote.on(name, listener),
    close() {
      offs.forEach((off) => off());
      unsubscribe();
    },
  };
}

/** One station alone (SQLite): its own bus is every station's. */
export function singleStationEvents(local: EventBus): StationEvents {
  return { bus: local, onRemote: () => () => {}, close() {} };
}
