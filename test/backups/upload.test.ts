import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function runningBackup(server: TestServer, storageBytes: number | undefined) {
  await registerDevice(server, MAC, { storage_bytes: storageBytes });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  assert.equal(order.job, ordered.body.id);
  return order;
}

function upload(order: { upload_url: string }, body: Buffer, headers: Record<string, string> = {}) {
  return fetch(order.upload_url, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream', ...headers } });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
}

function assertNoBackupBytes(server: TestServer) {
  assert.deepEqual(filesUnder(join(server.dataDir, 'backups')), [], 'no file in backups/');
  assert.deepEqual(filesUnder(join(server.dataDir, 'tmp')), [], 'no temp file left');
}

test('a complete upload whose checksum the device confirms becomes a stored, downloadable backup', async (t) => {
  const server = await startTestServer(t);
  const data = randomBytes(2 * 1024 * 1024 + 3);
  const order = await runningBackup(server, data.length);

  const reply = await upload(order, data, { 'x-checksum-follows': 'sha256' });
  assert.equal(reply.status, 200);
  const received = (await reply.json()) as any;
  assert.equal(received.received_sha256, sha256(data));
  assert.equal(received.backup_id, null, 'not a backup until the device confirms');
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);

  const result = await server.device('POST', pathOf(order.result_url), { status: 'ok', sha256: sha256(data), bytes: data.length });
  assert.equal(result.body.state, 'ok');
  const [backup] = (await server.admin('GET', '/api/backups')).body.backups;
  assert.equal(backup.sha256, sha256(data));
  assert.equal(backup.size, data.length);
  assert.equal(backup.device_mac, MAC);
  const job = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
  assert.equal(job.backup_id, backup.id);

  const download = await fetch(`${server.url}/api/backups/${backup.id}/download`, { headers: { authorization: `Bearer ${server.token}` } });
  assert.equal(download.headers.get('content-length'), String(data.length));
  assert.match(download.headers.get('content-disposition') ?? '', /backup-dca632000001-\d+\.img/);
  assert.equal(sha256(Buffer.from(await download.arrayBuffer())), backup.sha256);
  assert.deepEqual(filesUnder(join(server.dataDir, 'tmp')), []);
});

test('an upload from a client that never reports (the original dd | curl flow) is stored, and says only what is known', async (t) => {
  const server = await startTestServer(t);
  const data = randomBytes(300_000);
  // No eMMC size from the device: a body that ends is kept, but nobody can call it the whole eMMC.
  const order = await runningBackup(server, undefined);
  const body = (await (await upload(order, data)).json()) as any;
  assert.equal(body.state, 'unconfirmed');
  assert.ok(body.backup_id);
  const job = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
  assert.equal(job.verification.scope, 'size_unknown');
  assert.equal((await server.admin('GET', `/api/backups/${body.backup_id}`)).body.sha256, sha256(data));

  // With the size known, a body of that length is whole; its sha256 is still only the server's.
  const sized = await runningBackup(server, data.length);
  const whole = (await (await upload(sized, data)).json()) as any;
  assert.equal(whole.state, 'ok');
  const wholeJob = (await server.admin('GET', `/api/jobs/${sized.job}`)).body;
  assert.deepEqual([wholeJob.verification.scope, wholeJob.verification.checked], ['server_sha256', false]);
  assert.doesNotMatch(wholeJob.verification.summary, /verified/);
});

test('a body whose sha256 is not the one the device declared, or read, is never stored', async (t) => {
  const server = await startTestServer(t);
  const data = randomBytes(100_000);
  const order = await runningBackup(server, data.length);
  const declared = await upload(order, data, { 'x-content-sha256': 'b'.repeat(64) });
  assert.equal(declared.status, 400);
  assert.match(((await declared.json()) as any).message, /does not match the b{64} the device declared/);
  assert.equal((await server.admin('GET', `/api/jobs/${order.job}`)).body.state, 'failed');
  assertNoBackupBytes(server);

  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const second = await poll(server);
  await upload(second, data, { 'x-checksum-follows': 'sha256' });
  const result = await server.device('POST', pathOf(second.result_url), { status: 'ok', sha256: 'c'.repeat(64) });
  assert.equal(result.body.state, 'failed');
  assert.match(result.body.error, /the upload was corrupted/);
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
  assertNoBackupBytes(server);
});

