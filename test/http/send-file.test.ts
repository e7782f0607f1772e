import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Fastify from 'fastify';
import type { FileTransfer } from '../../src/http/file-body.js';
import { parseRange, sendFile } from '../../src/http/send-file.js';
import { tempDir } from '../helpers/server.js';

test('byte ranges follow RFC 9110', () => {
  assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=500-', 1000), { start: 500, end: 999 });
  assert.deepEqual(parseRange('bytes=-100', 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=900-5000', 1000), { start: 900, end: 999 }, 'an end past the file is clamped');
  assert.equal(parseRange('bytes=1000-', 1000), 'unsatisfiable');
  assert.equal(parseRange('bytes=5-4', 1000), 'unsatisfiable');
  assert.equal(parseRange(undefined, 1000), undefined);
  assert.equal(parseRange('bytes=0-1,5-6', 1000), undefined, 'several ranges: the whole file');
  assert.equal(parseRange('items=0-1', 1000), undefined);
});

test('files go out whole, in ranges and to many clients at once, byte for byte, with their headers', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'image.img');
  const bytes = randomBytes(5 * 1024 * 1024 + 4321); // several buffers and a short tail
  writeFileSync(path, bytes);
  const transfers: FileTransfer[] = [];
  const app = Fastify();
  app.get('/file', async (request, reply) => {
    const transfer = sendFile(request, reply, { path, size: bytes.length, etag: 'v1' });
    if (transfer) transfers.push(transfer);
    return reply;
  });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());

  const whole = await fetch(`${base}/file`);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get('content-length'), String(bytes.length));
  assert.equal(whole.headers.get('etag'), '"v1"');
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes));

  const start = 1024 * 1024 - 7;
  const end = 3 * 1024 * 1024 + 11;
  const part = await fetch(`${base}/file`, { headers: { range: `bytes=${start}-${end}` } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes ${start}-${end}/${bytes.length}`);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(start, end + 1)));

  const many = await Promise.all(Array.from({ length: 12 }, () => fetch(`${base}/file`).then(async (r) => Buffer.from(await r.arrayBuffer()))));
  for (const body of many) assert.ok(body.equals(bytes));
  assert.equal(transfers.length, 14);
  const reasons = await Promise.all(transfers.map((transfer) => (transfer.closed ? [undefined] : once(transfer, 'close'))));
  assert.deepEqual(reasons.map(([reason]) => reason), new Array(14).fill(undefined), 'every transfer ended without an error');
});

test('a client that goes away ends the transfer with a reason, and destroy() cuts one', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'big.img');
  writeFileSync(path, Buffer.alloc(64 * 1024 * 1024, 1));
  const transfers: FileTransfer[] = [];
  const app = Fastify();
  app.get('/file', async (request, reply) => {
    const transfer = sendFile(request, reply, { path, size: 64 * 1024 * 1024, etag: 'v1' });
    if (transfer) transfers.push(transfer);
    return reply;
  });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());

  const abort = new AbortController();
  const response = await fetch(`${base}/file`, { signal: abort.signal });
  const reader = response.body!.getReader();
  await reader.read();
  const closed = once(transfers[0]!, 'close');
  abort.abort();
  const [reason] = (await closed) as [Error | undefined];
  assert.match(String(reason?.message), /went away/);

  const second = await fetch(`${base}/file`);
  const secondReader = second.body!.getReader();
  await secondReader.read();
  const cut = once(transfers[1]!, 'close');
  transfers[1]!.destroy(new Error('job cancelled'));
  const [why] = (await cut) as [Error | undefined];
  assert.equal(why?.message, 'job cancelled');
  await assert.rejects(async () => {
    for (;;) if ((await secondReader.read()).done) throw new Error('the body ended normally');
  }, (error: Error) => error.message !== 'the body ended normally');
});
