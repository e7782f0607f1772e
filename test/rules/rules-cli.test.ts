import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { addImage, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

test('cm4prov rules add/list/move/disable/enable/rm/test and cm4prov line pause/resume/status', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });

  const added = await runCli(['rules', 'add', 'line-a', '--action', 'deploy', '--mac', 'DC-A6-32', '--model', 'Compute Module 4', '--limit', '20', '--retries', '2'], env);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /^rule \d+ 'line-a' added at position 1: mac dc:a6:32, model ~ Compute Module 4 → deploy the default image\n$/);
  assert.equal((await runCli(['rules', 'add', 'big', '--action', 'backup-deploy', '--image', 'raspios', '--emmc-min', '16G'], env)).code, 0);

  const list = await runCli(['rules', 'list'], env);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^Line running: rules act\.\n#  ID/);
  assert.match(list.stdout, /\n1 +\d+ +line-a +yes +mac dc:a6:32, model ~ Compute Module 4 +deploy the default image +on, 10 min, hook cmdline +20 +2 +0\n/);
  assert.match(list.stdout, /\n2 +\d+ +big +yes +eMMC >= 14\.9 GiB +back up, then deploy 'raspios' +on, 10 min, hook cmdline +none +0 +0\n$/);

  const moved = await runCli(['rules', 'move', 'big', '1'], env);
  assert.equal(moved.stdout, '1. big\n2. line-a\n');
  assert.equal((await runCli(['rules', 'disable', 'big'], env)).stdout, "rule 'big' disabled\n");

  await server.admin('POST', '/api/line/pause');
  await registerDevice(server, 'dc:a6:32:00:00:09', { model: 'Raspberry Pi Compute Module 4 Rev 1.1', storage_bytes: 32e9 });
  const tested = await runCli(['rules', 'test', 'DC-A6-32-00-00-09'], env);
  assert.equal(tested.code, 0, tested.stderr);
  assert.equal(tested.stdout, [
    '  1. big: it is disabled',
    '→ 2. line-a: it would deploy the default image',
    "The line is paused: rule 'line-a' would act once it resumes.",
    '',
  ].join('\n'));
  assert.equal((await runCli(['line', 'status'], env)).stdout.startsWith('Line PAUSED since '), true);
  assert.equal((await runCli(['line', 'resume'], env)).stdout, 'Line running: rules act.\n');
  assert.equal((await runCli(['rules', 'enable', 'big'], env)).stdout, "rule 'big' enabled\n");
  assert.equal((await runCli(['rules', 'rm', 'big'], env)).stdout, "rule 'big' deleted\n");
  assert.deepEqual((await server.admin('GET', '/api/rules')).body.rules.map((rule: { name: string }) => rule.name), ['line-a']);

  const usage = await runCli(['rules', 'add', 'x', '--action', 'explode'], env);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, 'cm4prov: --action takes deploy, backup-deploy, backup, hold, not \'explode\'\n');
  const badSize = await runCli(['rules', 'add', 'x', '--action', 'deploy', '--emmc-min', 'lots'], env);
  assert.equal(badSize.code, 2);
  const refused = await runCli(['rules', 'add', 'line-a', '--action', 'deploy'], env);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, "cm4prov: the server refused: there is already a rule named 'line-a'\n");
  assert.equal((await runCli(['rules', 'rm', 'nope'], env)).code, 1);
});
