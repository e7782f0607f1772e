import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 16 * 1024 * 1024;

/** A stand-in for /sys/class/leds/ACT: the files the client writes, as plain files. */
function fakeLed(t: TestContext) {
  const dir = join(tempDir(t, 'cm4prov-led-'), 'ACT');
  mkdirSync(dir);
  writeFileSync(join(dir, 'trigger'), 'none timer oneshot heartbeat default-on [mmc0]\n');
  writeFileSync(join(dir, 'brightness'), '0\n');
  writeFileSync(join(dir, 'max_brightness'), '255\n');
  writeFileSync(join(dir, 'delay_on'), '500\n');
  writeFileSync(join(dir, 'delay_off'), '500\n');
  const read = (name: string) => readFileSync(join(dir, name), 'utf8').trim();
  return {
    dir,
    trail: join(dir, '..', 'trail'),
    /** What the LED shows, as the kernel would have it from these files. */
    shows: () => (read('trigger') === 'none' ? `steady ${read('brightness')}` : `${read('trigger')} ${read('delay_on')}/${read('delay_off')}`),
    trailed: () => readFileSync(join(dir, '..', 'trail'), 'utf8').trim().split('\n'),
  };
}

async function setUp(t: TestContext) {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'line', 2 * 1024 * 1024 + 5, { makeDefault: true });
  return { server, emmc, image, led: fakeLed(t) };
}

async function ended(server: TestServer, id: number) {
  let job: { state: string; error: string | null; finish: string } | undefined;
  await waitFor(`job ${id} to end`, async () => {
    job = (await server.admin('GET', `/api/jobs/${id}`)).body;
    return !['queued', 'running'].includes(job!.state);
  });
  return job!;
}

test('the LED blinks slowly while waiting, fast while working, and is steady on once the deploy is ok', async (t) => {
  const { server, emmc, image, led } = await setUp(t);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { LED_DIR: led.dir, LED_TRAIL: led.trail } });
  await client.waitForOutput(/waiting for the operator/);
  await waitFor('the waiting pattern', () => led.shows() === 'timer 1000/1000');

  const job = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal(job.finish, 'reboot', 'an order without finish reboots, as before');
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await ended(server, job.id)).state, 'ok');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  assert.deepEqual(led.trailed(), ['waiting', 'working', 'done']);
  assert.equal(led.shows(), 'steady 255', 'steady on at full brightness');
});

test('a failed job leaves the failed pattern, and it stays when the client starts again until new work comes', async (t) => {
  const { server, emmc, led } = await setUp(t);
  await addImage(t, server, 'too-big', EMMC_BYTES * 2);
  const env = { LED_DIR: led.dir, LED_TRAIL: led.trail };
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await client.waitForOutput(/waiting for the operator/);
  // The server refuses what it knows will not fit: tell it a larger size, so the client is the one to fail.
  await registerDevice(server, MAC, { storage_bytes: EMMC_BYTES * 4 });
  const job = (await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'too-big' })).body;
  assert.equal(await client.exited, 1, client.output());
  assert.equal((await ended(server, job.id)).state, 'failed');
  assert.deepEqual(led.trailed(), ['waiting', 'working', 'failed']);
  assert.equal(led.shows(), 'timer 200/800');

  // /init starts the client again after a failure: the LED keeps saying failed while it waits.
  const again = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await again.waitForOutput(/waiting for the operator/);
  assert.equal(led.shows(), 'timer 200/800');
  const next = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal(await again.exited, 0, again.output());
  assert.equal((await ended(server, next.id)).state, 'ok');
  assert.deepEqual(led.trailed(), ['waiting', 'working', 'failed', 'working', 'done']);
  assert.equal(led.shows(), 'steady 255');
});

test('finish poweroff: the client ends with status 10 after the ok job, for /init to power off', async (t) => {
  const { server, emmc, led } = await setUp(t);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { LED_DIR: led.dir } });
  await client.waitForOutput(/waiting for the operator/);
  const job = (await server.admin('POST', `/api/devices/${MAC}/backup`, { finish: 'poweroff' })).body;
  assert.equal(job.finish, 'poweroff');
  assert.equal(await client.exited, 10, client.output());
  assert.equal((await ended(server, job.id)).state, 'ok');
  assert.match(client.output(), new RegExp(`job ${job.id} ok; the order says power off: exit status 10`));
  assert.equal(led.shows(), 'steady 255');
});

