import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { addImage, MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

async function runningDeploy(t: Parameters<typeof startTestServer>[0], server: TestServer, bytes = 3 * 1024 * 1024 + 17) {
  await registerDevice(server);
  const image = await addImage(t, server, 'raspios', bytes, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const order = await poll(server);
  return { image, order };
}

test('the image streams with Content-Length, ETag, HEAD and byte ranges', async (t) => {
  const server = await startTestServer(t);
  const { image, order } = await runningDeploy(t, server);

  const head = await fetch(order.url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(image.bytes));
  assert.equal(head.headers.get('accept-ranges'), 'bytes');
  assert.equal(head.headers.get('etag'), `"sha256:${image.sha256}"`);

  const whole = Buffer.from(await (await fetch(order.url)).arrayBuffer());
  assert.equal(createHash('sha256').update(whole).digest('hex'), image.sha256);

  const part = await fetch(order.url, { headers: { range: 'bytes=1000-1999' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 1000-1999/${image.bytes}`);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), image.data.subarray(1000, 2000));

  const tail = await fetch(order.url, { headers: { range: `bytes=${image.bytes - 10}-` } });
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), image.data.subarray(image.bytes - 10));

  const beyond = await fetch(order.url, { headers: { range: `bytes=${image.bytes}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), `bytes */${image.bytes}`);

  const stale = await fetch(order.url, { headers: { range: 'bytes=0-9', 'if-range': '"sha256:other"' } });
  assert.equal(stale.status, 200, 'If-Range with another version: the whole file');
  await stale.arrayBuffer();
});

test('many devices can download at once', async (t) => {
  const server = await startTestServer(t);
  const { image, order } = await runningDeploy(t, server, 8 * 1024 * 1024);
  const hashes = await Promise.all(
    Array.from({ length: 8 }, async () => createHash('sha256').update(Buffer.from(await (await fetch(order.url)).arrayBuffer())).digest('hex')),
  );
  assert.deepEqual(new Set(hashes), new Set([image.sha256]));
});

test('job URLs need the right token and device, and stop working when the job ends', async (t) => {
  const server = await startTestServer(t);
  const { order } = await runningDeploy(t, server, 1000);
  const path = pathOf(order.url);
  const jobPath = path.split('?')[0]!;

  const noToken = await server.device('GET', jobPath);
  assert.equal(noToken.status, 403);
  const wrongToken = await server.device('GET', `${jobPath}?token=guess`);
  assert.equal(wrongToken.status, 403);
  assert.match(wrongToken.body.message, /token is not valid for job/);
  const unknown = await server.device('GET', `/api/device-jobs/999/image?token=x`);
  assert.equal(unknown.status, 404);
  const otherDevice = await server.device('POST', pathOf(order.progress_url), { bytes_done: 1, mac: 'dc:a6:32:00:00:99' });
  assert.equal(otherDevice.status, 403);
  assert.match(otherDevice.body.message, /belongs to device dc:a6:32:00:00:01, not dc:a6:32:00:00:99/);
  const wrongKind = await server.device('PUT', pathOf(order.url).replace('/image?', '/upload?'), 'x');
  assert.equal(wrongKind.status, 409);

  const progress = await server.device('POST', pathOf(order.progress_url), { bytes_done: 500, phase: 'writing', mac: MAC });
  assert.equal(progress.status, 200);
  const running = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
  assert.equal(running.bytes_done, 500);
  assert.equal(running.phase, 'writing');

  await server.admin('POST', `/api/devices/${MAC}/cancel`);
  for (const url of [order.url, order.progress_url, order.result_url]) {
    const reply = await server.device(url === order.url ? 'GET' : 'POST', pathOf(url), url === order.url ? undefined : { bytes_done: 1, status: 'ok' });
    assert.equal(reply.status, 410, url);
    assert.match(reply.body.message, /has ended \(cancelled: cancelled by the operator\); its URLs no longer work/);
  }
});

test('a deploy ends ok only when the read-back sha256 is the image sha256', async (t) => {
  const server = await startTestServer(t);
  const { image, order } = await runningDeploy(t, server, 1000);
  const missingHash = await server.device('POST', pathOf(order.result_url), { status: 'ok' });
  assert.equal(missingHash.status, 400);
  assert.match(missingHash.body.message, /needs sha256/);

  const wrong = await server.device('POST', pathOf(order.result_url), { status: 'ok', sha256: 'a'.repeat(64), bytes: image.bytes });
  assert.equal(wrong.status, 200);
  assert.equal(wrong.body.state, 'failed');
  assert.match(wrong.body.error, /read-back sha256 a{64} does not match the image's/);
  const again = await server.device('POST', pathOf(order.result_url), { status: 'ok', sha256: image.sha256 });
  assert.equal(again.status, 410, 'a finished job takes no second result');

  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const next = await poll(server);
  const ok = await server.device('POST', pathOf(next.result_url), { status: 'ok', sha256: image.sha256.toUpperCase(), bytes: image.bytes });
  assert.equal(ok.body.state, 'ok');
  const job = (await server.admin('GET', `/api/jobs/${next.job}`)).body;
  assert.equal(job.sha256, image.sha256);
  assert.equal(job.bytes_done, image.bytes);
  assert.ok(job.ended_at && job.duration_seconds !== null);
});

test('a failure report ends the job with the device\'s words', async (t) => {
  const server = await startTestServer(t);
  const { order } = await runningDeploy(t, server, 1000);
  const reply = await server.device('POST', pathOf(order.result_url), 'status=failed&error=eMMC+write+error+at+4096', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(reply.body.state, 'failed');
  assert.equal(reply.body.error, 'eMMC write error at 4096');
  const bad = await server.device('POST', pathOf(order.result_url), { status: 'maybe' });
  assert.equal(bad.status, 400);
});
