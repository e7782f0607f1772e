import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';

/** A stand-in server that records every request and answers each with a 404 sentence. */
async function recordingServer(t: import('node:test').TestContext) {
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'no such device here' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  return { requests, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('every command that takes a MAC refuses a malformed one as a usage error, before any request', async (t) => {
  const { requests, url } = await recordingServer(t);
  const env = { CM4PROV_SERVER: url, CM4PROV_TOKEN: 'x' };
  const commands = [
    ['deploy', 'dc:a6:32:00:00'],
    ['backup', 'dc:a6:32:00:00'],
    ['cancel', 'dc:a6:32:00:00'],
    ['netboot', 'events', 'dc:a6:32:00:00'],
    ['netboot', 'enable', 'dc:a6:32:00:00'],
    ['netboot', 'disable', 'dc:a6:32:00:00'],
    ['jobs', '--device', 'dc:a6:32:00:00'],
    ['backups', '--device', 'dc:a6:32:00:00'],
  ];
  for (const args of commands) {
    const result = await runCli(args, env);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.equal(result.stderr, "cm4prov: invalid MAC address 'dc:a6:32:00:00': expected six hex byte pairs like dc:a6:32:01:02:03\n", args.join(' '));
  }
  // The server's own rules, e.g. no group address.
  const broadcast = await runCli(['deploy', 'ff:ff:ff:ff:ff:ff'], env);
  assert.equal(broadcast.code, 2);
  assert.equal(broadcast.stderr, "cm4prov: invalid MAC address 'ff:ff:ff:ff:ff:ff': it is a multicast/broadcast address, not a device's\n");
  assert.deepEqual(requests, [], 'nothing was sent');
});

test('the spellings the server accepts are accepted, and sent in its canonical form', async (t) => {
  const { requests, url } = await recordingServer(t);
  const env = { CM4PROV_SERVER: url, CM4PROV_TOKEN: 'x' };
  const dotted = await runCli(['deploy', 'DCA6.3200.0001'], env);
  assert.equal(dotted.code, 1, 'sent; the stand-in server refused it');
  assert.equal(dotted.stderr, 'cm4prov: the server refused: no such device here\n');
  await runCli(['jobs', '--device', 'dc-a6-32-00-00-01'], env);
  await runCli(['netboot', 'events', 'dca632000001'], env);
  assert.deepEqual(requests, [
    'POST /api/devices/dc%3Aa6%3A32%3A00%3A00%3A01/deploy',
    'GET /api/jobs?limit=50&device=dc%3Aa6%3A32%3A00%3A00%3A01',
    'GET /api/devices/dc%3Aa6%3A32%3A00%3A00%3A01/boot-events?limit=50',
  ]);
});

test('a bad backup id or job state is a usage error too, before any request', async (t) => {
  const { requests, url } = await recordingServer(t);
  const env = { CM4PROV_SERVER: url, CM4PROV_TOKEN: 'x' };
  const rm = await runCli(['backup', 'rm', '7x'], env);
  assert.equal(rm.code, 2);
  assert.equal(rm.stderr, "cm4prov: '7x' is not a backup id: expected a number from the ID column of `cm4prov backups`\n");
  const state = await runCli(['jobs', '--state', 'done'], env);
  assert.equal(state.code, 2);
  assert.equal(state.stderr, "cm4prov: --state takes queued, running, ok, unconfirmed, failed, cancelled, not 'done'\n");
  assert.deepEqual(requests, []);
});
