import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { serverWithChunkedImage } from '../helpers/chunk-stream-server.js';
import type { Fault } from '../helpers/fault-proxy.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15, health: a station that loses PostgreSQL answers devices "try again" (never a wrong
// action), says so to a person opening its dashboard, and carries on by itself once the database
// is back; the deploy that was running ends ok, once.

test('PostgreSQL stopped in the middle of a deploy: devices are told to try again, the dashboard says why, and the deploy ends ok once it is back', async (t) => {
  const postgres = startTestPostgres(t);
  const faults: Fault[] = [];
  const { proxy, server, view, cacheBytes } = await serverWithChunkedImage(t, faults, { database: postgres.url, station: 'line-1' });
  faults.push({ stallAfter: Math.floor(cacheBytes / 2) });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 96 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { STALL_TIMEOUT: '600' } });
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  await waitFor('the stream to stall halfway', async () => (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body.bytes_verified > 0);

  postgres.stop();
  const poll = await server.device('GET', '/api/device-action-poll?mac=dc:a6:32:00:00:99');
  assert.equal(poll.status, 503, 'another device asking for work is told to come back, not "none"');
  assert.equal(poll.body.error, 'database_unreachable');
  const login = await fetch(`${server.url}/login`, { headers: { accept: 'text/html' } });
  assert.equal(login.status, 503);
  assert.equal(login.headers.get('retry-after'), '5');
  assert.match(await login.text(), /This station cannot answer right now[\s\S]*The server cannot reach its database[\s\S]*reloads every 5 seconds/);

  postgres.start();
  proxy.endStalls(); // the client resumes at its first unverified chunk and reports through the outage's 503s
  assert.equal(await client.exited, 0, client.output());
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.station, 'line-1', 'the station that served it');
  const jobs = (await server.admin('GET', `/api/jobs?device=${MAC}`)).body;
  assert.equal(jobs.total, 1, 'nothing ordered or handed out twice');
  assert.equal(await sha256OfFile(emmc, view.size), view.sha256, 'the eMMC holds the image');
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.station, 'line-1');
});
