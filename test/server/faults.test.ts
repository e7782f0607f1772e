import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfig, ConfigError } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { DataDirInUse } from '../../src/shared/data-lock.js';
import { CLI, runCli } from '../helpers/cli.js';
import { MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** A logger whose lines the test can read: what an operator's journal would hold. */
function capturedLog() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), text: () => lines.join('') };
}

/** A clock the test moves by hand. */
function manualClock() {
  let now = Date.now();
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

test('a second server on the same data folder is refused, and the first one keeps its upload in flight', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, MAC, { storage_bytes: 4 * 1024 * 1024 });
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  // Half an upload, held open.
  const upload = request(order.upload_url, { method: 'PUT', headers: { 'content-length': 4 * 1024 * 1024 } });
  upload.on('error', () => undefined);
  upload.write(Buffer.alloc(1024 * 1024, 7));
  await waitFor('the upload to reach the temp folder', () => readdirSync(join(server.dataDir, 'tmp')).some((name) => name.endsWith('.part')) || undefined);

  const config = loadConfig({ flags: { host: '127.0.0.1', port: 0, dataDir: server.dataDir, logLevel: 'silent' }, env: {} });
  await assert.rejects(startServer(config, { log: pino({ level: 'silent' }) }), (error: Error) => {
    assert.ok(error instanceof DataDirInUse);
    assert.match(error.message, new RegExp(`^Another cm4prov server \\(pid ${process.pid}\\) is using the data folder `));
    return true;
  });
  assert.ok(readdirSync(join(server.dataDir, 'tmp')).some((name) => name.endsWith('.part')), 'the upload in flight is still there');

  const cli = await runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', server.dataDir]);
  assert.equal(cli.code, 2);
  assert.match(cli.stderr, /^cm4prov: Another cm4prov server \(pid \d+\) is using the data folder .*: stop it first, or give this one its own --data-dir\.\n$/);
  upload.destroy();

  // Once the first has stopped, the folder is free again (the lock dies with its holder).
  await server.close();
  const next = await startServer(config, { log: pino({ level: 'silent' }) });
  await next.close();
});

test('a damaged database stops start-up with one sentence, not a stack trace', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'cm4prov.sqlite'), Buffer.alloc(64 * 1024, 0x5a));
  const result = await runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^cm4prov: The database .*cm4prov\.sqlite cannot be used \(SQLITE_NOTADB: file is not a database\)\. If it is damaged, move it aside/);
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
});

test('a busy database answers 503 with Retry-After, logs the failure without the job token, and the server recovers', async (t) => {
  const captured = capturedLog();
  const server = await startTestServer(t, {}, { log: captured.log });
  await registerDevice(server);
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  const token = new URL(order.progress_url).searchParams.get('token')!;

  // Another process holds the write lock (an operator's sqlite3 shell, a backup tool).
  const other = new Database(join(server.dataDir, 'cm4prov.sqlite'));
  other.exec('BEGIN IMMEDIATE');
  t.after(() => other.close());
  const busy = await server.device('POST', pathOf(order.progress_url), { bytes_done: 1, phase: 'uploading' });
  assert.equal(busy.status, 503);
  assert.deepEqual(busy.body, { error: 'database_busy', message: "the server's database is busy; try again in a few seconds" });
  const headers = await fetch(`${server.url}/api/register-device`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mac: MAC }) });
  assert.equal(headers.status, 503);
  assert.equal(headers.headers.get('retry-after'), '5');
  other.exec('ROLLBACK');

  assert.equal((await server.device('POST', pathOf(order.progress_url), { bytes_done: 1, phase: 'uploading' })).status, 200);
  assert.match(captured.text(), /"msg":"request failed"/);
  assert.match(captured.text(), /token=\[redacted\]/);
  assert.ok(!captured.text().includes(token), 'the job token never reaches the log');
});

