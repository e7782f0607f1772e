import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient, type ClientRun } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { startFaultProxy, type Fault, type ProgressReport, type RetryReport } from '../helpers/fault-proxy.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 64 * 1024 * 1024;
const IMAGE_BYTES = 8 * 1024 * 1024;
const DD_BLOCK = 4 * 1024 * 1024; // the client's dd block: the write position moves by this much
const STALL_TIMEOUT = 2; // seconds; the client's default is 120

async function jobOf(server: TestServer, id: number) {
  return (await server.admin('GET', `/api/jobs/${id}`)).body;
}

/** A real server whose job URLs go through a fault proxy; the real client polls the server itself. */
async function serverBehind(t: TestContext, faults: Fault[], options: { repeat?: boolean; path?: RegExp } = {}) {
  const proxy = await startFaultProxy(t, faults, options);
  const server = await startTestServer(t, { publicUrl: proxy.url });
  proxy.forwardTo(server.url);
  return { proxy, server };
}

function startClient(t: TestContext, server: TestServer, emmc: string, env: Record<string, string>) {
  return runClient(t, { server: server.url, target: emmc, mac: MAC, env: { STALL_TIMEOUT: String(STALL_TIMEOUT), ...env } });
}

async function order(server: TestServer, action: 'deploy' | 'backup') {
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/${action}`, action === 'deploy' ? {} : undefined);
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  return ordered.body.id as number;
}

/** A whole-image deploy (DEPLOY_MODE=full: curl → FIFO → dd) of a random image, ordered at once. */
async function fullDeploy(t: TestContext, faults: Fault[], env: Record<string, string>, options: { repeat?: boolean } = {}) {
  const { proxy, server } = await serverBehind(t, faults, options);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'raspios', IMAGE_BYTES, { makeDefault: true });
  const client = startClient(t, server, emmc, { DEPLOY_MODE: 'full', ...env });
  const jobId = await order(server, 'deploy');
  return { proxy, server, emmc, image, client, jobId };
}

/**
 * Until the client exits, keeps checking that the progress the server recorded is true: the
 * target's first bytes_done (and bytes_written) bytes are the image's. The job is read before
 * the target, and the target only gains image bytes, so a true report always passes.
 */
async function checkProgressWhileRunning(server: TestServer, jobId: number, client: ClientRun, emmc: string, image: Buffer) {
  let running = true;
  void client.exited.then(() => (running = false));
  let checks = 0;
  while (running) {
    const job = await jobOf(server, jobId);
    if (job.state === 'running' && job.phase === 'writing') {
      const claimed = Math.max(job.bytes_done, job.bytes_written ?? 0);
      assert.ok(claimed <= image.length, `claimed ${claimed} of ${image.length}`);
      assert.ok(readStart(emmc, claimed).equals(image.subarray(0, claimed)), `the server was told ${claimed} bytes were written, but the target does not hold them`);
      checks++;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return checks;
}

function readStart(path: string, bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buffer, 0, bytes, 0);
  } finally {
    closeSync(fd);
  }
  return buffer;
}

/**
 * A report is sent only when it says something new: never the same one twice in a row within
 * an attempt. A new attempt (after a retry report) may reach the same position again.
 */
function assertNoRepeats(progress: ProgressReport[], retries: RetryReport[] = []) {
  const attemptStarts = new Set(retries.map((retry) => retry.after));
  progress.forEach((report, i) => {
    if (i === 0 || attemptStarts.has(i)) return;
    const before = progress[i - 1]!;
    assert.ok(
      report.phase !== before.phase || report.bytes_done !== before.bytes_done || report.bytes_written !== before.bytes_written,
      `report ${i} repeats the one before: ${JSON.stringify(report)}`,
    );
  });
}

test('full mode: an image download refused, then cut, before its first byte is tried again, and the job ends ok', { timeout: 60_000 }, async (t) => {
  const { proxy, server, emmc, image, client, jobId } = await fullDeploy(t, ['refuse', 'cut'], { TRANSFER_RETRIES: '3' });
  assert.equal(await client.exited, 0, client.output());
  const job = await jobOf(server, jobId);
  assert.equal(job.state, 'ok', job.error);
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256, 'the eMMC holds the image');
  assert.deepEqual(proxy.faulted, ['none', 'none', 'none'], 'nothing was written, so every attempt starts at byte 0');
  assert.match(client.output(), /image download cut at 0 of \d+ bytes \(.*503.*\); resuming/);
  assert.deepEqual(proxy.progress.at(-1), { phase: 'verifying', bytes_done: image.bytes });
  assertNoRepeats(proxy.progress, proxy.retries);
  // Each failed attempt is told to the server, which counts it as a sign of life and shows why.
  assert.deepEqual(proxy.retries.map((retry) => [retry.phase, retry.bytes_done]), [['writing', 0], ['writing', 0]]);
  assert.match(proxy.retries[0]!.problem, /^attempt 1 of 3: image download cut at 0 bytes \(.*503.*\); resuming$/);
});

test('full mode: an image download that fails before its first byte every time ends the job with a sentence', { timeout: 60_000 }, async (t) => {
  const { proxy, server, emmc, client, jobId } = await fullDeploy(t, ['refuse', 'cut'], { TRANSFER_RETRIES: '3' }, { repeat: true });
  assert.equal(await client.exited, 1, client.output());
  assert.equal(proxy.faulted.length, 3, 'TRANSFER_RETRIES attempts');
  const job = await jobOf(server, jobId);
  assert.equal(job.state, 'failed');
  assert.match(job.error, /^image download failed 3 times \(the last: curl: \(52\) Empty reply from server\)$/);
  assert.equal(job.bytes_done, 0, 'no byte was reported written');
  assert.ok(readFileSync(emmc).every((byte) => byte === 0), 'no byte was written');
  assert.deepEqual(proxy.progress, [{ phase: 'writing', bytes_done: 0, bytes_written: 0 }], 'one report: the start');
  assert.equal(proxy.retries.length, 2, 'a word for each attempt that is followed by another');
});

test('full mode: a server that accepts the image request and never answers is given up after STALL_TIMEOUT per attempt', { timeout: 60_000 }, async (t) => {
  const { proxy, server, emmc, client, jobId } = await fullDeploy(t, ['silent'], { TRANSFER_RETRIES: '2' }, { repeat: true });
  assert.equal(await client.exited, 1, client.output());
  assert.equal(proxy.faulted.length, 2);
  const job = await jobOf(server, jobId);
  assert.equal(job.state, 'failed');
  assert.equal(job.error, `image download failed 2 times (the last: no byte was written to ${emmc} for ${STALL_TIMEOUT} s)`);
  assert.equal(job.bytes_done, 0);
  assert.equal(job.bytes_written, 0);
  assert.ok(readFileSync(emmc).every((byte) => byte === 0), 'no byte was written');
  assert.deepEqual(proxy.progress, [{ phase: 'writing', bytes_done: 0, bytes_written: 0 }], 'the stalled attempts reported no progress');
  assert.match(proxy.retries[0]?.problem ?? '', new RegExp(`^attempt 1 of 2: image download cut at 0 bytes \\(no byte was written to .* for ${STALL_TIMEOUT} s\\); resuming$`));
});

test('full mode: an image download that stops mid-stream resumes from the last block dd wrote, and progress never runs ahead of the target', { timeout: 60_000 }, async (t) => {
  const stallAfter = DD_BLOCK + 100_000; // one whole dd block arrives, the next never completes
  const { proxy, server, emmc, image, client, jobId } = await fullDeploy(t, [{ stallAfter }], { TRANSFER_RETRIES: '3' });
  const checks = await checkProgressWhileRunning(server, jobId, client, emmc, image.data);
  assert.equal(await client.exited, 0, client.output());
  assert.ok(checks > 0, 'the progress was checked while writing');
  assert.equal((await jobOf(server, jobId)).state, 'ok');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  assert.match(client.output(), new RegExp(`no byte was written to .* for ${STALL_TIMEOUT} s; stopping this attempt`));
  assert.deepEqual(proxy.faulted, ['none', `bytes=${DD_BLOCK}-`], 'the bytes in the unfinished block were fetched again, no more');
  const writing = proxy.progress.filter((report) => report.phase === 'writing');
  assert.ok(writing.every((report) => report.bytes_written === report.bytes_done), 'bytes_done is what was written');
  assert.deepEqual(writing.filter((report) => report.bytes_done > 0 && report.bytes_done < image.bytes).map((report) => report.bytes_done).slice(0, 1), [DD_BLOCK], 'the first position reported is the block dd wrote');
  assertNoRepeats(proxy.progress, proxy.retries);
});

test('sparse mode: a zstd chunk stream refused before its first byte is tried again (no FIFO left waiting)', { timeout: 90_000 }, async (t) => {
  const { proxy, server } = await serverBehind(t, ['refuse'], { path: /^\/api\/device-jobs\/\d+\/chunks\?/ });
  const { image } = makeExt4Image(tempDir(t), 64);
  const added = await fetch(`${server.url}/api/images?name=os&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: readFileSync(image),
  });
  assert.equal(added.status, 201);
  await server.server.services.caches.idle();
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const client = startClient(t, server, emmc, { TRANSFER_RETRIES: '3' });
  const jobId = await order(server, 'deploy');
  assert.equal(await client.exited, 0, client.output());
  const job = await jobOf(server, jobId);
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.transfer.encoding, 'zstd');
  assert.equal(proxy.faulted.length, 2, 'refused once, then streamed');
  assert.match(client.output(), /chunk stream cut at range 0 of \d+ .*503.*; resuming from it/);
  assert.equal(await sha256OfFile(emmc, readFileSync(image).length), await sha256OfFile(image));
  const mapped = (await server.admin('GET', '/api/images/os')).body.block_map.mapped_bytes as number;
  assert.equal(job.bytes_written, mapped);
  const claimed = proxy.progress.map((report) => report.bytes_written ?? 0);
  assert.ok(Math.max(...claimed) <= mapped, `reported ${Math.max(...claimed)} bytes written of ${mapped} mapped: the refused attempt wrote none`);
  assertNoRepeats(proxy.progress, proxy.retries);
});

test('backup: an upload the server stops reading ends after STALL_TIMEOUT and is sent again', { timeout: 90_000 }, async (t) => {
  const { proxy, server } = await serverBehind(t, ['silent'], { path: /^\/api\/device-jobs\/\d+\/upload\?/ });
  const emmc = join(tempDir(t), 'emmc.img');
  const emmcSha = writeImageFile(emmc, 32 * 1024 * 1024); // random: compression cannot fit it into the socket buffers
  const client = startClient(t, server, emmc, { TRANSFER_RETRIES: '2' });
  const jobId = await order(server, 'backup');
  assert.equal(await client.exited, 0, client.output());
  const job = await jobOf(server, jobId);
  assert.equal(job.state, 'ok', job.error);
  assert.equal((await server.server.services.backups.get(job.backup_id)).sha256, emmcSha);
  assert.equal(proxy.faulted.length, 2);
  // The shell's dd stops reading; cm4prov-io may have read this small eMMC whole into its buffers.
  assert.match(client.output(), new RegExp(`backup upload failed \\(the upload stopped moving: (no byte was read from .*|nothing more went into the upload) for ${STALL_TIMEOUT} s.*\\); retrying`));
  assertNoRepeats(proxy.progress, proxy.retries);
});
