import { sql } from 'kysely';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { jobStatus } from '../../src/dashboard/views/jobs.js';
import { addImage, registerDevice } from '../helpers/fixtures.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// A client written the way a new user would write one from the original flow description and
// nothing else: register with MAC and IP, poll, `curl url | dd`, `dd | curl` upload. It never
// reports progress or a result, never sends `features` or its eMMC size.
const ORIGINAL_CLIENT = `#!/bin/sh
set -u
curl -s -X POST -d "mac=$MAC" -d "ip=$IP" "$SERVER/api/register-device" > /dev/null || exit 3
echo registered
while :; do
  reply=$(curl -s "$SERVER/api/device-action-poll?mac=$MAC")
  action=$(echo "$reply" | sed -n 's/.*"action":"\\([a-z]*\\)".*/\\1/p')
  case $action in
    deploy)
      url=$(echo "$reply" | sed -n 's/.*"url":"\\([^"]*\\)".*/\\1/p')
      curl -s \${CURL_OPTS:-} "$url" | dd of="$TARGET" bs=4M conv=notrunc 2> /dev/null
      exit $? ;;
    backup)
      upload=$(echo "$reply" | sed -n 's/.*"upload_url":"\\([^"]*\\)".*/\\1/p')
      dd if="$TARGET" bs=4M 2> /dev/null | curl -s -T - "$upload" > /dev/null
      exit $? ;;
  esac
  sleep 1
done
`;

const MAC = 'dc:a6:32:0c:0c:01';
const BUSYBOX = execFileSync('sh', ['-c', 'command -v busybox']).toString().trim();

function runOriginalClient(t: TestContext, server: TestServer, target: string, env: Record<string, string> = {}) {
  const script = join(tempDir(t), 'original-client.sh');
  writeFileSync(script, ORIGINAL_CLIENT);
  let output = '';
  const child = spawn(BUSYBOX, ['sh', script], {
    env: { PATH: process.env.PATH, SERVER: server.url, MAC, IP: '10.20.50.150', TARGET: target, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  t.after(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { exited, output: () => output };
}

const job = async (server: TestServer, id: number) => (await server.admin('GET', `/api/jobs/${id}`)).body;

const registered = (server: TestServer) =>
  waitFor('the device to register', async () => (await server.admin('GET', `/api/devices/${MAC}`)).status === 200 || undefined);

const jobEnded = (server: TestServer, id: number) =>
  waitFor(`job ${id} to end`, async () => {
    const now = await job(server, id);
    return now.state !== 'running' && now.state !== 'queued' ? now : undefined;
  });

/** The grace a silent client gets after the last byte went out, moved into the past instead of waited for. */
async function graceHasPassed(server: TestServer, jobId: number) {
  const { services } = server.server;
  await sql`UPDATE jobs SET image_sent_at = image_sent_at - 61000, last_activity_at = last_activity_at - 61000 WHERE id = ${jobId}`.execute(services.database.db);
  return services.jobs.failStalled();
}

test('a poll without features gets exactly the fields of the original contract', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'raspios', 4096, { makeDefault: true });
  await registerDevice(server, MAC);
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const deploy = (await server.device('GET', `/api/device-action-poll?mac=${MAC}`)).body;
  assert.deepEqual(Object.keys(deploy).sort(), ['action', 'image', 'job', 'progress_url', 'result_url', 'sha256', 'size', 'url']);
  await server.admin('POST', `/api/devices/${MAC}/cancel`);
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const backup = (await server.device('GET', `/api/device-action-poll?mac=${MAC}`)).body;
  assert.deepEqual(Object.keys(backup).sort(), ['action', 'job', 'progress_url', 'result_url', 'size', 'upload_url']);
  await server.admin('POST', `/api/devices/${MAC}/cancel`);
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const featured = (await server.device('GET', `/api/device-action-poll?mac=${MAC}&features=sparse`)).body;
  assert.equal(featured.encoding, 'identity', 'a client that says what it can do still gets the additions');
});

test('an original-contract deploy ends unconfirmed once the whole image was sent, and the device boots its eMMC next', async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 8 * 1024 * 1024, { makeDefault: true });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 16 * 1024 * 1024);
  const client = runOriginalClient(t, server, emmc);
  await registered(server);
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal(await client.exited, 0, client.output());
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256, 'the client wrote the image');

  const sent = await waitFor('the server to note the whole image went out', async () => {
    const now = await job(server, ordered.id);
    return now.phase === 'sent' ? now : undefined;
  });
  assert.equal(sent.state, 'running', 'still open: a client may yet report');
  assert.equal(sent.verification, null);

  assert.deepEqual((await graceHasPassed(server, ordered.id)).map((ended) => ended.id), [ordered.id]);
  const ended = await job(server, ordered.id);
  assert.equal(ended.state, 'unconfirmed');
  assert.equal(ended.verification.scope, 'sent');
  assert.equal(ended.verification.checked, false);
  assert.match(ended.verification.summary, /^whole image \(8\.00 MiB\) sent; the device reported no result, so nothing was verified$/);
  assert.doesNotMatch(jobStatus(ended).text, /\bok\b|verified ·|✓/, 'the dashboard does not call it ok');
  assert.match(jobStatus(ended).text, /Deploy sent, not confirmed/);
  const device = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(device.netboot.enabled, false, 'the after-success policy applied: eMMC next');
  const csv = await (await fetch(`${server.url}/api/jobs.csv`, { headers: { authorization: `Bearer ${server.token}` } })).text();
  assert.match(csv.split('\r\n')[1]!, /,unconfirmed,.*,sent,"whole image \(8\.00 MiB\) sent;/);
});

