import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { deployDialog, deviceRow } from '../../src/dashboard/views/devices.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

test('a client that exits while its poll is parked shows as not polling at once, not after 90 s, until it polls again', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 1024 * 1024);
  await addImage(t, server, 'small', 64 * 1024, { makeDefault: true });
  const env = { POLL_WAIT: '30' };
  const first = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await first.waitForOutput(/waiting for the operator/);
  await waitFor('the poll to park', () => server.server.services.jobs.waitingPolls() === 1);
  const polling = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(polling.client_hung_up_at, null, 'a parked poll is a client waiting for work');

  first.kill('SIGKILL');
  const gone = await waitFor('the server to see the hang-up', async () => {
    const device = (await server.admin('GET', `/api/devices/${MAC}`)).body;
    return device.client_hung_up_at ? device : null;
  });
  assert.equal(gone.stale, false, 'well within the 90 s after which a device is stale');
  const services = server.server.services;
  const view = await services.devices.view(await services.devices.get(MAC));
  const row = String(deviceRow(view, Date.now()));
  assert.match(row, />Not polling</);
  assert.match(row, /Client hung up its poll/);
  assert.doesNotMatch(row, /Waiting for work/);
  const dialog = String(deployDialog(view, await services.images.list(), 'emmc', Date.now()));
  assert.match(dialog, /data-poll-warning/);
  assert.match(dialog, /its client is not polling/);

  const second = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await second.waitForOutput(/waiting for the operator/);
  const back = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(back.client_hung_up_at, null, 'heard from again');
  assert.match(String(deviceRow(await services.devices.view(await services.devices.get(MAC)), Date.now())), /Waiting for work/);
});