test('a body of the wrong length is refused and leaves nothing', async (t) => {
  const server = await startTestServer(t);
  const order = await runningBackup(server, 50_000);
  const reply = await upload(order, randomBytes(40_000));
  assert.equal(reply.status, 400);
  assert.match(((await reply.json()) as any).message, /40000 bytes but the device's storage is 50000/);
  assertNoBackupBytes(server);
});

test('a cut connection leaves no backup row and no stray file; the job says why, and a retry succeeds', async (t) => {
  const server = await startTestServer(t);
  const total = 4 * 1024 * 1024;
  const order = await runningBackup(server, total);
  const url = new URL(order.upload_url);

  const socket = connect(Number(url.port), url.hostname);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(`PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: ${total}\r\nX-Checksum-Follows: sha256\r\n\r\n`);
  socket.write(randomBytes(total / 2));
  await waitFor('the upload to reach the disk', () => filesUnder(join(server.dataDir, 'tmp')).length === 1);
  socket.destroy();

  const job = await waitFor('the job to record the cut', async () => {
    const current = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
    return current.error ? current : undefined;
  });
  assert.match(job.error, /backup upload failed: the connection was cut after \d+ of 4194304 bytes/);
  assert.equal(job.state, 'running', 'the device may retry');
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
  await waitFor('the partial file to go', () => filesUnder(join(server.dataDir, 'tmp')).length === 0);
  assertNoBackupBytes(server);

  const data = randomBytes(total);
  const retry = await upload(order, data, { 'x-checksum-follows': 'sha256' });
  assert.equal(retry.status, 200);
  const result = await server.device('POST', pathOf(order.result_url), { status: 'ok', sha256: sha256(data) });
  assert.equal(result.body.state, 'ok');
});

function mountSmallTmpfs(t: TestContext, megabytes: number): string | undefined {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a small tmpfs (CI runs as root)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'cm4prov-small-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Sends only the headers of an upload and reads the answer: the server may refuse before any body. */
function announceUpload(uploadUrl: string, contentLength: number): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(uploadUrl, { method: 'PUT', headers: { 'content-length': contentLength } }, (response) => {
      let text = '';
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => {
        request.destroy();
        resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) });
      });
    });
    request.on('error', reject);
    request.flushHeaders();
  });
}

test('a disk that fills mid-upload fails the job with 507 and leaves no file; an almost full one refuses up front', async (t) => {
  const small = mountSmallTmpfs(t, 96);
  if (!small) return;
  const server = await startTestServer(t, { dataDir: join(small, 'data') });

  // No size known in advance (chunked, no storage size): the disk fills mid-stream.
  await registerDevice(server, MAC, { storage_bytes: undefined });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  const chunk = randomBytes(1024 * 1024);
  const body = new ReadableStream({
    pull(controller) {
      controller.enqueue(chunk);
    },
  });
  const reply = await fetch(order.upload_url, { method: 'PUT', body, duplex: 'half' } as RequestInit);
  assert.equal(reply.status, 507);
  assert.match(((await reply.json()) as any).message, /disk is full/);
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /disk is full/);
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
  assertNoBackupBytes(server);

  // Less than 64 MiB left: refused before any byte is taken.
  writeFileSync(join(small, 'filler'), randomBytes(40 * 1024 * 1024));
  await registerDevice(server, 'dc:a6:32:00:00:02', { storage_bytes: 1024 * 1024 * 1024 });
  const second = await server.admin('POST', '/api/devices/dc:a6:32:00:00:02/backup');
  const secondOrder = await poll(server, 'dc:a6:32:00:00:02');
  const early = await announceUpload(secondOrder.upload_url, 1024 * 1024 * 1024);
  assert.equal(early.status, 507, 'refused up front');
  assert.match(early.body.message, /disk is almost full/);
  assert.equal((await server.admin('GET', `/api/jobs/${second.body.id}`)).body.state, 'failed');
});

test('deleting a backup removes its file; its download is then 404', async (t) => {
  const server = await startTestServer(t);
  const data = randomBytes(10_000);
  const order = await runningBackup(server, undefined);
  const { backup_id: id } = (await (await upload(order, data)).json()) as any;
  const file = join(server.dataDir, 'backups', 'dca632000001');
  assert.equal(readdirSync(file).length, 1);
  assert.equal((await server.admin('DELETE', `/api/backups/${id}`)).status, 204);
  assert.equal(readdirSync(file).length, 0);
  assert.equal((await server.admin('GET', `/api/backups/${id}/download`)).status, 404);
  assert.equal((await server.admin('DELETE', `/api/backups/${id}`)).status, 404);
  assert.ok(!existsSync(join(file, 'x')));
});
