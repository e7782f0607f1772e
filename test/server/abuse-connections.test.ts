import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { addImage, MAC, pathOf, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** A raw TCP client: what it received, and a promise that settles when the connection is closed. */
function rawClient(server: TestServer, localAddress = '127.0.0.1') {
  const url = new URL(server.url);
  const socket: Socket = connect({ host: url.hostname, port: Number(url.port), localAddress });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return {
    socket,
    connected,
    closed,
    received: () => Buffer.concat(chunks),
    send: (text: string) => new Promise<void>((resolve, reject) => socket.write(text, (error) => (error ? reject(error) : resolve()))),
  };
}

/** GET on a connection of its own from `localAddress`, closed after the answer. */
function getJsonFrom(url: string, localAddress: string): Promise<any> {
  return new Promise((resolve, reject) => {
    get(url, { localAddress, agent: false }, (response) => {
      let text = '';
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => resolve(JSON.parse(text)));
    }).on('error', reject);
  });
}

const registerBody = JSON.stringify({ mac: MAC, storage_bytes: 1024 });
const registerHead = `POST /api/register-device HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${registerBody.length}\r\n\r\n`;

test('a request whose headers or body stop arriving is cut once the connection has been idle, and the server carries on', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 300 } });

  const headers = rawClient(server);
  await headers.send('GET /api/device-action-poll?mac=dc:a6:32:00:00:01 HTTP/1.1\r\nHost: x\r\n');
  await headers.closed;
  assert.equal(headers.received().length, 0, 'cut without an answer: the request never arrived');

  const body = rawClient(server);
  await body.send(registerHead + registerBody.slice(0, 10));
  await body.closed;
  assert.equal(body.received().length, 0);
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 0, 'the half-sent registration did nothing');

  assert.equal((await server.device('POST', '/api/register-device', { mac: MAC, storage_bytes: 1024 })).status, 200, 'the server still answers');
});

test('headers trickling in a byte at a time are cut when the headers limit runs out, with a 408', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 30_000, headersMs: 500, checkEveryMs: 100 } });
  const client = rawClient(server);
  await client.send('GET / HTTP/1.1\r\nHost: x\r\n');
  let open = true;
  void client.closed.then(() => (open = false));
  // One byte per 50 ms: the connection is never idle, yet its headers never end.
  while (open) {
    client.socket.write('X');
    await sleep(50);
  }
  assert.match(client.received().toString(), /^HTTP\/1\.1 408 /);
});

test('an upload whose bytes keep coming is not cut, however much longer than the idle limit it takes', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 2000, smallBodyMs: 500 } });
  const data = randomBytes(2 * 1024 * 1024);
  const client = rawClient(server);
  await client.send(
    `POST /api/images?name=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.token}\r\n` +
      `Content-Type: application/octet-stream\r\nContent-Length: ${data.length}\r\n\r\n`,
  );
  // 40 pieces 100 ms apart: 4 s in all, twice the idle limit, never idle for more than a twentieth of it.
  const piece = data.length / 40;
  for (let i = 0; i < 40; i++) {
    client.socket.write(data.subarray(i * piece, (i + 1) * piece));
    await sleep(100);
  }
  await waitFor('the answer', () => client.received().includes('\r\n\r\n{'));
  assert.match(client.received().toString(), /^HTTP\/1\.1 201 /);
  client.socket.destroy();
  const image = (await server.admin('GET', '/api/images/slow')).body;
  assert.equal(image.sha256, createHash('sha256').update(data).digest('hex'), 'all of it arrived');
});

test('a small body trickling in is cut when its deadline passes, though it is never idle', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 30_000, smallBodyMs: 500 } });
  // JSON allows whitespace: 1,000 bytes sent one every 20 ms would take 20 s.
  const body = registerBody.padEnd(1000, ' ');
  const client = rawClient(server);
  await client.send(registerHead.replace(`Content-Length: ${registerBody.length}`, `Content-Length: ${body.length}`));
  let open = true;
  void client.closed.then(() => (open = false));
  for (let i = 0; open && i < body.length; i++) {
    client.socket.write(body[i]!);
    await sleep(20);
  }
  assert.equal(open, false, 'cut before the body was complete');
  assert.equal(client.received().length, 0);
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 0);
});

