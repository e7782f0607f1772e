import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';

test('cm4prov webhooks add/list/deliveries/rm and labels set/show/off/reprint talk to the server', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_DATA_DIR: server.dataDir };

  const added = await runCli(['webhooks', 'add', 'http://127.0.0.1:9/hook', '--events', 'job.ok,job.failed'], env);
  assert.equal(added.code, 0, added.stderr);
  const secret = /Signing secret .*: ([0-9a-f]{64})$/m.exec(added.stdout)?.[1];
  assert.ok(secret, added.stdout);
  assert.match(added.stdout, /^Added webhook 1: http:\/\/127\.0\.0\.1:9\/hook \(job\.ok, job\.failed\)\.$/m);

  const listed = await runCli(['webhooks'], env);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^1\s+http:\/\/127\.0\.0\.1:9\/hook\s+job\.ok,job\.failed\s+0\s+0/m);
  assert.ok(!listed.stdout.includes(secret), 'the listing never shows the secret');

  const deliveries = await runCli(['webhooks', 'deliveries', '1'], env);
  assert.equal(deliveries.code, 0, deliveries.stderr);
  assert.match(deliveries.stdout, /No deliveries yet\./);

  const bad = await runCli(['webhooks', 'add', 'gopher://127.0.0.1/x'], env);
  assert.equal(bad.code, 1, 'the server refuses it');
  assert.match(bad.stderr, /must start with http:\/\/ or https:\/\//);
  assert.equal((await runCli(['webhooks', 'rm', 'x'], env)).code, 2, 'not an id: usage');
  assert.equal((await runCli(['webhooks', 'rm', '1'], env)).code, 0);

  const template = join(tempDir(t), 'label.zpl');
  writeFileSync(template, '^XA^FD{{serial}}^FS^XZ');
  const spool = tempDir(t);
  const set = await runCli(['labels', 'set', '--template', template, '--spool', spool], env);
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout.trim(), `Labels are on; they go to ${spool}.`);
  const shown = await runCli(['labels', 'show'], env);
  assert.match(shown.stdout, /^Labels: on \(deploys\); output: /m);
  assert.match(shown.stdout, /\^XA\^FD\{\{serial\}\}\^FS\^XZ/);
  writeFileSync(template, '^XA^FD{{nope}}^FS^XZ');
  const refused = await runCli(['labels', 'set', '--template', template], env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /names \{\{nope\}\}, which is not a label variable/);
  assert.equal((await runCli(['labels', 'off'], env)).stdout.trim(), 'Labels are off.');
  const reprint = await runCli(['labels', 'reprint', '99'], env);
  assert.equal(reprint.code, 1);
  assert.match(reprint.stderr, /there is no job 99/);
});
