import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, writeImageFile } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { buildCid, CM4_CID } from './cid.js';

const SERIAL = '10000000c0ffee01';

async function jobEnded(server: TestServer, id: number) {
  return waitFor(`job ${id} to end`, async () => {
    const job = (await server.admin('GET', `/api/jobs/${id}`)).body;
    return job.state !== 'queued' && job.state !== 'running' ? job : undefined;
  });
}

test('the real client sends the CID from EMMC_CID_FILE; the device and its record show it decoded', async (t) => {
  const server = await startTestServer(t);
  const dir = tempDir(t);
  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 8 * 1024 * 1024);
  const cid = buildCid(CM4_CID);
  writeFileSync(join(dir, 'cid'), `${cid}\n`); // as sysfs gives it, with a newline
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { EMMC_CID_FILE: join(dir, 'cid'), DEVICE_SERIAL: SERIAL } });
  await client.waitForOutput(/waiting for the operator/);

  const device = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(device.emmc.cid, cid);
  assert.equal(device.emmc.manufacturer, 'Samsung');
  assert.equal(device.emmc.name, 'BJTD4R');
  assert.equal(device.emmc.revision, '1.2');
  assert.equal(device.emmc.serial, '0xa1b2c3d4');
  assert.equal(device.emmc.manufactured.year, 2021);
  assert.equal(device.emmc.manufactured.month, 3);
  assert.equal(device.emmc.crc, 'valid');
  const record = (await server.admin('GET', `/api/records/${SERIAL}`)).body;
  assert.equal(record.keyed_by, 'serial');
  assert.equal(record.emmc.cid, cid);
  assert.deepEqual(record.macs.map((m: { emmc_cid: string }) => m.emmc_cid), [cid]);
});

test('a client with a file as its target and no EMMC_CID_FILE sends no CID', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 8 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await client.waitForOutput(/waiting for the operator/);
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.emmc, null);
});

test('a malformed emmc_cid is refused with a sentence and the device is not registered', async (t) => {
  const server = await startTestServer(t);
  const reply = await server.device('POST', '/api/register-device', { mac: MAC, emmc_cid: '150100424a5444345212zz' });
  assert.equal(reply.status, 400);
  assert.match(reply.body.message, /^invalid emmc_cid '150100424a5444345212zz': expected the eMMC's CID register as 32 hex digits/);
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).status, 404);
  assert.equal((await server.admin('GET', '/api/records')).body.total, 0);
});

test('two MACs with one serial are one record; a device without a serial is its own record, by MAC', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, 'dc:a6:32:00:00:01', { serial: SERIAL, model: 'CM4 on carrier A' });
  await registerDevice(server, 'dc:a6:32:00:00:02', { serial: SERIAL, model: 'CM4 on carrier B' });
  await registerDevice(server, 'dc:a6:32:00:00:03');
  const { records, total } = (await server.admin('GET', '/api/records')).body;
  assert.equal(total, 2);
  const bySerial = records.find((r: { key: string }) => r.key === SERIAL);
  assert.deepEqual(bySerial.macs.map((m: { mac: string }) => m.mac), ['dc:a6:32:00:00:01', 'dc:a6:32:00:00:02']);
  assert.equal(bySerial.model, 'CM4 on carrier B', 'the model of the MAC seen last');
  const byMac = records.find((r: { keyed_by: string }) => r.keyed_by === 'mac');
  assert.equal(byMac.key, 'dc:a6:32:00:00:03');
  assert.equal(byMac.serial, null);
  // Either MAC (any spelling) finds the serial's record.
  assert.equal((await server.admin('GET', '/api/records/DC-A6-32-00-00-02')).body.key, SERIAL);
  const missing = await server.admin('GET', '/api/records/no-such-thing');
  assert.equal(missing.status, 404);
  assert.match(missing.body.message, /^no device record for 'no-such-thing'/);
  // Search and paging, as /api/devices does them.
  assert.equal((await server.admin('GET', '/api/records?search=carrier%20A')).body.records[0].key, SERIAL);
  assert.equal((await server.admin('GET', '/api/records?search=dca6320000')).body.total, 2);
  const first = (await server.admin('GET', '/api/records?limit=1')).body;
  assert.equal(first.records.length, 1);
  const second = (await server.admin('GET', `/api/records?limit=1&cursor=${encodeURIComponent(first.next)}`)).body;
  assert.notEqual(second.records[0].key, first.records[0].key);
  assert.equal(second.next, null);
  assert.equal((await server.admin('GET', '/api/records?cursor=nonsense')).status, 400);
});

