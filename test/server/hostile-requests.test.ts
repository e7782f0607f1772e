import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { addImage, MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// What any host on the LAN can send, generated: every route a device or a browser can reach,
// with malformed, oversized, out-of-range, injected and contradictory input. Whatever comes,
// the answer is a 4xx with a sentence (never a 5xx, never a stack, never a path), the process
// stays up, nothing leaks into Object.prototype, and a real device still works afterwards.

const MACS = [
  '', ' ', 'zz:zz:zz:zz:zz:zz', 'dc:a6:32', 'dc:a6:32:00:00:02:02', 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00',
  '../../etc/passwd', 'dc:a6:32:00:00:02\n', 'dc:a6:32:00:00:02;reboot', '<script>alert(1)</script>', '%00', '\u0000',
  'dc:a6:32:00:00:02'.repeat(50), '\u202edc:a6:32:00:00:02', '{"$ne":null}', 'DC-A6-32-00-00-0G',
];
const NUMBERS = ['Infinity', '-Infinity', 'NaN', '1e300', '-1', '1.5', '0x1g', '9'.repeat(400), 'null', '[]', '{}', 'true', '1e-7', ' '];
const TEXTS = ['x'.repeat(70_000), '\u0000\u0001\u001b[2J', '=cmd|" /C calc"!A0', '☃'.repeat(500), '"; DROP TABLE devices; --', '${jndi:ldap://x}'];
const BODIES: Array<[string, string]> = [
  ['application/json', '{'],
  ['application/json', '[]'],
  ['application/json', 'null'],
  ['application/json', '"mac"'],
  ['application/json', '{"__proto__":{"polluted":1},"mac":"dc:a6:32:00:00:09"}'],
  ['application/json', '{"constructor":{"prototype":{"polluted":1}},"mac":"dc:a6:32:00:00:09"}'],
  ['application/json', `{"mac":${'['.repeat(5000)}`],
  ['application/x-www-form-urlencoded', 'mac=%zz'],
  ['application/x-www-form-urlencoded', `mac=${'a'.repeat(2_000_000)}`],
  ['application/xml', '<mac>dc:a6:32:00:00:01</mac>'],
  ['text/plain', 'mac=dc:a6:32:00:00:01'],
  ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="mac"\r\n\r\ndc\r\n--x--'],
];

/** Junk of every shape, the same on every run (a fixed seed): what a fuzzer would throw first. */
function junk(count: number): string[] {
  let seed = 0x5eed;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  const alphabet = Array.from(':-.%/\\\u0000\u001b\n\r\t"\'<>&;|$`{}[]()*?~!#^=+,@ aZ09fF\u00ff\u202e\ud83d\ude00');
  return Array.from({ length: count }, () => {
    const length = next() % 64;
    let text = '';
    for (let i = 0; i < length; i += 1) text += alphabet[next() % alphabet.length];
    return text;
  });
}

/** Hostile registrations and polls speak for another MAC: re-registering the device itself would (rightly) end its job. */
const OTHER = 'dc:a6:32:00:00:02';

interface Attempt {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

function attempts(job: number, token: string): Attempt[] {
  const list: Attempt[] = [];
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const json = { 'content-type': 'application/json' };
  for (const mac of MACS) {
    list.push({ method: 'POST', path: '/api/register-device', body: JSON.stringify({ mac }), headers: json });
    list.push({ method: 'POST', path: '/api/register-device', body: `mac=${encodeURIComponent(mac)}`, headers: form });
    list.push({ method: 'GET', path: `/api/device-action-poll?mac=${encodeURIComponent(mac)}` });
    list.push({ method: 'GET', path: `/api/devices/${encodeURIComponent(mac)}` });
  }
  for (const value of NUMBERS) {
    const v = encodeURIComponent(value);
    list.push({ method: 'POST', path: '/api/register-device', body: `mac=${OTHER}&storage_bytes=${v}`, headers: form });
    list.push({ method: 'GET', path: `/api/device-action-poll?mac=${OTHER}&wait=${v}` });
    list.push({ method: 'GET', path: `/api/device-action-poll?mac=${OTHER}&format=${v}&features=${v}` });
    list.push({ method: 'POST', path: `/api/device-jobs/${job}/progress?token=${token}`, body: `bytes_done=${v}&phase=writing`, headers: form });
    list.push({ method: 'POST', path: `/api/device-jobs/${job}/result?token=${token}`, body: `status=ok&bytes=${v}&sha256=${v}`, headers: form });
    for (const leaf of ['image', 'manifest', 'chunks', 'progress', 'result', 'upload']) {
      list.push({ method: 'GET', path: `/api/device-jobs/${v}/${leaf}?token=${token}` });
    }
    list.push({ method: 'GET', path: `/api/device-jobs/${job}/image?token=${token}`, headers: { range: `bytes=${value}-${value}` } });
    list.push({ method: 'GET', path: `/api/jobs?limit=${v}&state=${v}` });
    list.push({ method: 'GET', path: `/api/backups/${v}` });
  }
  for (const text of TEXTS) {
    const t = encodeURIComponent(text);
    list.push({ method: 'POST', path: '/api/register-device', body: JSON.stringify({ mac: OTHER, serial: text, model: text, client_version: text, ip: text }), headers: json });
    list.push({ method: 'POST', path: `/api/device-jobs/${job}/progress?token=${token}`, body: JSON.stringify({ bytes_done: 1, phase: text }), headers: json });
    list.push({ method: 'POST', path: `/api/device-jobs/${job}/result?token=${t}`, body: JSON.stringify({ status: 'ok', error: text }), headers: json });
    list.push({ method: 'GET', path: `/login?next=${t}` });
    list.push({ method: 'POST', path: '/login', body: `password=${t}&next=${t}`, headers: form });
    list.push({ method: 'GET', path: `/assets/${t}` });
    list.push({ method: 'GET', path: `/api/images?name=${t}` });
    list.push({ method: 'POST', path: `/api/images?name=${t}`, body: 'x', headers: { 'content-type': 'application/octet-stream' } });
  }
  for (const [type, body] of BODIES) {
    for (const path of ['/api/register-device', `/api/device-jobs/${job}/progress?token=${token}`, `/api/device-jobs/${job}/result?token=${token}`, '/login', '/api/images/bmaps']) {
      list.push({ method: 'POST', path, body, headers: { 'content-type': type } });
    }
  }
  for (const value of junk(150)) {
    const v = encodeURIComponent(value);
    list.push({ method: 'POST', path: '/api/register-device', body: `mac=${v}&ip=${v}&serial=${v}&storage_bytes=${v}`, headers: form });
    list.push({ method: 'GET', path: `/api/device-action-poll?mac=${v}&wait=${v}&features=${v}` });
    list.push({ method: 'POST', path: `/api/device-jobs/${job}/progress?token=${token}&mac=${v}`, body: `bytes_done=1&phase=${v}`, headers: form });
    list.push({ method: 'GET', path: `/api/device-jobs/${job}/image?token=${token}`, headers: { range: value.replace(/[^\x20-\x7e]/g, '') } });
  }
  const tokens = ['', 'x', token.slice(0, -1), `${token}x`, token.toUpperCase(), '%00', 'a'.repeat(5000), '../../admin-token'];
  for (const bad of tokens) {
    for (const leaf of ['image', 'manifest', 'chunks', 'progress', 'result', 'upload']) {
      const post = leaf === 'progress' || leaf === 'result' || leaf === 'upload';
      list.push({ method: post ? 'POST' : 'GET', path: `/api/device-jobs/${job}/${leaf}?token=${encodeURIComponent(bad)}`, ...(post ? { body: '{}', headers: json } : {}) });
    }
  }
  const cookies = ['cm4prov_session=%zz', 'cm4prov_session=', 'cm4prov_session=' + 'a'.repeat(8000), '=;=;=', "cm4prov_session=\"\u00ff\"", '; ; ;'];
  const auths = ['Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', `Bearer ${'x'.repeat(10_000)}`, 'bearer %zz', 'Bearer \u00ff'];
  for (const path of ['/', '/history?state=%zz&device=%00', '/api/devices', '/api/jobs.csv', `/dashboard/deploy-dialog/${OTHER}`, '/dashboard/events?view=devices', '/api/netboot/leases']) {
    for (const cookie of cookies) list.push({ method: 'GET', path, headers: { cookie } });
    for (const authorization of auths) list.push({ method: 'GET', path, headers: { authorization } });
  }
  for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE']) {
    for (const path of ['/api/register-device', '/api/device-action-poll', `/api/device-jobs/${job}/image`, '/login', '/api/devices']) list.push({ method, path });
  }
  for (const path of ['/..%2f..%2fetc/passwd', '/assets/..%2f..%2fpackage.json', '/api/device-jobs/1/../../admin-token', '/%', '/api/device-action-poll?mac=a&mac=b', `/api/device-action-poll?${'a=1&'.repeat(5000)}`]) {
    list.push({ method: 'GET', path });
  }
  for (const origin of ['http://evil.example', 'null']) {
    list.push({ method: 'POST', path: '/api/register-device', body: JSON.stringify({ mac: OTHER }), headers: { ...json, origin } });
    list.push({ method: 'GET', path: `/api/device-action-poll?mac=${OTHER}`, headers: { 'sec-fetch-site': 'cross-site' } });
  }
  return list;
}

// A connection per request: a reply that closes its connection (a 431, a 413) cannot take the next request with it.
const agent = new Agent({ keepAlive: false });

/** node:http rather than fetch: it sends what fetch refuses to (TRACE, odd header bytes). */
function send(server: TestServer, attempt: Attempt): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${attempt.path}`, { method: attempt.method, headers: attempt.headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    // Headers over Node's 16 KiB, or a body over the 1 MiB limit, may be refused while they are
    // still being sent: the server answers 431/413 and closes, and the writer sees the reset.
    // That refusal is the right answer.
    const headerBytes = attempt.path.length + JSON.stringify(attempt.headers ?? {}).length;
    const oversized = headerBytes > 16 * 1024 ? 431 : Buffer.byteLength(attempt.body ?? '') > 1024 * 1024 ? 413 : 0;
    req.on('error', (error) => (oversized ? resolve({ status: oversized, text: '' }) : reject(error)));
    req.end(attempt.body);
  });
}

test('over a thousand hostile requests: every answer a 4xx with a sentence or a normal reply, the server unharmed', { timeout: 300_000 }, async (t) => {
  const server = await startTestServer(t, { maxConnectionsPerAddress: 0 });
  await addImage(t, server, 'raspios', 64 * 1024, { makeDefault: true });
  await registerDevice(server);
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const order = await poll(server);
  const token = new URL(order.url).searchParams.get('token')!;

  const list = attempts(order.job, token);
  assert.ok(list.length >= 1000, `${list.length} requests`);
  const statuses = new Map<number, number>();
  const fivexx: string[] = [];
  for (const attempt of list) {
    const { status, text } = await send(server, attempt).catch((error: Error) => {
      throw new Error(`${attempt.method} ${attempt.path.slice(0, 100)} (${attempt.body?.length ?? 0}-byte body): ${error.message}`);
    });
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status >= 500) fivexx.push(`${attempt.method} ${attempt.path.slice(0, 80)} → ${status} ${text.slice(0, 120)}`);
    assert.ok(!text.includes(server.dataDir), `no server path in the answer to ${attempt.method} ${attempt.path.slice(0, 60)}`);
    assert.doesNotMatch(text, /\n\s+at .*\(.*:\d+:\d+\)/, 'no stack trace');
    if (status >= 400 && status < 500 && text.startsWith('{')) {
      assert.match(JSON.parse(text).message ?? '', /\w/, `a sentence for ${attempt.method} ${attempt.path.slice(0, 60)}`);
    }
  }
  t.diagnostic(`${list.length} hostile requests; answers: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(', ')}`);
  assert.deepEqual(fivexx, []);
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'nothing reached Object.prototype');

  // The device whose job was shot at still finishes it, and a new device still registers.
  const job = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
  assert.equal(job.state, 'running', job.error);
  agent.destroy();
  const image = await fetch(order.url);
  assert.equal(image.status, 200);
  assert.equal((await image.arrayBuffer()).byteLength, 64 * 1024);
  assert.equal((await server.device('POST', '/api/register-device', { mac: 'dc:a6:32:00:00:77' })).status, 200);
});