test('finish wait from a rule: the client stays up with the LED on, and takes more work a person orders', async (t) => {
  const { server, emmc, led } = await setUp(t);
  const rule = await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', finish: 'wait', confirm_boot: false });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  assert.equal(rule.body.finish, 'wait');
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { LED_DIR: led.dir, LED_TRAIL: led.trail } });
  await client.waitForOutput(/the order says wait: staying up with the LED steady on/);
  const first = (await server.admin('GET', `/api/jobs?device=${MAC}`)).body.jobs[0];
  assert.equal(first.state, 'ok');
  assert.equal(first.finish, 'wait');
  assert.deepEqual(first.ordered_by, { kind: 'rule', id: rule.body.id, name: 'line' });
  assert.equal(led.shows(), 'steady 255');
  // Still polling: the device's row is not stale, and a person can order more.
  assert.equal(client.child.exitCode, null, 'the client is still running');
  const more = (await server.admin('POST', `/api/devices/${MAC}/deploy`, { finish: 'reboot' })).body;
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await ended(server, more.id)).state, 'ok');
  assert.deepEqual(led.trailed(), ['waiting', 'working', 'done', 'working', 'done']);
});

test('AFTER_JOB=poll ignores finish (trials): the client serves on after an order to power off', async (t) => {
  const { server, emmc } = await setUp(t);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { AFTER_JOB: 'poll', LED_DIR: join(tempDir(t), 'none') } });
  await client.waitForOutput(/no activity LED at .*none \(set LED_DIR\); the LED shows nothing/);
  await client.waitForOutput(/waiting for the operator/);
  const job = (await server.admin('POST', `/api/devices/${MAC}/deploy`, { finish: 'poweroff' })).body;
  await client.waitForOutput(new RegExp(`job ${job.id} ended with status 0; waiting for the next job`));
  assert.equal((await ended(server, job.id)).state, 'ok');
  assert.equal(client.child.exitCode, null);
});

test('an LED that refuses every write is logged once and costs the job nothing', async (t) => {
  const { server, emmc } = await setUp(t);
  const dir = join(tempDir(t), 'ACT');
  // Directories where the files should be: every write fails, as for triggers a kernel lacks.
  for (const name of ['trigger', 'brightness', 'delay_on', 'delay_off']) mkdirSync(join(dir, name), { recursive: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { LED_DIR: dir } });
  await client.waitForOutput(/waiting for the operator/);
  const job = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await ended(server, job.id)).state, 'ok');
  assert.equal(client.output().match(/the LED at .* refused trigger=timer \(a trigger this kernel lacks\?\)/g)?.length, 1, client.output());
});

test('the poll answer carries finish only to clients that announce it; bad words get a 400 and a CLI usage error', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'line', 1024 * 1024, { makeDefault: true });
  const macs = ['dc:a6:32:00:00:0a', 'dc:a6:32:00:00:0b', 'dc:a6:32:00:00:0c'];
  for (const mac of macs) {
    await registerDevice(server, mac);
    assert.equal((await server.admin('POST', `/api/devices/${mac}/deploy`, { finish: 'wait' })).status, 201);
  }
  const answer = async (mac: string, features?: string) =>
    (await server.device('GET', `/api/device-action-poll?mac=${mac}${features === undefined ? '' : `&features=${features}`}`)).body;
  const original = await answer(macs[0]!);
  assert.equal(original.action, 'deploy');
  assert.equal('finish' in original, false, 'the original contract is unchanged');
  assert.equal('finish' in (await answer(macs[1]!, 'sparse,zstd')), false);
  assert.equal((await answer(macs[2]!, 'sparse,finish')).finish, 'wait');

  const bad = await server.admin('POST', `/api/devices/${macs[0]}/deploy`, { finish: 'halt' });
  assert.equal(bad.status, 400);
  const badRule = await server.admin('POST', '/api/rules', { name: 'x', action: 'deploy', finish: 'halt' });
  assert.equal(badRule.status, 400);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const cli = await runCli(['deploy', macs[0]!, '--finish', 'halt'], env);
  assert.equal(cli.code, 2);
  assert.match(cli.stderr, /--finish takes reboot, poweroff or wait, not 'halt'/);
  const added = await runCli(['rules', 'add', 'packing', '--action', 'deploy', '--finish', 'poweroff', '--json'], env);
  assert.equal(added.code, 0, added.stderr);
  assert.equal(JSON.parse(added.stdout).finish, 'poweroff');
});
