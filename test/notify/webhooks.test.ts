import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { movableClock, startReceiver } from './listeners.js';

/** What a receiver does: recompute the HMAC over the raw body and compare in constant time. */
function signatureValid(secret: string, body: string, header: string | string[] | undefined) {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(String(header));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const deliveriesOf = async (server: TestServer, hookId: number) => (await server.admin('GET', `/api/webhooks/${hookId}/deliveries`)).body.deliveries as any[];

test('a real deploy posts job.queued, job.started and job.ok in order, each signed with the webhook secret', async (t) => {
  const server = await startTestServer(t);
  const receiver = await startReceiver(t);
  const created = await server.admin('POST', '/api/webhooks', { url: receiver.url });
  assert.equal(created.status, 201);
  const { id, secret } = created.body;
  assert.match(secret, /^[0-9a-f]{64}$/, 'a 32-byte secret is made and shown once');
  const listing = await server.admin('GET', '/api/webhooks');
  assert.ok(!JSON.stringify(listing.body).includes(secret), 'the listing never holds the secret');
  assert.equal(listing.body.webhooks[0].secret_hint, `…${secret.slice(-4)}`);

  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const image = await addImage(t, server, 'raspios', 2 * 1024 * 1024 + 7, { makeDefault: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { DEVICE_SERIAL: '10000000c0ffee01', DEVICE_MODEL: 'Raspberry Pi Compute Module 4 Rev 1.1' } });
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());

  const accepted = await waitFor('three deliveries', () => (receiver.accepted().length >= 3 ? receiver.accepted() : undefined));
  assert.deepEqual(accepted.map((r) => r.headers['x-cm4prov-event']), ['job.queued', 'job.started', 'job.ok']);
  for (const r of accepted) {
    assert.ok(signatureValid(secret, r.body, r.headers['x-cm4prov-signature']), `${r.json.event} carries a valid signature`);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.json.job.id, ordered.body.id);
    assert.equal(r.json.event, r.headers['x-cm4prov-event']);
  }
  const ok = accepted[2]!.json;
  assert.equal(ok.job.state, 'ok');
  assert.deepEqual(ok.device, { mac: MAC, serial: '10000000c0ffee01', model: 'Raspberry Pi Compute Module 4 Rev 1.1' });
  assert.deepEqual([ok.job.image.name, ok.job.image.sha256], ['raspios', image.sha256]);
  assert.match(ok.job.verification.summary, /verified/);
  assert.equal(accepted[0]!.json.job.state, 'queued', 'the payload is the job as it was at the event');

  const deliveries = await deliveriesOf(server, id);
  assert.deepEqual(deliveries.map((d) => [d.event, d.state, d.attempts, d.last_status]).reverse(), [
    ['job.queued', 'delivered', 1, 200],
    ['job.started', 'delivered', 1, 200],
    ['job.ok', 'delivered', 1, 200],
  ]);
  assert.deepEqual(accepted.map((r) => Number(r.headers['x-cm4prov-delivery'])), deliveries.map((d) => d.id).reverse());
  assert.equal(receiver.received.length, 3, 'progress reports while running did not repeat job.started');
});

test('a receiver answering 500 is retried once the clock passes the back-off; attempts and the error are recorded, never the secret', async (t) => {
  const clock = movableClock();
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  const server = await startTestServer(t, {}, { clock, log });
  const receiver = await startReceiver(t);
  receiver.answerWith(() => (receiver.received.length === 0 ? 500 : 200));
  const { id, secret } = (await server.admin('POST', '/api/webhooks', { url: receiver.url, events: ['job.queued'] })).body;
  await registerDevice(server);
  await server.admin('POST', `/api/devices/${MAC}/backup`);

  const [failed] = await waitFor('a failed first attempt', async () => {
    const list = await deliveriesOf(server, id);
    return list[0]?.attempts === 1 ? list : undefined;
  });
  assert.equal(failed.state, 'pending');
  assert.equal(failed.last_status, 500);
  assert.equal(failed.last_error, 'the receiver answered HTTP 500');
  assert.equal(failed.next_attempt_at, new Date(clock.now() + 5_000).toISOString(), 'the first retry waits 5 s');
  const hook = (await server.admin('GET', '/api/webhooks')).body.webhooks[0];
  assert.deepEqual([hook.deliveries.pending, hook.deliveries.last_error], [1, 'the receiver answered HTTP 500']);

  const { notify } = server.server.services;
  clock.advance(4_000);
  await notify.deliverDue();
  assert.equal(receiver.received.length, 1, 'not retried before the back-off has passed');
  clock.advance(1_000);
  await notify.deliverDue();
  assert.equal(receiver.received.length, 2);
  const [delivered] = await deliveriesOf(server, id);
  assert.deepEqual([delivered.state, delivered.attempts, delivered.last_status, delivered.last_error], ['delivered', 2, 200, null]);
  assert.equal(receiver.received[0]!.headers['x-cm4prov-delivery'], receiver.received[1]!.headers['x-cm4prov-delivery'], 'the same delivery, sent again');

  assert.ok(lines.some((line) => line.includes('delivery failed; it is retried')), 'the failure was logged');
  assert.ok(!lines.some((line) => line.includes(secret)), 'no log line holds the secret');
});

