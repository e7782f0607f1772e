import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { EXT4_OFFSET, ext4File, fatFile, importImage, makePartitionedImage, scratch } from './helpers.js';

const SERIAL = '10000000abcdef01';
const ADDITION = 'cfg80211.ieee80211_regdom=DE systemd.hostname={{table.hostname}}\n';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The partitioned test image, with an ext4 /etc/motd of its own (written by debugfs on the host). */
function imageWithMotd(dir: string): string {
  const image = makePartitionedImage(dir);
  writeFileSync(join(dir, 'motd'), 'Welcome\n');
  execFileSync('debugfs', ['-w', '-R', `write ${join(dir, 'motd')} /motd`, `${image}?offset=${EXT4_OFFSET}`], { stdio: 'ignore' });
  return image;
}

async function orderWith(t: TestContext, server: TestServer, image: string, files: unknown[]) {
  await importImage(server, image, 'os');
  assert.equal((await server.admin('POST', '/api/device-table', { csv: `serial,hostname\n${SERIAL},line-07\n` })).status, 200);
  const saved = await server.admin('POST', '/api/profiles', { name: 'boot', files });
  assert.equal(saved.status, 201, JSON.stringify(saved.body));
  const emmc = join(scratch(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { WITH_FILE_TOOLS: '1', DEVICE_SERIAL: SERIAL } });
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'boot' });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  return { emmc, client, jobId: ordered.body.id as number };
}

