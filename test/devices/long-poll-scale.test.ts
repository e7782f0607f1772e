import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { startTestServer } from '../helpers/server.js';

const DEVICES = 300;
const mac = (i: number) => `dc:a6:32:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

test(`${DEVICES} parked long-polls: each ordered device gets its own action before its wait runs out, the rest stay parked, the admin API answers meanwhile`, async (t) => {
  // Hundreds of devices and long-polls from one address: the per-address limits are off here.
  const server = await startTestServer(t, { maxConnectionsPerAddress: 0, deviceRegistrationLimit: 0 });
  for (let i = 0; i < DEVICES; i++) await server.device('POST', '/api/register-device', { mac: mac(i), storage_bytes: 1024 });
  const agent = new Agent({ keepAlive: true, maxSockets: DEVICES + 10 });
  t.after(() => agent.destroy());
  const url = new URL(server.url);
  const answers = new Map<string, Promise<any>>();
  for (let i = 0; i < DEVICES; i++) {
    answers.set(
      mac(i),
      new Promise((resolve) => {
        const req = request({ host: url.hostname, port: url.port, path: `/api/device-action-poll?mac=${mac(i)}&wait=60`, agent }, (res) => {
          let body = '';
          res.on('data', (chunk) => (body += chunk));
          res.on('end', () => resolve({ body: JSON.parse(body), at: Date.now() }));
        });
        // The polls still parked when the server stops end with a hang-up: that is expected.
        req.on('error', (error) => resolve({ body: { error: error.message }, at: Date.now() }));
        req.end();
      }),
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  const devices = await server.admin('GET', '/api/devices');
  assert.equal(devices.status, 200, 'the admin API answers while the polls are parked');
  assert.equal(devices.body.total, DEVICES);

  const chosen = Array.from({ length: 20 }, (_, k) => mac(k * 13));
  const orderedAt = new Map<string, number>();
  for (const device of chosen) {
    orderedAt.set(device, Date.now());
    assert.equal((await server.admin('POST', `/api/devices/${device}/backup`)).status, 201);
  }
  for (const device of chosen) {
    const { body, at } = await answers.get(device)!;
    assert.equal(body.action, 'backup', device);
    const job = (await server.admin('GET', `/api/jobs/${body.job}`)).body;
    assert.equal(job.device_mac, device, 'its own job, not another device’s');
    assert.ok(at - orderedAt.get(device)! < 60_000, 'answered before the 60 s wait ran out');
  }
  const stillParked = await Promise.race([answers.get(mac(1))!.then(() => 'answered'), new Promise((resolve) => setTimeout(resolve, 200, 'parked'))]);
  assert.equal(stillParked, 'parked', 'a device with no order keeps waiting');
});