test('a delivery pending across a server restart is sent after it, exactly once, and in order', async (t) => {
  const clock = movableClock();
  const server = await startTestServer(t, {}, { clock });
  const receiver = await startReceiver(t);
  receiver.answerWith(() => 500);
  const { id } = (await server.admin('POST', '/api/webhooks', { url: receiver.url })).body;
  await registerDevice(server);
  const job = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  await waitFor('a failed first attempt', async () => (await deliveriesOf(server, id))[0]?.attempts === 1);
  await server.admin('POST', `/api/jobs/${job.id}/cancel`);
  const before = await deliveriesOf(server, id);
  assert.deepEqual(before.map((d) => [d.event, d.state]).reverse(), [['job.queued', 'pending'], ['job.cancelled', 'pending']]);
  assert.equal(receiver.received.length, 1, 'job.cancelled waits behind job.queued');

  receiver.answerWith(() => 200);
  await server.restart();
  assert.deepEqual((await deliveriesOf(server, id)).map((d) => d.state), ['pending', 'pending'], 'the outbox survived the restart');
  clock.advance(5_000);
  await server.server.services.notify.deliverDue();
  assert.deepEqual((await deliveriesOf(server, id)).map((d) => d.state), ['delivered', 'delivered']);
  await server.server.services.notify.deliverDue();
  const accepted = receiver.accepted();
  assert.deepEqual(accepted.map((r) => r.json.event), ['job.queued', 'job.cancelled'], 'each once, in order');
  assert.deepEqual(accepted.map((r) => Number(r.headers['x-cm4prov-delivery'])), before.map((d) => d.id).reverse());
});

test('a bad URL, an unknown event or a short secret is refused with a sentence; removing a webhook', async (t) => {
  const server = await startTestServer(t);
  const cases: Array<[unknown, RegExp]> = [
    [{ url: 'ftp://example.test/x' }, /must start with http:\/\/ or https:\/\/, not ftp:\/\//],
    [{ url: 'not a url' }, /'not a url' is not a URL/],
    [{ url: 'http://user:pw@127.0.0.1/x' }, /must not carry a user name or password/],
    [{ url: 'http://127.0.0.1/x', events: ['job.exploded'] }, /'job.exploded' is not a webhook event/],
    [{ url: 'http://127.0.0.1/x', secret: 'short' }, /secret/],
  ];
  for (const [body, message] of cases) {
    const reply = await server.admin('POST', '/api/webhooks', body);
    assert.equal(reply.status, 400, JSON.stringify(body));
    assert.match(reply.body.message, message);
  }
  const given = await server.admin('POST', '/api/webhooks', { url: 'https://hooks.example.test/cm4', events: ['job.ok', 'job.failed'], secret: 'an-operator-secret-123' });
  assert.equal(given.status, 201);
  assert.equal(given.body.secret, 'an-operator-secret-123');
  assert.deepEqual(given.body.events, ['job.ok', 'job.failed']);
  assert.equal((await server.admin('DELETE', `/api/webhooks/${given.body.id}`)).status, 200);
  assert.deepEqual((await server.admin('GET', '/api/webhooks')).body.webhooks, []);
  assert.equal((await server.admin('DELETE', `/api/webhooks/${given.body.id}`)).status, 404);
  assert.equal((await server.admin('POST', '/api/webhooks/deliveries/999/retry')).status, 404);
});