test('a failing background task is logged and the server goes on', async (t) => {
  const captured = capturedLog();
  const server = await startTestServer(t, {}, { log: captured.log });
  const { services } = server.server;
  let failures = 0;
  const original = services.jobs.failStalled;
  services.jobs.failStalled = () => {
    failures += 1;
    throw Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
  };
  await waitFor('the stalled-job watchdog to run and fail', () => failures >= 2 || undefined, 30_000);
  services.jobs.failStalled = original;
  assert.equal((await server.admin('GET', '/api/devices')).status, 200, 'still serving');
  assert.equal(captured.text().match(/background task failed: ending stalled jobs/g)?.length, 1, 'logged once, not at every tick');
});

test('a fault of ours is 503 or 507 by its kind, and its body never shows a path', async (t) => {
  const server = await startTestServer(t);
  const { services } = server.server;
  const original = services.devices.register;
  const failWith = (code: string, message: string) => {
    services.devices.register = () => {
      throw Object.assign(new Error(`${message} (${server.dataDir}/cm4prov.sqlite)`), { code });
    };
  };
  const register = () => server.device('POST', '/api/register-device', { mac: MAC });
  failWith('SQLITE_FULL', 'database or disk is full');
  assert.equal((await register()).status, 507);
  failWith('ENOSPC', 'no space left on device, write');
  const full = await register();
  assert.equal(full.status, 507);
  assert.equal(full.body.message, "the server's disk is full; nothing was stored");
  failWith('SQLITE_CORRUPT', 'database disk image is malformed');
  assert.equal((await register()).status, 503);
  failWith('EACCES', 'permission denied, open');
  const internal = await register();
  assert.equal(internal.status, 500);
  for (const reply of [full, internal]) assert.ok(!JSON.stringify(reply.body).includes(server.dataDir), JSON.stringify(reply.body));
  services.devices.register = original;

  const unauthorized = await fetch(`${server.url}/api/devices`);
  assert.ok(!(await unauthorized.text()).includes(server.dataDir), 'the 401 names the token file, not its path');
});

test('numbers from devices are whole and in range: Infinity and 1e300 are refused', async (t) => {
  const server = await startTestServer(t);
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  for (const value of ['Infinity', '1e300', '-1', '1.5', '9007199254740993']) {
    const reply = await server.device('POST', '/api/register-device', `mac=${MAC}&storage_bytes=${value}`, form);
    assert.equal(reply.status, 400, `storage_bytes=${value}`);
    assert.match(reply.body.message, /storage_bytes/);
  }
  assert.equal((await server.device('GET', `/api/device-action-poll?mac=${MAC}&wait=Infinity`)).status, 400);
  await registerDevice(server);
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  for (const value of ['Infinity', '1e300']) {
    const reply = await server.device('POST', pathOf(order.progress_url), `bytes_done=${value}&phase=uploading`, form);
    assert.equal(reply.status, 400, `bytes_done=${value}`);
  }
  const job = (await server.admin('GET', `/api/jobs/${order.job}`)).body;
  assert.equal(job.bytes_done, 0, 'nothing was recorded');
});

test('device text reaches the terminal escaped and the CSV export without formulas', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, MAC, { model: 'CM4 \u001b[2J\u001b]0;owned\u0007 \u009b31m', serial: '\u202etxt.exe' });
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const order = await poll(server);
  await server.device('POST', pathOf(order.result_url), { status: 'failed', error: "=HYPERLINK(\"http://x\",\"click\")" });

  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const table = await runCli(['devices'], env);
  assert.equal(table.code, 0, table.stderr);
  assert.doesNotMatch(table.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/, 'no control character reaches the terminal');
  assert.match(table.stdout, /CM4 \\x1b\[2J\\x1b\]0;owned\\x07 \\x9b31m/);
  const json = await runCli(['devices', '--json'], env);
  assert.doesNotMatch(json.stdout, /[\u007f-\u009f\u202e]/);
  assert.equal(JSON.parse(json.stdout)[0]?.model ?? JSON.parse(json.stdout).devices?.[0]?.model, 'CM4 \u001b[2J\u001b]0;owned\u0007 \u009b31m', 'JSON keeps the value itself');

  const csv = await (await fetch(`${server.url}/api/jobs.csv`, { headers: { authorization: `Bearer ${server.token}` } })).text();
  assert.match(csv, /,"'=HYPERLINK\(""http:\/\/x"",""click""\)"\r\n/);
});

