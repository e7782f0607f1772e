import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

// The provisioning "LAN" here is 127.0.0.0/8: every 127.x address is this machine's loopback,
// so a test can speak from several addresses without a namespace. dnsmasq is "external": the
// test writes the lease file the way dnsmasq does (EXPIRY MAC IP HOSTNAME CLIENT-ID).
const A = 'dc:a6:32:00:0a:01';
const B = 'dc:a6:32:00:0b:02';
const NOBODY = 'dc:a6:32:00:0c:03';

async function lanServer(t: Parameters<typeof startTestServer>[0]) {
  const server = await startTestServer(t, {
    netbootInterface: 'lo',
    netbootAddress: '127.0.0.1/8',
    dhcpRange: '127.0.0.100,127.0.0.200',
    dnsmasq: 'external',
  });
  mkdirSync(join(server.dataDir, 'netboot'), { recursive: true });
  return server;
}

function writeLeases(server: TestServer, leases: Array<[string, string]>) {
  const lines = leases.map(([mac, ip]) => `0 ${mac} ${ip} * *`);
  writeFileSync(join(server.dataDir, 'netboot', 'dnsmasq.leases'), `${lines.join('\n')}\n`);
}

/** A request from a chosen loopback address, as a device at that address would send it. */
function from(localAddress: string, server: TestServer, method: string, path: string, body?: unknown) {
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const url = new URL(path, server.url);
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(url, { method, localAddress, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('with managed DHCP a MAC speaks only from the address it leased, and an address only for its MAC', async (t) => {
  const server = await lanServer(t);
  writeLeases(server, [[A, '127.0.0.101'], [B, '127.0.0.102']]);

  assert.equal((await from('127.0.0.101', server, 'POST', '/api/register-device', { mac: A })).status, 200);
  const impostor = await from('127.0.0.102', server, 'POST', '/api/register-device', { mac: A });
  assert.equal(impostor.status, 403);
  assert.match(impostor.body.message, /dc:a6:32:00:0a:01 holds the DHCP lease for 127\.0\.0\.101, but this request came from 127\.0\.0\.102/);
  const unleased = await from('127.0.0.150', server, 'GET', `/api/device-action-poll?mac=${A}`);
  assert.equal(unleased.status, 403, 'a host without a lease cannot poll for a leased MAC');
  const squatter = await from('127.0.0.102', server, 'GET', `/api/device-action-poll?mac=${NOBODY}`);
  assert.equal(squatter.status, 403);
  assert.match(squatter.body.message, /127\.0\.0\.102 is leased to dc:a6:32:00:0b:02, not to dc:a6:32:00:0c:03/);
  // Neither the MAC nor the address has a lease (a static address): nothing to bind it to.
  assert.equal((await from('127.0.0.150', server, 'POST', '/api/register-device', { mac: NOBODY })).status, 200);

  // The device moves to another address: the lease file is rewritten, and the binding follows it.
  writeLeases(server, [[A, '127.0.0.111'], [B, '127.0.0.102']]);
  assert.equal((await from('127.0.0.101', server, 'GET', `/api/device-action-poll?mac=${A}`)).status, 403);
  assert.equal((await from('127.0.0.111', server, 'GET', `/api/device-action-poll?mac=${A}`)).status, 200);
});

test("a job's URLs answer only the address that took the job", async (t) => {
  const server = await lanServer(t);
  writeLeases(server, [[A, '127.0.0.101']]);
  assert.equal((await from('127.0.0.101', server, 'POST', '/api/register-device', { mac: A, storage_bytes: 1024 * 1024 })).status, 200);
  const ordered = (await server.admin('POST', `/api/devices/${A}/backup`)).body;
  const answer = (await from('127.0.0.101', server, 'GET', `/api/device-action-poll?mac=${A}`)).body;
  assert.equal(answer.job, ordered.id);
  const progress = new URL(answer.progress_url).pathname + new URL(answer.progress_url).search;

  const elsewhere = await from('127.0.0.160', server, 'POST', progress, { bytes_done: 1, phase: 'uploading' });
  assert.equal(elsewhere.status, 403);
  assert.match(elsewhere.body.message, new RegExp(`job ${ordered.id} was taken by 127\\.0\\.0\\.101; its URLs do not answer 127\\.0\\.0\\.160`));
  assert.doesNotMatch(JSON.stringify(elsewhere.body), /token=/, 'the refusal does not repeat the token');
  assert.equal((await from('127.0.0.101', server, 'POST', progress, { bytes_done: 1, phase: 'uploading' })).status, 200);
  const job = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.equal(job.device_ip, '127.0.0.101');
  assert.equal(job.state, 'running', 'the refused call changed nothing');
});
