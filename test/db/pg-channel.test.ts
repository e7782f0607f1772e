import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { createPostgresChannel, type Channel, type ChannelState } from '../../src/db/pg-channel.js';
import { startTestPostgres } from '../helpers/postgres.js';

// Stations hear each other through one PostgreSQL (LISTEN/NOTIFY), and a station that loses the
// database reconnects on its own and says so.

function station(t: TestContext, url: string): Channel {
  const channel = createPostgresChannel({ connectionString: url, retryMs: { first: 100, max: 500 } });
  t.after(() => channel.close());
  return channel;
}

/** The next payload on `topic` (fails the test after 20 s: a lost notification, not a slow one). */
function next(channel: Channel, topic: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing on ${topic} within 20 s`)), 20_000);
    const stop = channel.subscribe(topic, (payload) => {
      clearTimeout(timer);
      stop();
      resolve(payload);
    });
  });
}

function reaches(channel: Channel, wanted: ChannelState): Promise<void> {
  if (channel.state() === wanted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the channel did not become ${wanted} within 30 s (it is ${channel.state()})`)), 30_000);
    const stop = channel.onState((state) => {
      if (state !== wanted) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
  });
}

test('an order published on station A reaches station B, on its topic only; A hears it too', async (t) => {
  const database = startTestPostgres(t);
  const [a, b] = [station(t, database.url), station(t, database.url)];
  await Promise.all([reaches(a, 'connected'), reaches(b, 'connected')]);
  let live = 0;
  b.subscribe('live', () => live++);
  const onB = next(b, 'order');
  const onA = next(a, 'order');
  await a.publish('order', { mac: 'dc:a6:32:00:00:01', job: 7 });
  assert.deepEqual(await onB, { mac: 'dc:a6:32:00:00:01', job: 7 });
  assert.deepEqual(await onA, { mac: 'dc:a6:32:00:00:01', job: 7 });
  assert.equal(live, 0, 'no live update was sent');
  await assert.rejects(a.publish('live', { html: 'x'.repeat(9000) }), /a live notification of \d+ bytes is over NOTIFY's limit \(7900\): send an id and let the stations read the rest/);
});

test('a station whose PostgreSQL goes away says reconnecting, comes back on its own, and hears what is sent after', async (t) => {
  const database = startTestPostgres(t);
  const [a, b] = [station(t, database.url), station(t, database.url)];
  await Promise.all([reaches(a, 'connected'), reaches(b, 'connected')]);
  const states: ChannelState[] = [];
  b.onState((state) => states.push(state));
  const lost = reaches(b, 'reconnecting');
  database.stop();
  await lost;
  const back = reaches(b, 'connected');
  database.start();
  await Promise.all([back, reaches(a, 'connected')]);
  assert.deepEqual(states.slice(0, 1), ['reconnecting']);
  assert.equal(states.at(-1), 'connected');
  const onB = next(b, 'order');
  await a.publish('order', { mac: 'dc:a6:32:00:00:02' });
  assert.deepEqual(await onB, { mac: 'dc:a6:32:00:00:02' });
});
