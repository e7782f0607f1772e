import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { ext4File, fatFile, importImage, makePartitionedImage, makeUnpartitionedImage, scratch } from './helpers.js';

const EMMC_BYTES = 64 * 1024 * 1024;
const SERIAL = '10000000abcdef01';
const WIFI_KEY = 'correct-horse-battery-staple';
const TABLE = `serial,hostname,wifi_key\n${SERIAL},line-07,${WIFI_KEY}\n10000000ffffffff,line-08,\n`;

const USER_DATA = '#cloud-config\nhostname: {{table.hostname}}\n# serial {{serial}} mac {{mac}} {{mac_dash}} unit #{{sequence}} job {{job_id}} image {{image}}\n';
const META_DATA = 'instance-id: cm4-{{mac_plain}}-{{job_id}}\nlocal-hostname: {{ table.hostname }}\n';
const NETWORK_CONFIG = 'network:\n  version: 2\n  wifis:\n    wlan0:\n      access-points:\n        lab: {password: "{{table.wifi_key}}"}\n';

const LAB_PROFILE = {
  name: 'lab',
  files: [
    { partition: 1, fs: 'vfat', path: '/user-data', template: USER_DATA },
    { partition: 1, fs: 'vfat', path: '/meta-data', template: META_DATA },
    { partition: 1, fs: 'vfat', path: '/network-config', template: NETWORK_CONFIG },
    { partition: 1, fs: 'vfat', path: '/cm4/serial.txt', template: '{{serial}}\n' },
    { partition: 2, fs: 'ext4', path: '/etc/hostname', mode: '0644', template: '{{table.hostname}}\n' },
  ],
};

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

async function setUp(t: TestContext, server: TestServer, image: string) {
  await importImage(server, image, 'os');
  assert.equal((await server.admin('POST', '/api/device-table', { csv: TABLE })).status, 200);
  const saved = await server.admin('POST', '/api/profiles', LAB_PROFILE);
  assert.equal(saved.status, 201, JSON.stringify(saved.body));
  const emmc = join(scratch(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  return emmc;
}

function startClient(t: TestContext, server: TestServer, emmc: string, env: Record<string, string> = {}) {
  return runClient(t, { server: server.url, target: emmc, mac: MAC, env: { WITH_FILE_TOOLS: '1', DEVICE_SERIAL: SERIAL, DEVICE_MODEL: 'Raspberry Pi Compute Module 4 Rev 1.1', ...env } });
}

async function registered(server: TestServer) {
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
}

const allZeros = (file: string) => readFileSync(file).every((byte) => byte === 0);

test('a deploy with a profile: the files on the target FAT and ext4 partitions (read with mtools and debugfs) hold the rendered values; the job records their hashes, not their contents', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const emmc = await setUp(t, server, makePartitionedImage(dir));
  const client = startClient(t, server, emmc);
  await registered(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'lab' });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const jobId = ordered.body.id as number;
  assert.equal(await client.exited, 0, client.output());

  const job = (await server.admin('GET', `/api/jobs/${jobId}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.match(job.verification.summary, /mapped ranges verified; 5 per-device files written and read back$/);

  const userData = `#cloud-config\nhostname: line-07\n# serial ${SERIAL} mac ${MAC} DC-A6-32-00-00-01 unit #1 job ${jobId} image os\n`;
  const metaData = `instance-id: cm4-dca632000001-${jobId}\nlocal-hostname: line-07\n`;
  assert.equal(fatFile(emmc, '/user-data'), userData);
  assert.equal(fatFile(emmc, '/meta-data'), metaData);
  assert.match(fatFile(emmc, '/network-config'), new RegExp(`password: "${WIFI_KEY}"`));
  assert.equal(fatFile(emmc, '/cm4/serial.txt'), `${SERIAL}\n`);
  assert.equal(fatFile(emmc, '/cmdline.txt'), 'console=serial0,115200 root=PARTUUID=01-02 rootwait\n', "the image's own files are untouched");
  assert.equal(ext4File(emmc, '/etc/hostname'), 'line-07\n');

  // The job shows what was written by hash; the device's read-back of each matched.
  assert.deepEqual(
    job.files.map((file: { path: string; partition: number; sha256: string; read_back_sha256: string; length: number }) => [file.partition, file.path, file.sha256, file.read_back_sha256, file.length]),
    [
      [1, '/user-data', sha256(userData), sha256(userData), userData.length],
      [1, '/meta-data', sha256(metaData), sha256(metaData), metaData.length],
      [1, '/network-config', sha256(fatFile(emmc, '/network-config')), sha256(fatFile(emmc, '/network-config')), fatFile(emmc, '/network-config').length],
      [1, '/cm4/serial.txt', sha256(`${SERIAL}\n`), sha256(`${SERIAL}\n`), SERIAL.length + 1],
      [2, '/etc/hostname', sha256('line-07\n'), sha256('line-07\n'), 8],
    ],
  );
  // The Wi-Fi key is in no answer of the admin API, and its content left the database with the job.
  const views = JSON.stringify([job, (await server.admin('GET', '/api/device-table')).body, (await server.admin('GET', '/api/jobs')).body]);
  assert.ok(!views.includes(WIFI_KEY), 'the secret is not shown');
  const stored = await server.server.services.database.db.selectFrom('job_files').select('idx').where('job_id', '=', jobId).where('content', 'is not', null).execute();
  assert.deepEqual(stored, [], 'file contents are dropped once the job ended');

  // The device's record lists the files of the job by hash too.
  const record = (await server.admin('GET', `/api/records/${SERIAL}`)).body;
  assert.deepEqual(record.jobs[0].files.map((file: { path: string; sha256: string }) => [file.path, file.sha256]), job.files.map((file: { path: string; sha256: string }) => [file.path, file.sha256]));

  // The profile's sequence moved on: the next order renders #2.
  assert.equal((await server.admin('GET', '/api/profiles/lab')).body.next_sequence, 2);
});

test('a template naming a value the device lacks refuses the order with a sentence naming file and variable: no job, eMMC untouched', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const emmc = await setUp(t, server, makePartitionedImage(dir));
  // Serial 10000000ffffffff has a row, but its wifi_key is empty.
  const client = startClient(t, server, emmc, { DEVICE_SERIAL: '10000000ffffffff' });
  await registered(server);
  const refused = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'lab' });
  assert.equal(refused.status, 400);
  assert.equal(
    refused.body.message,
    `file /network-config (partition 1) of profile 'lab' needs {{table.wifi_key}} for ${MAC}, but the device table row for serial 10000000ffffffff has no value in column wifi_key; nothing was queued`,
  );
  // A device with no row at all.
  await server.admin('POST', '/api/device-table', { csv: 'serial,hostname,wifi_key\n10000000aaaaaaaa,x,y\n' });
  const noRow = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'lab' });
  assert.equal(noRow.status, 400);
  assert.match(noRow.body.message, /needs \{\{table\.hostname\}\} for .*, but the device table has no row for serial 10000000ffffffff; nothing was queued$/);
  assert.equal((await server.admin('GET', `/api/jobs?mac=${MAC}`)).body.jobs.length, 0, 'no job was created');
  assert.equal((await server.admin('GET', '/api/profiles/lab')).body.next_sequence, 1, 'no sequence number was used');
  // The client is still waiting for work: nothing reached the eMMC.
  assert.ok(allZeros(emmc), 'the eMMC is untouched');
  assert.match(client.output(), /registered; waiting/);
});

