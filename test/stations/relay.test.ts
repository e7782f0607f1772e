import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { createPostgresChannel } from '../../src/db/pg-channel.js';
import { createEventBus, type DomainEvents } from '../../src/shared/events.js';
import { relayStationEvents } from '../../src/stations/relay.js';
import { testDatabaseUrl } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

// Each station's events reach the others' views through PostgreSQL; the domain listeners of a
// station hear only what happened on it.

async function station(t: TestContext, url: string) {
  const channel = createPostgresChannel({ connectionString: url });
  t.after(() => channel.close());
  await waitFor('the channel', () => channel.state() === 'connected', 20_000, 20);
  const local = createEventBus();
  const events = relayStationEvents({ local, channel, log: pino({ level: 'silent' }) });
  t.after(() => events.close());
  const seen: Array<[string, unknown]> = [];
  const remote: Array<[string, unknown]> = [];
  const localSeen: Array<[string, unknown]> = [];
  for (const name of ['job.changed', 'device.changed'] as const) {
    events.bus.on(name, (payload) => seen.push([name, payload]));
    events.onRemote(name, (payload) => remote.push([name, payload]));
    local.on(name, (payload) => localSeen.push([name, payload]));
  }
  return { local, seen, remote, localSeen };
}

test("a change on station A reaches B's views and B's remote listeners, never B's domain listeners; A's views see it once", async (t) => {
  const url = await testDatabaseUrl(t);
  const [a, b] = [await station(t, url), await station(t, url)];
  const change: DomainEvents['job.changed'] = { jobId: 7, mac: 'dc:a6:32:00:00:01', state: 'queued' };
  // The job's row goes with the change on A only (its webhooks' payload); B gets the change.
  const snapshot = { id: 7, device_mac: change.mac, state: 'queued', token: 'a job token stays on its station' } as unknown as DomainEvents['job.changed']['snapshot'];
  a.local.emit('job.changed', { ...change, snapshot });
  await waitFor("B's views", () => b.seen.length === 1, 20_000, 20);
  assert.deepEqual(b.seen, [['job.changed', change]]);
  assert.deepEqual(b.remote, [['job.changed', change]]);
  assert.deepEqual(b.localSeen, [], "B's webhooks and labels do not act on A's change");
  b.local.emit('device.changed', { mac: 'dc:a6:32:00:00:02' });
  await waitFor("A's views", () => a.seen.length === 2, 20_000, 20);
  assert.deepEqual(a.seen, [['job.changed', { ...change, snapshot }], ['device.changed', { mac: 'dc:a6:32:00:00:02' }]], 'its own change once (not again through NOTIFY), then B’s');
  assert.deepEqual(a.remote, [['device.changed', { mac: 'dc:a6:32:00:00:02' }]]);
});