test('a deploy and a backup by the real client: the record lists both with the image sha256 and what each proved', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  writeImageFile(emmc, 8 * 1024 * 1024);
  const image = await addImage(t, server, 'raspios', 1024 * 1024 + 17, { makeDefault: true });
  runClient(t, { server: server.url, target: emmc, mac: MAC, env: { AFTER_JOB: 'poll', DEVICE_SERIAL: SERIAL } });
  await waitFor('the client to register', async () => (await server.admin('GET', `/api/devices/${MAC}`)).status === 200);
  const deploy = await jobEnded(server, (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body.id);
  assert.equal(deploy.state, 'ok', deploy.error);
  const backup = await jobEnded(server, (await server.admin('POST', `/api/devices/${MAC}/backup`)).body.id);
  assert.equal(backup.state, 'ok', backup.error);

  const record = (await server.admin('GET', `/api/records/${SERIAL}`)).body;
  assert.deepEqual(record.jobs.map((j: { kind: string }) => j.kind), ['deploy', 'backup']);
  const [deployed, backedUp] = record.jobs;
  assert.deepEqual(deployed.image, { name: 'raspios', sha256: image.sha256 });
  assert.equal(deployed.verification.scope, 'mapped_ranges');
  assert.equal(deployed.verification.checked, true);
  assert.match(deployed.verification.summary, /mapped ranges verified/);
  assert.deepEqual(deployed.ordered_by, { kind: 'operator' });
  assert.ok(deployed.started_at && deployed.ended_at && deployed.duration_seconds !== null);
  assert.equal(backedUp.backup_id, backup.backup_id);
  assert.equal(backedUp.verification.scope, 'device_sha256');
  assert.equal(record.backups.length, 1);
  assert.equal(record.backups[0].id, backup.backup_id);
  assert.equal(record.backups[0].sha256, backedUp.sha256);
});

test('the CSV has one row per job with the identity columns, and a hostile model cannot become a formula', async (t) => {
  const server = await startTestServer(t);
  const hostile = '=HYPERLINK("http://evil.example","click"),1';
  await registerDevice(server, MAC, { serial: SERIAL, model: hostile, emmc_cid: buildCid(CM4_CID) });
  await registerDevice(server, 'dc:a6:32:00:00:09');
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  await server.admin('POST', `/api/devices/${MAC}/cancel`);
  const response = await fetch(`${server.url}/api/records.csv`, { headers: { authorization: `Bearer ${server.token}` } });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type')!, /^text\/csv/);
  const lines = (await response.text()).trimEnd().split('\r\n');
  assert.equal(lines[0], 'record,serial,device_mac,model,emmc_cid,emmc_manufacturer,emmc_name,emmc_serial,emmc_manufactured,job,action,state,image,image_sha256,backup_id,ordered_by,queued_at,started_at,ended_at,duration_seconds,bytes,throughput_mb_per_s,sha256,verified,verification,first_boot,first_boot_at,first_boot_os,first_boot_kernel,error');
  assert.equal(lines.length, 3, 'one row for the job, one for the device without jobs');
  assert.ok(lines[1]!.startsWith(`${SERIAL},${SERIAL},${MAC},"'=HYPERLINK(""http://evil.example"",""click""),1",${buildCid(CM4_CID)},Samsung,BJTD4R,0xa1b2c3d4,`), lines[1]);
  assert.match(lines[1]!, new RegExp(`,${ordered.id},backup,cancelled,,,,operator,`));
  assert.ok(lines[2]!.startsWith('dc:a6:32:00:00:09,,dc:a6:32:00:00:09,,'), lines[2]);
  assert.ok(lines[2]!.endsWith(',,,,,,,,,,,,,,,,'), 'no job columns for a device without jobs');
});
