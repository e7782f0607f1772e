import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from '../helpers/server.js';
import { scratch } from '../device-files/helpers.js';
import { deployWithClient, firstBootCall, manualClock, prepareLine } from './helpers.js';

const A = 'dc:a6:32:00:14:01';
const B = 'dc:a6:32:00:14:02';

test('rule with confirm_boot (the default) and retries 1: not confirmed twice → held with the reason; confirmed → provisioned, not acted on again', async (t) => {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await prepareLine(server, dir);
  const rule = await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', image: 'os', profile: 'boot', retries: 1 });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  assert.deepEqual([rule.body.confirm_boot, rule.body.confirm_timeout], [true, null]);
  const { firstBoot } = server.server.services;
  const jobsOf = async (mac: string) => (await server.admin('GET', `/api/jobs?device=${mac}`)).body.jobs as Array<{ id: number; state: string; first_boot: { state: string } }>;

  // A: the first deploy ends ok, awaiting; while it waits the rule does not act again.
  await deployWithClient(t, server, dir, A);
  const [first] = await jobsOf(A);
  assert.deepEqual([first!.state, first!.first_boot.state], ['ok', 'awaiting']);
  assert.match(JSON.stringify((await server.admin('GET', `/api/rules/test?mac=${A}`)).body), /goes on with its work on this device/);
  await server.device('POST', '/api/register-device', { mac: A, storage_bytes: 64 * 1024 * 1024 });
  assert.equal((await jobsOf(A)).length, 1, 'no new job while its first boot is awaited');

  // No call within 10 min: a failed attempt → the rule orders the retry at once.
  clock.advance(601_000);
  await firstBoot.expireDue();
  const afterFirst = await jobsOf(A);
  assert.deepEqual(afterFirst.map((job) => [job.state, job.first_boot.state]), [['queued', 'not_yet'], ['ok', 'not_confirmed']]);
  assert.equal((await server.admin('GET', `/api/devices/${A}`)).body.netboot.enabled, true);

  await deployWithClient(t, server, dir, A);
  clock.advance(601_000);
  await firstBoot.expireDue();
  const second = (await jobsOf(A))[0]!;
  assert.equal(second.first_boot.state, 'not_confirmed');
  const device = (await server.admin('GET', `/api/devices/${A}`)).body;
  assert.deepEqual(device.rule_hold, { rule: 'line', reason: `its deploy (job ${second.id}) was not confirmed: no first-boot call within 10 min (2 attempts)` });
  await server.device('POST', '/api/register-device', { mac: A, storage_bytes: 64 * 1024 * 1024 });
  assert.equal((await jobsOf(A)).length, 2, 'held: no third attempt');

  // B: confirmed → provisioned; registering again orders nothing.
  const token = await deployWithClient(t, server, dir, B);
  assert.equal((await server.device('POST', '/api/first-boot', firstBootCall(token, B))).status, 200);
  const held = (await server.admin('GET', '/api/rules')).body.held as Array<{ mac: string }>;
  assert.deepEqual(held.map((row) => row.mac), [A]);
  await server.device('POST', '/api/register-device', { mac: B, storage_bytes: 64 * 1024 * 1024 });
  const jobsB = await jobsOf(B);
  assert.deepEqual(jobsB.map((job) => [job.state, job.first_boot.state]), [['ok', 'confirmed']]);
  const verdicts = JSON.stringify((await server.admin('GET', `/api/rules/test?mac=${B}`)).body);
  assert.match(verdicts, /it provisioned this device ok \(job \d+\) and does not act again/);
});

test('a rule with confirm_boot false counts an ok deploy as provisioned at once', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await prepareLine(server, dir);
  await server.admin('POST', '/api/profiles', { name: 'plain', files: [{ partition: 1, fs: 'vfat', path: '/fb-token.txt', template: 'none\n' }] });
  const rule = await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', image: 'os', profile: 'plain', confirm_boot: false });
  assert.equal(rule.body.confirm_boot, false);
  await deployWithClient(t, server, dir, A);
  const [job] = (await server.admin('GET', `/api/jobs?device=${A}`)).body.jobs;
  assert.deepEqual([job.state, job.first_boot], ['ok', null]);
  await server.device('POST', '/api/register-device', { mac: A, storage_bytes: 64 * 1024 * 1024 });
  assert.match(JSON.stringify((await server.admin('GET', `/api/rules/test?mac=${A}`)).body), /it provisioned this device ok/);
});