test("append: the cmdline.txt addition goes on the image's one kernel command line after one space (its newline kept); another file gets the text at its end; the job shows both as appended", async (t) => {
  const server = await startTestServer(t);
  const { emmc, client, jobId } = await orderWith(t, server, imageWithMotd(scratch(t)), [
    { partition: 1, fs: 'vfat', path: '/cmdline.txt', append: true, template: ADDITION },
    { partition: 1, fs: 'vfat', path: '/meta-data', template: 'local-hostname: {{table.hostname}}\n' },
    { partition: 2, fs: 'ext4', path: '/motd', append: true, template: 'unit {{serial}}\n' },
  ]);
  assert.equal(await client.exited, 0, client.output());

  // The image's cmdline.txt (helpers.ts) is 'console=serial0,115200 root=PARTUUID=01-02 rootwait\n'.
  const cmdline = 'console=serial0,115200 root=PARTUUID=01-02 rootwait cfg80211.ieee80211_regdom=DE systemd.hostname=line-07\n';
  assert.equal(fatFile(emmc, '/cmdline.txt'), cmdline, 'one line holding both, with the newline at its end');
  assert.equal(fatFile(emmc, '/meta-data'), 'local-hostname: line-07\n');
  assert.equal(ext4File(emmc, '/motd'), `Welcome\nunit ${SERIAL}\n`);

  const job = (await server.admin('GET', `/api/jobs/${jobId}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.match(job.verification.summary, /; 1 per-device file written and read back; 2 appended to and read back by the device$/);
  const text = 'cfg80211.ieee80211_regdom=DE systemd.hostname=line-07';
  assert.deepEqual(
    job.files.map((f: Record<string, unknown>) => [f.path, f.append, f.sha256, f.length, f.read_back_sha256, f.read_back_length]),
    [
      ['/cmdline.txt', 'first_line', sha256(text), text.length, sha256(cmdline), cmdline.length],
      ['/meta-data', null, sha256('local-hostname: line-07\n'), 24, sha256('local-hostname: line-07\n'), null],
      ['/motd', 'end', sha256(`unit ${SERIAL}\n`), 22, sha256(`Welcome\nunit ${SERIAL}\n`), 30],
    ],
  );
  const record = (await server.admin('GET', `/api/records/${SERIAL}`)).body;
  assert.deepEqual(record.jobs[0].files.map((f: { path: string; append: string | null }) => [f.path, f.append]), [['/cmdline.txt', 'first_line'], ['/meta-data', null], ['/motd', 'end']]);
});

test('append: a file the image does not have fails the job with a sentence naming it', async (t) => {
  const server = await startTestServer(t);
  const { client, jobId } = await orderWith(t, server, makePartitionedImage(scratch(t)), [
    { partition: 2, fs: 'ext4', path: '/etc/fstab', append: true, template: '/dev/sda1 /data ext4 defaults 0 2\n' },
  ]);
  assert.equal(await client.exited, 1, client.output());
  const job = (await server.admin('GET', `/api/jobs/${jobId}`)).body;
  assert.equal(job.state, 'failed');
  assert.equal(job.error, 'per-device file /etc/fstab is to be appended to, but partition 2 (ext4) of the image has no file /etc/fstab');
});

test('append: refused at save when a cmdline.txt addition is not one line or a template is empty; the device list marks appended files in MODE; a client without files_append never starts the job; an appended file reported without its length fails', async (t) => {
  const server = await startTestServer(t);
  const cmdline = (template: string) => ({ partition: 1, fs: 'vfat', path: '/cmdline.txt', append: true, template });
  const twoLines = await server.admin('POST', '/api/profiles', { name: 'boot', files: [cmdline('quiet\nsplash\n')] });
  assert.equal(twoLines.status, 400);
  assert.equal(twoLines.body.message, 'file /cmdline.txt (partition 1, vfat) is appended to the kernel command line, which is one line, but its template has a line break before its end');
  const empty = await server.admin('POST', '/api/profiles', { name: 'boot', files: [cmdline('')] });
  assert.equal(empty.body.message, 'file /cmdline.txt (partition 1, vfat) is appended to, but its template is empty: there is nothing to append');

  const saved = await server.admin('POST', '/api/profiles', {
    name: 'boot',
    files: [cmdline('quiet\n'), { partition: 2, fs: 'ext4', path: '/motd', append: true, mode: '0600', template: 'x' }, { partition: 1, fs: 'vfat', path: '/a', template: 'a' }],
  });
  assert.equal(saved.status, 201, JSON.stringify(saved.body));
  assert.deepEqual(saved.body.files.map((f: { append: boolean }) => f.append), [true, true, false]);

  const mac = 'dc:a6:32:00:00:09';
  await server.device('POST', '/api/register-device', { mac, storage_bytes: 64 * 1024 * 1024 });
  const image = await fetch(`${server.url}/api/images?name=os&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body: Buffer.alloc(1024 * 1024, 1),
  });
  assert.equal(image.status, 201);
  const poll = (features: string) => server.device('GET', `/api/device-action-poll?mac=${mac}&format=json&wait=0&features=${features}`);

  const first = await server.admin('POST', `/api/devices/${mac}/deploy`, { profile: 'boot' });
  assert.equal((await poll('files,finish')).body.action, 'none');
  const refused = (await server.admin('GET', `/api/jobs/${first.body.id}`)).body;
  assert.equal(refused.state, 'failed');
  assert.equal(
    refused.error,
    "not started: this deploy appends to /cmdline.txt (profile 'boot'), and the device's client did not say it can append (no 'files_append' in its poll features); nothing was written",
  );

  const second = await server.admin('POST', `/api/devices/${mac}/deploy`, { profile: 'boot' });
  const answer = (await poll('files,files_append,finish')).body;
  assert.equal(answer.job, second.body.id);
  const list = await fetch(answer.files_url);
  assert.equal(
    await list.text(),
    `FILES=3\nfile 0 1 vfat f0644 5 ${sha256('quiet')} /cmdline.txt\nfile 1 2 ext4 a0600 1 ${sha256('x')} /motd\nfile 2 1 vfat 0644 1 ${sha256('a')} /a\n`,
    'the cmdline.txt text is served without its line break',
  );

  const { deviceFiles, jobs } = server.server.services;
  const job = await jobs.get(second.body.id);
  const whole = `0:${sha256('console=x quiet\n')}:16,1:${sha256('Welcome\nx')}:9,2:${sha256('a')}`;
  assert.equal(await deviceFiles.reportProblem(job, whole), null);
  assert.equal(
    await deviceFiles.reportProblem(job, `0:${sha256('quiet')},1:${sha256('x')}:1,2:${sha256('a')}`),
    'per-device file /cmdline.txt (partition 1) was appended to, but the device did not report the length of the file it read back',
  );
  assert.equal(
    await deviceFiles.reportProblem(job, `0:${sha256('quie')}:4,1:${sha256('x')}:1,2:${sha256('a')}`),
    'per-device file /cmdline.txt (partition 1) reads back as 4 bytes, fewer than the 5 bytes appended to it',
  );
});