test('while an original-contract client downloads, the job shows the bytes sent so far', async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 48 * 1024 * 1024, { makeDefault: true });
  await server.device('POST', '/api/register-device', { mac: MAC, ip: '10.20.50.150' });
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  const answer = (await server.device('GET', `/api/device-action-poll?mac=${MAC}`)).body;
  // A reader that stops reading: the body stays open with most of it not yet sent.
  const response = await new Promise<IncomingMessage>((resolve) => get(answer.url, resolve));
  response.pause();
  const sending = await waitFor('the server to count the bytes it has sent', async () => {
    const now = await job(server, ordered.id);
    return now.phase === 'sending' && now.bytes_done > 0 ? now : undefined;
  });
  assert.ok(sending.bytes_done < image.bytes, `progress is what has gone out so far (${sending.bytes_done} of ${image.bytes})`);
  assert.equal(sending.bytes_total, image.bytes);
  let received = 0;
  response.on('data', (chunk: Buffer) => (received += chunk.length));
  response.resume();
  await new Promise((resolve) => response.on('end', resolve));
  assert.equal(received, image.bytes);
  await waitFor('the whole image to be noted as sent', async () => (await job(server, ordered.id)).phase === 'sent' || undefined);
});

test('an original-contract device that polls again after its whole image was sent ends the job unconfirmed, not abandoned', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'raspios', 2 * 1024 * 1024, { makeDefault: true });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 4 * 1024 * 1024);
  const first = runOriginalClient(t, server, emmc);
  await registered(server);
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal(await first.exited, 0, first.output());
  await waitFor('the whole image to be noted as sent', async () => (await job(server, ordered.id)).phase === 'sent' || undefined);
  const again = await server.device('GET', `/api/device-action-poll?mac=${MAC}`);
  assert.equal(again.body.action, 'none');
  const ended = await job(server, ordered.id);
  assert.equal(ended.state, 'unconfirmed');
  assert.match(ended.error, /whole image was sent, but the device polled for new work .* without reporting a result/);
});

test('an original-contract deploy cut before the end is not "sent": it fails as abandoned when the device comes back', async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 8 * 1024 * 1024, { makeDefault: true });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 16 * 1024 * 1024);
  // Only the first MiB is asked for and sent: the whole image never goes out.
  const client = runOriginalClient(t, server, emmc, { CURL_OPTS: '-r 0-1048575' });
  await registered(server);
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  await client.exited;
  assert.notEqual(await sha256OfFile(emmc, image.bytes), image.sha256);
  await server.device('POST', '/api/register-device', { mac: MAC });
  const ended = await job(server, ordered.id);
  assert.equal(ended.state, 'failed');
  assert.match(ended.error, /^abandoned: .*the eMMC may hold a partial image/);
  assert.equal(ended.verification, null);
});

test('an original-contract backup: whole when the eMMC size is known, "size unknown" and unconfirmed when it is not', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  const emmcSha = writeImageFile(emmc, 6 * 1024 * 1024);

  // The original client registers with MAC and IP only: nobody knows how large its eMMC is.
  const unknown = runOriginalClient(t, server, emmc);
  await registered(server);
  const first = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  assert.equal(await unknown.exited, 0, unknown.output());
  const firstEnded = await jobEnded(server, first.id);
  assert.equal(firstEnded.state, 'unconfirmed');
  assert.equal(firstEnded.verification.scope, 'size_unknown');
  assert.match(firstEnded.verification.summary, /^received 6\.00 MiB, sha256 [0-9a-f]{12}… computed by the server; the device never gave its eMMC size/);
  const stored = (await server.admin('GET', `/api/backups/${firstEnded.backup_id}`)).body;
  assert.equal(stored.sha256, emmcSha, 'what arrived is kept, byte for byte');
  assert.deepEqual(
    { completeness: stored.verification.completeness, device_checked: stored.verification.device_checked },
    { completeness: 'size_unknown', device_checked: false },
  );

  // Told the size (as our own client does), the same body is known to be whole; still only the server hashed it.
  await registerDevice(server, MAC, { storage_bytes: 6 * 1024 * 1024 });
  const known = runOriginalClient(t, server, emmc);
  const second = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  assert.equal(await known.exited, 0, known.output());
  const secondEnded = await jobEnded(server, second.id);
  assert.equal(secondEnded.state, 'ok');
  assert.equal(secondEnded.verification.scope, 'server_sha256');
  assert.equal(secondEnded.verification.checked, false);
  assert.match(secondEnded.verification.summary, /computed by the server; the device sent no checksum$/);
  assert.doesNotMatch(jobStatus(secondEnded).text, /verified/);
  const backup = (await server.admin('GET', `/api/backups/${secondEnded.backup_id}`)).body;
  assert.equal(backup.verification.completeness, 'whole');
  assert.equal(readFileSync(emmc).length, 6 * 1024 * 1024);
});