test('the data folder is created private: the folder 0700, the database 0600', async (t) => {
  const server = await startTestServer(t);
  assert.equal(statSync(server.dataDir).mode & 0o777, 0o700);
  for (const file of ['cm4prov.sqlite', 'cm4prov.sqlite-wal', 'admin-token']) {
    if (existsSync(join(server.dataDir, file))) assert.equal(statSync(join(server.dataDir, file)).mode & 0o777, 0o600, file);
  }
  assert.ok(existsSync(join(server.dataDir, 'cm4prov.sqlite-wal')));
});

test('a setting with a line break never reaches dnsmasq.conf', () => {
  assert.throws(
    () => loadConfig({ flags: { tftpRoot: '/srv/tftp\ndhcp-script=/tmp/evil' }, env: {} }),
    (error: Error) => error instanceof ConfigError && /^Invalid --tftp-root: .* holds a control character/.test(error.message),
  );
});

test('an upload that goes silent no longer holds its job: the stall timeout ends it', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await registerDevice(server, MAC, { storage_bytes: 4 * 1024 * 1024 });
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  const order = await poll(server);
  const upload = request(order.upload_url, { method: 'PUT', headers: { 'content-length': 4 * 1024 * 1024 } });
  const cut = new Promise((resolve) => upload.on('error', resolve).on('response', resolve));
  upload.write(Buffer.alloc(1024 * 1024, 1));
  await waitFor('the server to take the first MiB', async () => (await server.admin('GET', `/api/jobs/${ordered.id}`)).body.phase === 'uploading' || undefined);
  const { jobs } = server.server.services;
  assert.deepEqual((await jobs.failStalled()), [], 'alive while it has just moved');

  clock.advance(11 * 60 * 1000); // no byte for 11 minutes; the stall timeout is 10
  assert.deepEqual((await jobs.failStalled()).map((job) => job.id), [ordered.id]);
  const job = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /no word from the device for 660 s/);
  await cut; // the silent upload was ended with the job
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
});

test('progress reports that move nothing are not a sign of progress', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await registerDevice(server);
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  const order = await poll(server);
  const report = (bytes: number) => server.device('POST', pathOf(order.progress_url), { bytes_done: bytes, phase: 'uploading' });
  assert.equal((await report(4096)).status, 200);
  for (let minute = 0; minute < 11; minute += 1) {
    clock.advance(60_000);
    assert.equal((await report(4096)).status, 200, 'the same position, reported again');
  }
  const { jobs } = server.server.services;
  assert.deepEqual((await jobs.failStalled()).map((job) => job.id), [ordered.id], 'stuck at one position for 11 minutes: stalled');
});

test("a device's word that an attempt failed and another follows is a sign of life, and shows on the job", async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await registerDevice(server);
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  const order = await poll(server);
  const { jobs } = server.server.services;
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    clock.advance(9 * 60 * 1000); // each attempt fails after 9 minutes: within the 10-minute stall timeout
    const problem = `attempt ${attempt} of 5: backup upload failed (curl exit 56); starting again`;
    assert.equal((await server.device('POST', pathOf(order.progress_url), { bytes_done: 0, phase: 'uploading', problem })).status, 200);
    assert.deepEqual((await jobs.failStalled()), []);
    assert.equal((await server.admin('GET', `/api/jobs/${ordered.id}`)).body.error, problem, 'the job shows why it is slow');
  }
  clock.advance(11 * 60 * 1000);
  const [stalled] = await jobs.failStalled();
  assert.match(stalled?.error ?? '', /^no word from the device for 660 s \(last problem: attempt 3 of 5: backup upload failed/);
});

