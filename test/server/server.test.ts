import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { DEFAULT_IDLE_LIMITS } from '../../src/http/idle-connections.js';

test('no whole-request timer can cut a long transfer; only an idle connection is cut', async (t) => {
  const server = await startTestServer(t);
  const http = server.server.httpServer;
  assert.equal(http.requestTimeout, 0);
  assert.equal(http.timeout, DEFAULT_IDLE_LIMITS.idleMs);
});

test('device, queued action and job history are all still there after a restart', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, MAC, { serial: '10000000aabbccdd' });
  const first = await server.admin('POST', `/api/devices/${MAC}/backup`);
  await server.admin('POST', `/api/devices/${MAC}/cancel`);
  const pending = await server.admin('POST', `/api/devices/${MAC}/backup`);
  await server.restart();
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.serial, '10000000aabbccdd');
  const jobs = (await server.admin('GET', '/api/jobs')).body.jobs;
  assert.deepEqual(jobs.map((job: any) => [job.id, job.state]), [[pending.body.id, 'queued'], [first.body.id, 'cancelled']]);
  assert.equal((await poll(server)).job, pending.body.id);
});

test('stopping the server does not wait for parked long-polls', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const parked = fetch(`${server.url}/api/device-action-poll?mac=${MAC}&wait=120`).then(() => 'answered', () => 'cut');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const stopping = server.close().then(() => 'closed');
  let timer: NodeJS.Timeout | undefined;
  const patience = new Promise((resolve) => (timer = setTimeout(() => resolve('still waiting'), 10_000)));
  assert.equal(await Promise.race([stopping, patience]), 'closed', 'closed long before the 120 s poll would end');
  clearTimeout(timer);
  assert.equal(await parked, 'cut');
});