test('an image without a partition table fails the job with a sentence after the image is verified', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const emmc = await setUp(t, server, makeUnpartitionedImage(dir, 4 * 1024 * 1024));
  await importImage(server, makeUnpartitionedImage(dir, 4 * 1024 * 1024), 'raw');
  const client = startClient(t, server, emmc);
  await registered(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'raw', profile: 'lab' });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  assert.equal(await client.exited, 1, client.output());
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.equal(job.error, 'the image has no partition table (no MBR signature), so it has no partition 1 for the per-device files');
});

test('a client that cannot write files (no mtools) never starts such a job: it fails at hand-out, nothing written', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const emmc = await setUp(t, server, makePartitionedImage(dir));
  const client = startClient(t, server, emmc, { WITH_FILE_TOOLS: '' });
  await registered(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'lab' });
  assert.equal(ordered.status, 201);
  const job = await waitFor('the job to end', async () => {
    const view = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
    return view.state === 'queued' || view.state === 'running' ? undefined : view;
  });
  assert.equal(job.state, 'failed');
  assert.match(job.error, /^not started: this deploy writes 5 per-device files \(profile 'lab'\), and the device's client did not say it can write them/);
  assert.equal(job.started_at, null, 'never handed out');
  assert.ok(allZeros(emmc), 'the eMMC is untouched');
  client.kill();
});

test('a rule with a profile writes the per-device files with no operator order; one whose device lacks a value holds it with the sentence, and an unknown profile is refused', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  const emmc = await setUp(t, server, makePartitionedImage(dir));
  const unknown = await server.admin('POST', '/api/rules', { name: 'typo', action: 'deploy', image: 'os', profile: 'lba' });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message, /lba/);
  const onBackup = await server.admin('POST', '/api/rules', { name: 'odd', action: 'backup', profile: 'lab' });
  assert.equal(onBackup.status, 400);
  const rule = await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', image: 'os', profile: 'lab' });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  assert.equal(rule.body.profile, 'lab');

  const client = startClient(t, server, emmc);
  assert.equal(await client.exited, 0, client.output());
  const [job] = (await server.admin('GET', `/api/jobs?device=${MAC}`)).body.jobs;
  assert.equal(job.state, 'ok', job.error);
  assert.deepEqual(job.ordered_by, { kind: 'rule', id: rule.body.id, name: 'line' });
  assert.match(fatFile(emmc, '/user-data'), /^#cloud-config\nhostname: line-07\n/);
  assert.equal(ext4File(emmc, '/etc/hostname'), 'line-07\n');

  // A second device whose table row has no Wi-Fi key: the rule cannot render, so it holds the device.
  const other = join(dir, 'other.img');
  await makeFakeEmmc(other, EMMC_BYTES);
  const held = runClient(t, { server: server.url, target: other, mac: 'dc:a6:32:00:00:02', env: { WITH_FILE_TOOLS: '1', DEVICE_SERIAL: '10000000ffffffff', AFTER_JOB: 'poll' } });
  const hold = await waitFor('the rule to hold the second device', async () => (await server.admin('GET', '/api/devices/dc:a6:32:00:00:02')).body.rule_hold);
  assert.match(hold.reason, /^the deploy could not be ordered: .*table\.wifi_key/);
  assert.equal(allZeros(other), true, 'nothing was written to it');
  held.kill();
});