test('a long-poll parked longer than the idle limit is answered, not cut', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 200 } });
  await registerDevice(server);
  const answer = await server.device('GET', `/api/device-action-poll?mac=${MAC}&wait=2`);
  assert.equal(answer.status, 200);
  assert.equal(answer.body.action, 'none', 'it waited its 2 s, ten idle limits, and answered');
});

test('a download whose client stops reading is cut once nothing has moved for the idle limit', async (t) => {
  const server = await startTestServer(t, {}, { connections: { idleMs: 500 } });
  await registerDevice(server);
  const image = await addImage(t, server, 'big', 32 * 1024 * 1024, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  // From an address of its own (a job's URLs answer the address that took it), so that the
  // server's count of that address's connections is the download's alone.
  const from = '127.0.0.2';
  const order = await getJsonFrom(`${server.url}/api/device-action-poll?mac=${MAC}`, from);
  assert.equal(order.action, 'deploy');
  await waitFor('the poll connection to close', () => server.server.connections.openFrom(from) === 0);
  const client = rawClient(server, from);
  await client.connected;
  client.socket.pause();
  await client.send(`GET ${pathOf(order.url)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor('the server to count the connection', () => server.server.connections.openFrom(from) === 1);
  await waitFor('the server to cut the stalled download', () => server.server.connections.openFrom(from) === 0);
  client.socket.resume();
  await client.closed;
  assert.ok(client.received().length < image.bytes, `${client.received().length} bytes of ${image.bytes} arrived: the download was cut`);
});

test('one address may hold only so many connections: one more is refused with a 503 at once, and a closed one makes room', async (t) => {
  const lines: Array<{ msg: string; refusedSinceLastLine?: number }> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  let now = Date.parse('2025-01-01T00:00:00Z');
  const server = await startTestServer(t, {}, { connections: { maxPerAddress: 4 }, clock: { now: () => now }, log });
  const from = '127.0.0.3';
  const held = Array.from({ length: 4 }, () => rawClient(server, from));
  t.after(() => held.forEach((client) => client.socket.destroy()));
  await waitFor('4 connections counted', () => server.server.connections.openFrom(from) === 4);

  const refused = rawClient(server, from);
  await refused.closed;
  assert.match(refused.received().toString(), /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(refused.received().toString(), /already has 4 open connections to the server, its limit/);
  assert.equal(server.server.connections.openFrom(from), 4, 'the refused one was never counted');
  assert.equal((await server.device('GET', '/login')).status, 200, 'another address is unaffected');

  for (let i = 0; i < 2; i++) await rawClient(server, from).closed;
  const refusalLines = () => lines.filter((line) => line.msg.startsWith(`refused a connection from ${from}`));
  assert.equal(refusalLines().length, 1, 'three refusals within a minute: one log line');
  now += 61_000;
  await rawClient(server, from).closed;
  assert.equal(refusalLines().length, 2);
  assert.equal(refusalLines()[1]!.refusedSinceLastLine, 2);

  held[0]!.socket.destroy();
  await waitFor('the closed connection to be forgotten', () => server.server.connections.openFrom(from) === 3);
  const admitted = rawClient(server, from);
  await admitted.send('GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await admitted.closed;
  assert.match(admitted.received().toString(), /^HTTP\/1\.1 200 /);
});

test('the device API refuses requests a browser marks as coming from another site; curl-like clients are unaffected', async (t) => {
  const server = await startTestServer(t);
  const register = (headers: Record<string, string>) => server.device('POST', '/api/register-device', { mac: MAC, storage_bytes: 1024 }, headers);
  const foreign: Array<Record<string, string>> = [
    { origin: 'http://evil.example' },
    { origin: 'null' },
    { origin: server.url.replace('127.0.0.1', 'localhost') },
    { 'sec-fetch-site': 'cross-site' },
    { 'sec-fetch-site': 'same-site' },
    { origin: server.url, 'sec-fetch-site': 'cross-site' },
  ];
  for (const headers of foreign) {
    const reply = await register(headers);
    assert.equal(reply.status, 403, JSON.stringify(headers));
    assert.match(reply.body.message, /does not answer requests from web pages of another site/);
  }
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 0, 'none of them registered');
  const own: Array<Record<string, string>> = [{}, { origin: server.url }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }];
  for (const headers of own) {
    assert.equal((await register(headers)).status, 200, JSON.stringify(headers));
  }
});
