import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { addImage } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 16 * 1024 * 1024;

async function emmcFor(t: TestContext, name: string) {
  const path = join(tempDir(t), `${name}.img`);
  await makeFakeEmmc(path, EMMC_BYTES);
  return path;
}

async function jobsOf(server: TestServer, mac: string) {
  return (await server.admin('GET', `/api/jobs?device=${mac}`)).body.jobs as Array<{ id: number; state: string; kind: string; error: string | null; ordered_by: unknown }>;
}

async function verdicts(server: TestServer, mac: string) {
  const reply = await server.admin('GET', `/api/rules/test?mac=${mac}`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body as { acting: string | null; rules: Array<{ rule: { name: string }; matches: boolean; acts: boolean; reason: string }> };
}

const line = (n: number) => `dc:a6:32:00:00:0${n}`;

test('a rule provisions three devices that only register; the limit holds the fourth, one that matches no rule waits, and none is provisioned again', { timeout: 120_000 }, async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 2 * 1024 * 1024 + 5, { makeDefault: true });
  const added = await server.admin('POST', '/api/rules', { name: 'cm4-line', mac: 'DC-A6-32-00-00', model: 'Compute Module 4', action: 'deploy', limit: 3, confirm_boot: false });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const model = { DEVICE_MODEL: 'Raspberry Pi Compute Module 4 Rev 1.1' };

  const emmcs = await Promise.all([1, 2, 3].map((n) => emmcFor(t, `emmc${n}`)));
  const clients = emmcs.map((emmc, i) => runClient(t, { server: server.url, target: emmc, mac: line(i + 1), env: model }));
  for (const [i, client] of clients.entries()) {
    assert.equal(await client.exited, 0, client.output());
    assert.equal(await sha256OfFile(emmcs[i]!, image.bytes), image.sha256, `device ${i + 1}'s eMMC holds the image`);
    const [job] = await jobsOf(server, line(i + 1));
    assert.equal(job!.state, 'ok', job!.error ?? '');
    assert.deepEqual(job!.ordered_by, { kind: 'rule', id: added.body.id, name: 'cm4-line' }, 'history names the rule');
  }
  assert.equal((await server.admin('GET', `/api/rules/${added.body.id}`)).body.devices, 3);

  // A fourth on the same line: the limit of 3 holds. A device of another vendor prefix matches no rule.
  const fourth = runClient(t, { server: server.url, target: await emmcFor(t, 'emmc4'), mac: line(4), env: model });
  const stranger = runClient(t, { server: server.url, target: await emmcFor(t, 'emmc5'), mac: 'e4:5f:01:00:00:05', env: model });
  await fourth.waitForOutput(/waiting for the operator/);
  await stranger.waitForOutput(/waiting for the operator/);
  assert.deepEqual(await jobsOf(server, line(4)), [], 'the limit holds: no job for the fourth');
  assert.deepEqual(await jobsOf(server, 'e4:5f:01:00:00:05'), [], 'no rule, no job');
  const limited = await verdicts(server, line(4));
  assert.equal(limited.acting, null);
  assert.match(limited.rules[0]!.reason, /^its limit is reached \(3 of 3 devices\)$/);
  const unmatched = await verdicts(server, 'e4:5f:01:00:00:05');
  assert.match(unmatched.rules[0]!.reason, /^MAC e4:5f:01:00:00:05 does not match 'dc:a6:32:00:00'$/);

  // Device 1 netboots again (a new client run on the same eMMC): the rule does not provision it again.
  const again = runClient(t, { server: server.url, target: emmcs[0]!, mac: line(1), env: model });
  await again.waitForOutput(/waiting for the operator/);
  assert.equal((await jobsOf(server, line(1))).length, 1, 'still the one job');
  const done = await verdicts(server, line(1));
  assert.match(done.rules[0]!.reason, /^it provisioned this device ok \(job \d+\) and does not act again unless a person orders it$/);

  // Raising the limit lets the waiting fourth device's parked poll take work at once.
  await server.admin('PATCH', `/api/rules/${added.body.id}`, { limit: 4 });
  assert.equal(await fourth.exited, 0, fourth.output());
  assert.equal((await jobsOf(server, line(4)))[0]!.state, 'ok');
});

test('a failing device is retried by its rule up to its retry count, then held and flagged', { timeout: 120_000 }, async (t) => {
  // Every image download is refused: the device can never finish a deploy.
  const proxy = await startFaultProxy(t, ['refuse'], { repeat: true });
  const server = await startTestServer(t, { publicUrl: proxy.url });
  proxy.forwardTo(server.url);
  await addImage(t, server, 'raspios', 1024 * 1024, { makeDefault: true });
  const rule = (await server.admin('POST', '/api/rules', { name: 'retry-once', action: 'deploy', retries: 1, confirm_boot: false })).body;
  const mac = line(7);
  const client = runClient(t, {
    server: server.url, target: await emmcFor(t, 'emmc'), mac,
    env: { AFTER_JOB: 'poll', DEPLOY_MODE: 'full', TRANSFER_RETRIES: '1' },
  });

  const held = await waitFor('the device to be held', async () =>
    (await server.admin('GET', '/api/rules')).body.held.find((entry: { mac: string }) => entry.mac === mac));
  const jobs = await jobsOf(server, mac);
  assert.deepEqual(jobs.map((job) => job.state), ['failed', 'failed'], 'the first try and one retry');
  assert.ok(jobs.every((job) => (job.ordered_by as { name: string }).name === 'retry-once'));
  assert.equal(held.rule.name, 'retry-once');
  assert.match(held.reason, new RegExp(`^the deploy failed 2 times; the last, job ${jobs[0]!.id}: image download failed`));
  const verdict = await verdicts(server, mac);
  assert.match(verdict.rules[0]!.reason, /^it holds this device: the deploy failed 2 times/);
  assert.equal(client.child.exitCode, null, 'the client still waits, for a person now');
  const flagged = (await server.admin('GET', `/api/devices/${mac}`)).body.rule_hold;
  assert.equal(flagged.rule, 'retry-once', 'the device itself is flagged, for its row on the Devices page');
  assert.match(flagged.reason, /^the deploy failed 2 times/);

  // A person releases it: the rule tries again, from the start.
  assert.equal((await server.admin('POST', `/api/rules/${rule.id}/release`, { mac })).status, 200);
  await waitFor('a third job', async () => (await jobsOf(server, mac)).length === 3);
});

test('Pause line stops new rule work and holds queued rule work visibly, across a restart; Resume hands it out', { timeout: 120_000 }, async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 1024 * 1024, { makeDefault: true });
  await server.admin('POST', '/api/rules', { name: 'all', action: 'deploy', confirm_boot: false });
  assert.deepEqual((await server.admin('POST', '/api/line/pause')).body.paused, true);
  await server.restart();
  assert.equal((await server.admin('GET', '/api/line')).body.paused, true, 'a restart does not resume the line');

  const emmc = await emmcFor(t, 'emmc');
  const client = runClient(t, { server: server.url, target: emmc, mac: line(1), env: { POLL_WAIT: '300' } });
  await client.waitForOutput(/waiting for the operator/);
  assert.deepEqual(await jobsOf(server, line(1)), [], 'paused: the rule orders nothing');
  assert.match((await verdicts(server, line(1))).rules[0]!.reason, /^it would deploy the default image$/);

  await server.admin('POST', '/api/line/resume');
  assert.equal(await client.exited, 0, client.output());
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  assert.equal((await jobsOf(server, line(1)))[0]!.state, 'ok');
});
