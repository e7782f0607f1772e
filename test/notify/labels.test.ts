import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, writeImageFile } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { startPrinter } from './listeners.js';

const TEMPLATE = [
  '^XA^CI28',
  '^FO20,20^FDSN {{serial}} / {{model}}^FS',
  '^FO20,60^FD{{mac}} {{mac_plain}}^FS',
  '^FO20,100^FD{{image}} {{image_sha256_short}} job {{job_id}}^FS',
  '^FO20,140^FD{{date}} {{time}} UTC^FS',
  '^FO20,180^FD{{verification}}^FS',
  '^XZ',
].join('\n');

async function waitForRegistration(server: TestServer) {
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
}

test('an ok deploy sends its rendered ZPL label to the printer port; Reprint sends it again', async (t) => {
  const server = await startTestServer(t);
  const printer = await startPrinter(t);
  const saved = await server.admin('POST', '/api/labels', { template: TEMPLATE, output: printer.address });
  assert.equal(saved.status, 200, JSON.stringify(saved.body));
  assert.equal(saved.body.enabled, true, 'a template and a printer turn labels on');

  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const image = await addImage(t, server, 'raspios', 1024 * 1024 + 3, { makeDefault: true });
  // A model with ZPL's command characters in it: they must not reach the printer as commands.
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { DEVICE_SERIAL: '10000000c0ffee01', DEVICE_MODEL: 'CM4^XZ~JR Rev 1.1' } });
  await waitForRegistration(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);

  await waitFor('a label at the printer', () => printer.labels.length === 1);
  const expected = [
    '^XA^CI28',
    '^FO20,20^FDSN 10000000c0ffee01 / CM4 XZ JR Rev 1.1^FS',
    `^FO20,60^FD${MAC} dca632000001^FS`,
    `^FO20,100^FDraspios ${image.sha256.slice(0, 12)} job ${job.id}^FS`,
    `^FO20,140^FD${job.ended_at.slice(0, 10)} ${job.ended_at.slice(11, 19)} UTC^FS`,
    `^FO20,180^FD${job.verification.summary}^FS`,
    '^XZ',
  ].join('\n');
  assert.equal(printer.labels[0], expected);
  const labels = await waitFor('the label marked delivered', async () => {
    const recent = (await server.admin('GET', '/api/labels')).body.recent;
    return recent[0]?.state === 'delivered' ? recent : undefined;
  });
  assert.deepEqual([labels[0].event, labels[0].job_id, labels[0].target], ['label', job.id, printer.address]);

  const reprint = await server.admin('POST', `/api/jobs/${job.id}/label`);
  assert.equal(reprint.status, 202);
  assert.equal(reprint.body.event, 'label.reprint');
  await waitFor('the reprint at the printer', () => printer.labels.length === 2);
  assert.equal(printer.labels[1], expected, 'the reprint is the same label');
});

test("with backups asked for, an ok backup's label is a file in the spool folder; bad settings and reprints of unfinished jobs are refused", async (t) => {
  const server = await startTestServer(t);
  const spool = tempDir(t);
  const unknown = await server.admin('POST', '/api/labels', { template: '^XA^FD{{serial}} {{colour}}^FS^XZ', output: spool });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.message, /names \{\{colour\}\}, which is not a label variable/);
  assert.match((await server.admin('POST', '/api/labels', { template: '^XA^XZ', output: join(spool, 'nope') })).body.message, /spool folder .*nope does not exist/);
  assert.match((await server.admin('POST', '/api/labels', { template: '^XA^XZ', output: 'printer.local:9100' })).body.message, /neither a printer \(tcp:\/\/host:9100\) nor an absolute spool folder/);
  assert.equal((await server.admin('GET', '/api/labels')).body.enabled, false, 'nothing refused was saved');

  const saved = await server.admin('POST', '/api/labels', { template: '^XA^FD{{mac_plain}} {{serial}} {{image}}^FS^XZ', output: spool, backups: true });
  assert.equal(saved.status, 200, JSON.stringify(saved.body));

  const emmc = join(tempDir(t), 'emmc.img');
  writeImageFile(emmc, 4 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await waitForRegistration(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(await client.exited, 0, client.output());
  const files = await waitFor('a label file', () => {
    const names = readdirSync(spool);
    return names.length === 1 && names[0]!.endsWith('.zpl') ? names : undefined;
  });
  assert.match(files[0]!, new RegExp(`^cm4prov-job-${ordered.body.id}-\\d+\\.zpl$`));
  assert.equal(readFileSync(join(spool, files[0]!), 'utf8'), '^XA^FDdca632000001 - -^FS^XZ', 'no serial and no image: "-"');

  await server.admin('POST', `/api/jobs/${ordered.body.id}/label`);
  await waitFor('a second label file', () => readdirSync(spool).filter((name) => name.endsWith('.zpl')).length === 2);

  await registerDevice(server, 'dc:a6:32:00:00:02');
  const queued = await server.admin('POST', '/api/devices/dc:a6:32:00:00:02/backup');
  const early = await server.admin('POST', `/api/jobs/${queued.body.id}/label`);
  assert.equal(early.status, 409);
  assert.match(early.body.message, /is queued: only a job that ended ok gets a label/);
});
