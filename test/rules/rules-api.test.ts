import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { sha256OfFile, writeImageFile } from '../helpers/files.js';
import { addImage, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const A = 'dc:a6:32:00:00:01';
const B = 'dc:a6:32:00:00:02';

async function jobsOf(server: TestServer, mac: string) {
  return (await server.admin('GET', `/api/jobs?device=${mac}`)).body.jobs as Array<{ id: number; state: string; kind: string; after_success: string; ordered_by: { kind: string; name?: string } }>;
}

test('rules are added, checked, ordered, switched and removed through the admin API', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  const first = await server.admin('POST', '/api/rules', { name: 'serials', serial: ['1000*', '2000000?'], action: 'deploy', image: 'raspios', full_match: true, after: 'netboot' });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.deepEqual(first.body.match.serial, ['1000*', '2000000?']);
  assert.equal(first.body.does, "deploy 'raspios'");
  const second = (await server.admin('POST', '/api/rules', { name: 'big-emmc', emmc_min_bytes: 32 * 1024 * 1024, action: 'hold' })).body;

  const refusals: Array<[unknown, number, RegExp]> = [
    [{ name: 'serials', action: 'deploy' }, 409, /^there is already a rule named 'serials'$/],
    [{ name: 'x', mac: 'zz:00', action: 'deploy' }, 400, /^invalid MAC pattern 'zz:00'/],
    [{ name: 'x', action: 'hold', image: 'raspios' }, 400, /^a rule that does 'hold' deploys no image; leave image out$/],
    [{ name: 'x', action: 'deploy', emmc_min_bytes: 10, emmc_max_bytes: 5 }, 400, /no device could match/],
    [{ name: 'x', action: 'explode' }, 400, /action/],
  ];
  for (const [body, status, message] of refusals) {
    const reply = await server.admin('POST', '/api/rules', body);
    assert.equal(reply.status, status, JSON.stringify(reply.body));
    assert.match(reply.body.message, message);
  }
  assert.equal((await server.admin('GET', '/api/rules')).body.rules.length, 2, 'nothing refused was stored');

  await registerDevice(server, A, { serial: '10000000abcdef01', storage_bytes: 64 * 1024 * 1024 });
  // The serial rule comes first and acts at registration; the later one is not asked.
  const verdicts = (await server.admin('GET', `/api/rules/test?mac=${A}`)).body;
  assert.equal(verdicts.active_job !== null, true, 'the rule ordered at registration');
  const [job] = await jobsOf(server, A);
  assert.equal(job!.after_success, 'netboot', "the rule's options travel with its order");
  assert.deepEqual(job!.ordered_by, { kind: 'rule', id: first.body.id, name: 'serials' });

  // Move the hold rule first: a new device with a big eMMC is held, nothing ordered.
  const moved = (await server.admin('POST', `/api/rules/${second.id}/move`, { position: 1 })).body.rules;
  assert.deepEqual(moved.map((rule: { name: string }) => rule.name), ['big-emmc', 'serials']);
  await registerDevice(server, B, { serial: '10000000abcdef02', storage_bytes: 64 * 1024 * 1024 });
  assert.deepEqual(await jobsOf(server, B), []);
  const held = (await server.admin('GET', '/api/rules')).body.held;
  assert.deepEqual(held.map((entry: { mac: string; reason: string }) => [entry.mac, entry.reason]), [[B, "rule 'big-emmc' holds new devices for a person"]]);
  const test = (await server.admin('GET', `/api/rules/test?mac=${B}`)).body;
  assert.equal(test.acting, null);
  assert.match(test.rules[0].reason, /^it holds this device: /);
  assert.match(test.rules[1].reason, /^rule 'big-emmc' comes first and decides for this device$/);

  // Disabled, the hold rule is passed over: a person releases B and the serial rule acts.
  assert.equal((await server.admin('POST', `/api/rules/${second.id}/disable`)).body.enabled, false);
  await server.admin('POST', `/api/rules/${second.id}/release`, { mac: B });
  await poll(server, B);
  assert.equal((await jobsOf(server, B))[0]!.ordered_by.name, 'serials');

  // Deleting a rule keeps its name in history.
  assert.equal((await server.admin('DELETE', `/api/rules/${first.body.id}`)).status, 200);
  assert.equal((await jobsOf(server, A))[0]!.ordered_by.name, 'serials');
  assert.equal((await server.admin('GET', `/api/rules/${first.body.id}`)).status, 404);
  assert.equal((await server.admin('GET', '/api/rules/test?mac=dc:a6:32:99:99:99')).status, 404);
});

test('while the line is paused a queued rule job stays queued and visible; a manual order always wins', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  await registerDevice(server, A);
  // A person's order comes before any rule exists: the rule does not act while it is active.
  const manual = (await server.admin('POST', `/api/devices/${A}/backup`)).body;
  await server.admin('POST', '/api/rules', { name: 'all', action: 'deploy', confirm_boot: false });
  assert.equal((await poll(server, A)).action, 'backup', 'the manual order is handed out');
  assert.deepEqual((await jobsOf(server, A)).map((job) => job.ordered_by.kind), ['operator']);
  await server.admin('POST', `/api/jobs/${manual.id}/cancel`);

  await registerDevice(server, B);
  const queued = (await jobsOf(server, B))[0]!;
  assert.equal(queued.state, 'queued');
  await server.admin('POST', '/api/line/pause');
  assert.equal((await poll(server, B)).action, 'none', 'paused: not handed out');
  assert.equal((await server.admin('GET', `/api/jobs/${queued.id}`)).body.state, 'queued', 'still queued, visible');
  await server.admin('POST', '/api/line/resume');
  assert.equal((await poll(server, B)).action, 'deploy');
});

test('back up, then deploy: the real client sends its eMMC, then takes the image, and a device already holding the image is passed over', { timeout: 120_000 }, async (t) => {
  const server = await startTestServer(t);
  const image = await addImage(t, server, 'raspios', 1024 * 1024 + 3, { makeDefault: true });
  await server.admin('POST', '/api/rules', { name: 'fresh-only', holds_image: false, action: 'backup_deploy', after: 'emmc', confirm_boot: false });
  const emmc = join(tempDir(t), 'emmc.img');
  const before = writeImageFile(emmc, 8 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: A, env: { AFTER_JOB: 'poll' } });
  await waitFor('a backup and a deploy to end', async () => (await jobsOf(server, A)).filter((job) => job.state === 'ok').length === 2);
  const [deploy, backup] = await jobsOf(server, A);
  assert.deepEqual([backup!.kind, deploy!.kind], ['backup', 'deploy']);
  assert.equal(backup!.after_success, 'netboot', 'the device comes back for the deploy');
  assert.equal(deploy!.after_success, 'emmc');
  const stored = (await server.admin('GET', `/api/backups/${(await server.admin('GET', `/api/jobs/${backup!.id}`)).body.backup_id}`)).body;
  assert.equal(stored.sha256, before, 'the backup is the eMMC as it was');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  client.kill();

  // It now holds the image by our records: the rule does not match it any more.
  const verdict = (await server.admin('GET', `/api/rules/test?mac=${A}`)).body.rules[0];
  assert.equal(verdict.matches, false);
  assert.equal(verdict.reason, `the device already holds a verified deploy of 'raspios' (job ${deploy!.id})`);
});