test('a server killed with SIGKILL mid-upload: the next one starts on the same folder, keeps no half body, and the job ends by its rule', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  const serve = (port: number) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, '--log-level', 'warn'], { stdio: 'pipe' });
    t.after(() => child.kill('SIGKILL'));
    return child;
  };
  const port = await freePort();
  const first = serve(port);
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the first server', () => fetch(`${base}/api/device-action-poll?mac=${MAC}`).then((r) => r.ok, () => false), 20_000);
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const admin = (method: string, path: string) => fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } }).then((r) => r.json() as Promise<any>);
  await fetch(`${base}/api/register-device`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mac: MAC, storage_bytes: 8 * 1024 * 1024 }) });
  const ordered = await admin('POST', `/api/devices/${MAC}/backup`);
  const order = (await (await fetch(`${base}/api/device-action-poll?mac=${MAC}`)).json()) as any;
  const upload = request(order.upload_url, { method: 'PUT', headers: { 'content-length': 8 * 1024 * 1024 } });
  upload.on('error', () => undefined);
  upload.write(Buffer.alloc(2 * 1024 * 1024, 3));
  await waitFor('half a body on disk', () => readdirSync(join(dataDir, 'tmp')).some((name) => name.endsWith('.part')) || undefined);

  const killed = new Promise((resolve) => first.on('exit', (_code, signal) => resolve(signal)));
  first.kill('SIGKILL');
  assert.equal(await killed, 'SIGKILL');
  upload.destroy();

  const second = serve(port);
  let output = '';
  second.stderr.on('data', (chunk) => (output += chunk));
  await waitFor('the second server (no stale lock)', () => fetch(`${base}/api/device-action-poll?mac=dc:a6:32:00:00:99`).then((r) => r.ok, () => false), 20_000)
    .catch((error: Error) => {
      throw new Error(`${error.message}\n${output}`);
    });
  assert.deepEqual(readdirSync(join(dataDir, 'tmp')), [], 'the half body was swept at start');
  assert.deepEqual((await admin('GET', '/api/backups')).backups, [], 'and never became a backup');
  const job = await admin('GET', `/api/jobs/${ordered.id}`);
  assert.equal(job.state, 'running', 'its device may still come back; the stall timeout or its next poll ends it');
  const again = (await (await fetch(`${base}/api/device-action-poll?mac=${MAC}`)).json()) as any;
  assert.equal(again.abandoned_job, ordered.id);
  assert.match(again.message, /abandoned: .*no backup was stored/);
});

test('a silent upload outlives the idle limit while its job is alive (zstd over empty eMMC), and is cut when the job stalls out', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock, connections: { idleMs: 300 } });
  await registerDevice(server, MAC, { storage_bytes: 2 * 1024 * 1024 });
  const ordered = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  const order = await poll(server);
  const upload = request(order.upload_url, { method: 'PUT', headers: { 'content-length': 2 * 1024 * 1024 } });
  let ended: string | undefined;
  upload.on('response', (response) => void (ended = `answered ${response.statusCode}`));
  upload.on('error', (error) => void (ended = `cut: ${error.message}`));
  upload.write(Buffer.alloc(1024 * 1024, 9));
  await waitFor('the first MiB to arrive', async () => (await server.admin('GET', `/api/jobs/${ordered.id}`)).body.phase === 'uploading' || undefined);
  // Several idle limits pass with no body byte; the job heard from its device just now.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(ended, undefined, 'not cut while the job is alive');
  assert.deepEqual((await server.server.services.jobs.failStalled()), [], 'and the job is alive');
  // Eleven minutes without a word (the stall timeout is ten): the job fails, and its upload is cut.
  clock.advance(11 * 60 * 1000);
  assert.deepEqual((await server.server.services.jobs.failStalled()).map((job) => job.id), [ordered.id]);
  await waitFor('the silent upload to be cut', () => ended);
  assert.match(ended!, /^cut/);
});
