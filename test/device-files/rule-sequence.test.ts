import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { migrate } from '../../src/db/open.js';
import { createRuleStore } from '../../src/rules/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { startTestServer } from '../helpers/server.js';
import { fatFile, importImage, makePartitionedImage, scratch } from './helpers.js';

const MIGRATIONS = resolve(import.meta.dirname, '../../src/db/migrations');

test('{{rule_sequence}}: a rule numbers the devices it takes on 1, 2 in the files of two real clients; a manual order naming such a profile is refused', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await importImage(server, makePartitionedImage(dir), 'os');
  const saved = await server.admin('POST', '/api/profiles', {
    name: 'line',
    files: [{ partition: 1, fs: 'vfat', path: '/unit.txt', template: 'unit {{rule_sequence}} mac {{mac}}\n' }],
  });
  assert.equal(saved.status, 201, JSON.stringify(saved.body));

  // Before any rule exists: a person's order has no rule number to render.
  await server.device('POST', '/api/register-device', { mac: 'dc:a6:32:00:00:09', storage_bytes: 64 * 1024 * 1024 });
  const manual = await server.admin('POST', '/api/devices/dc:a6:32:00:00:09/deploy', { image: 'os', profile: 'line' });
  assert.equal(manual.status, 400);
  assert.equal(
    manual.body.message,
    "file /unit.txt (partition 1) of profile 'line' needs {{rule_sequence}} for dc:a6:32:00:00:09, but a person placed this order, and {{rule_sequence}} exists only for orders placed by a rule; nothing was queued",
  );

  const rule = await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', image: 'os', profile: 'line', mac: 'dc:a6:32:00:01' });
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  const macs = ['dc:a6:32:00:01:01', 'dc:a6:32:00:01:02'];
  const emmcs: string[] = [];
  for (const mac of macs) {
    const emmc = join(dir, `${mac.replaceAll(':', '')}.img`);
    await makeFakeEmmc(emmc, 64 * 1024 * 1024);
    const client = runClient(t, { server: server.url, target: emmc, mac, env: { WITH_FILE_TOOLS: '1' } });
    assert.equal(await client.exited, 0, client.output());
    emmcs.push(emmc);
  }
  assert.equal(fatFile(emmcs[0]!, '/unit.txt'), `unit 1 mac ${macs[0]}\n`);
  assert.equal(fatFile(emmcs[1]!, '/unit.txt'), `unit 2 mac ${macs[1]}\n`);
  const jobs = (await server.admin('GET', '/api/jobs')).body.jobs as Array<{ state: string; ordered_by: { kind: string } }>;
  assert.deepEqual(jobs.map((job) => [job.state, job.ordered_by.kind]), [['ok', 'rule'], ['ok', 'rule']]);
});

testOnBothDatabases('a device keeps its rule number across retries; a released device taken on again gets the next number, never a used one', async (_t, database) => {
  const store = createRuleStore(database.db);
  const fields = {
    name: 'line', enabled: 1, match_mac: null, match_serial: null, match_model: null, min_emmc_bytes: null, max_emmc_bytes: null,
    match_holds_image: null, action: 'deploy' as const, image: null, after_success: null, full_match: 0, max_devices: null, retries: 2,
    provision_again: 0, finish: null, profile: null, confirm_boot: 0, confirm_timeout: null, first_boot_hook: null,
  };
  const rule = await store.create(fields, 0);
  const save = (mac: string, sequence: number) => store.saveState({ rule_id: rule.id, device_mac: mac, state: 'working', attempts: 1, last_job_id: null, reason: null, updated_at: 0, sequence });

  await save('a', await store.numberFor(rule.id, 'a'));
  await save('b', await store.numberFor(rule.id, 'b'));
  assert.equal(await store.numberFor(rule.id, 'a'), 1, 'a retry of the first device renders 1 again');
  await store.saveState({ rule_id: rule.id, device_mac: 'a', state: 'held', attempts: 3, last_job_id: null, reason: 'x', updated_at: 1 });
  assert.equal((await store.stateOf(rule.id, 'a'))!.sequence, 1, 'a save without a number keeps the one given');
  assert.ok(await store.release(rule.id, 'a'));
  assert.equal(await store.numberFor(rule.id, 'a'), 3, 'taken on again after release: the next number');
  assert.equal(await store.devicesTaken(rule.id), 1, 'the limit still counts the devices the rule remembers');
});

test('migration 0016 numbers the devices rules took on before it, in the order they were stored', (t) => {
  const older = join(scratch(t), 'migrations');
  mkdirSync(older);
  for (const file of readdirSync(MIGRATIONS).filter((name) => name < '0016')) copyFileSync(join(MIGRATIONS, file), join(older, file));
  const db = new Database(':memory:');
  t.after(() => db.close());
  migrate(db, older);
  for (const name of ['one', 'two']) db.prepare("INSERT INTO rules (name, position, action, created_at) VALUES (?, 1, 'deploy', 0)").run(name);
  const device = db.prepare("INSERT INTO rule_devices (rule_id, device_mac, state, updated_at) VALUES (?, ?, 'provisioned', 0)");
  device.run(1, 'x');
  device.run(2, 'y');
  device.run(1, 'z');
  migrate(db);
  assert.deepEqual(db.prepare('SELECT rule_id, device_mac, sequence FROM rule_devices ORDER BY rowid').all(), [
    { rule_id: 1, device_mac: 'x', sequence: 1 },
    { rule_id: 2, device_mac: 'y', sequence: 1 },
    { rule_id: 1, device_mac: 'z', sequence: 2 },
  ]);
  assert.deepEqual(db.prepare('SELECT id, devices_numbered FROM rules ORDER BY id').all(), [{ id: 1, devices_numbered: 2 }, { id: 2, devices_numbered: 1 }]);
});
