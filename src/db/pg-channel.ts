import { EventEmitter } from 'node:events';
import pg from 'pg';

/**
 * Word between stations through PostgreSQL's LISTEN/NOTIFY
 * (https://www.postgresql.org/docs/current/sql-notify.html): an order placed on one station
 * reaches the station its device polls, and live dashboard updates cross stations, without
 * polling the database. A notification sent while a station's connection is down is lost to it:
 * on reconnecting the channel says `resumed`, and its users re-read what they wait on.
 */
export type ChannelState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface Channel {
  /** Sends `payload` (JSON, under NOTIFY's 8000-byte limit) to every station listening on `topic`, this one included. */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Calls `listener` with each payload on `topic`; returns the unsubscribe. */
  subscribe(topic: string, listener: (payload: unknown) => void): () => void;
  state(): ChannelState;
  /** Every change of state; after `connected` following `reconnecting`, re-read what was waited on. */
  onState(listener: (state: ChannelState) => void): () => void;
  close(): Promise<void>;
}

/** NOTIFY takes at most 8000 bytes; a few are kept for the topic. */
const MAX_PAYLOAD_BYTES = 7900;
const CHANNEL = 'cm4prov';

export class PayloadTooLarge extends Error {
  override name = 'PayloadTooLarge';
}

export function createPostgresChannel(options: { connectionString: string; retryMs?: { first: number; max: number } }): Channel {
  const retry = options.retryMs ?? { first: 250, max: 5000 };
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let state: ChannelState = 'connecting';
  let listener: pg.Client | undefined;
  let delay = retry.first;
  let timer: NodeJS.Timeout | undefined;
  const publisher = new pg.Pool({ connectionString: options.connectionString, max: 2 });
  publisher.on('error', () => {}); // an idle publisher connection lost: the pool opens another

  const setState = (next: ChannelState) => {
    if (state === next) return;
    state = next;
    events.emit('state', next);
  };

  const connect = async () => {
    const client = new pg.Client({ connectionString: options.connectionString });
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || !message.payload) return;
      const { topic, payload } = JSON.parse(message.payload) as { topic: string; payload: unknown };
      events.emit(`topic:${topic}`, payload);
    });
    const lost = () => {
      if (listener !== client || state === 'closed') return;
      listener = undefined;
      client.removeAllListeners('error');
      client.on('error', () => {});
      void client.end().catch(() => {});
      setState('reconnecting');
      schedule();
    };
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch {
      client.on('error', () => {});
      void client.end().catch(() => {});
      if (state !== 'closed') {
        setState(state === 'connecting' ? 'connecting' : 'reconnecting');
        schedule();
      }
      return;
    }
    if (state === 'closed') return void client.end().catch(() => {});
    listener = client;
    delay = retry.first;
    setState('connected');
  };

  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void connect(), delay);
    delay = Math.min(delay * 2, retry.max);
  };

  void connect();

  return {
    async publish(topic, payload) {
      const text = JSON.stringify({ topic, payload });
      if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES) {
        throw new PayloadTooLarge(`a ${topic} notification of ${Buffer.byteLength(text)} bytes is over NOTIFY's limit (${MAX_PAYLOAD_BYTES}): send an id and let the stations read the rest`);
      }
      await publisher.query('SELECT pg_notify($1, $2)', [CHANNEL, text]);
    },
    subscribe(topic, callback) {
      events.on(`topic:${topic}`, callback);
      return () => void events.off(`topic:${topic}`, callback);
    },
    state: () => state,
    onState(callback) {
      events.on('state', callback);
      return () => void events.off('state', callback);
    },
    async close() {
      setState('closed');
      clearTimeout(timer);
      await Promise.all([listener?.end().catch(() => {}), publisher.end().catch(() => {})]);
      listener = undefined;
    },
  };
}
