import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { postgresDatabase, type StationDatabase } from '../../src/db/database.js';
import { isUniqueViolation } from '../../src/db/errors.js';
import { createLineSwitch } from '../../src/rules/line.js';
import { createRuleStore, type RuleFields } from '../../src/rules/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { testDatabaseUrl } from '../helpers/postgres.js';

// The rule store and the line switch on both databases (issue 15), and what must hold when
// several stations share one PostgreSQL: a rule's limit, its device numbers, its order, the switch.

const FIELDS: RuleFields = {
  name: 'line', enabled: 1, match_mac: null, match_serial: null, match_model: null, min_emmc_bytes: null, max_emmc_bytes: null,
  match_holds_image: null, action: 'deploy', image: null, after_success: null, full_match: 0, max_devices: null, retries: 2,
  provision_again: 0, finish: null, profile: null, confirm_boot: 0, confirm_timeout: null, first_boot_hook: null,
};

const rule = (name: string, extra: Partial<RuleFields> = {}): RuleFields => ({ ...FIELDS, name, ...extra });
const mac = (n: number) => `dc:a6:32:00:00:${n.toString(16).padStart(2, '0')}`;
const working = (ruleId: number, device: string, extra: { attempts?: number; last_job_id?: number | null; sequence?: number | null; updated_at?: number } = {}) => ({
  rule_id: ruleId, device_mac: device, state: 'working' as const, attempts: 1, last_job_id: null, reason: null, updated_at: 10, ...extra,
});

/** `count` stations on the test's PostgreSQL database: the one it opened and more handles (pools) on the same database. */
async function stations(t: TestContext, count: number): Promise<StationDatabase[]> {
  const url = await testDatabaseUrl(t);
  const handles: StationDatabase[] = [];
  t.after(() => Promise.all(handles.map((handle) => handle.close())));
  for (let i = 0; i < count; i++) handles.push(await postgresDatabase(url));
  return handles;
}

testOnBothDatabases('rules are created last, found by id and name, listed in order; a taken name and a bad action are refused', async (_t, { db }) => {
  const store = createRuleStore(db);
  const first = await store.create(rule('first', { match_serial: '["1000*"]', max_devices: 3, first_boot_hook: 'cmdline-boot' }), 1000);
  const second = await store.create(rule('second', { action: 'hold' }), 2000);
  assert.deepEqual([first.position, second.position], [1, 2]);
  assert.equal(first.created_at, 1000);
  assert.equal(first.devices_numbered, 0);
  assert.equal(first.match_serial, '["1000*"]');
  assert.equal(first.first_boot_hook, 'cmdline-boot');
  assert.equal(first.max_devices, 3, 'numbers come back as numbers on both');
  assert.deepEqual(await store.get(second.id), second);
  assert.deepEqual(await store.byName('first'), first);
  assert.equal(await store.get(999), undefined);
  assert.equal(await store.byName('none'), undefined);
  assert.deepEqual((await store.list()).map((row) => row.name), ['first', 'second']);

  await assert.rejects(store.create(rule('first'), 3000), (error) => isUniqueViolation(error), 'the name is unique');
  await assert.rejects(store.create(rule('bad', { action: 'explode' as never }), 3000), /CHECK|check constraint/);
  assert.equal((await store.list()).length, 2, 'nothing refused was stored');
});

testOnBothDatabases("an update writes a person's columns; with the row it was made from, only if no one changed the rule since", async (_t, { db }) => {
  const store = createRuleStore(db);
  const base = await store.create(rule('line'), 1000);
  const updated = await store.update(base.id, { ...base, enabled: 0, max_devices: 4 });
  assert.equal(updated!.enabled, 0);
  assert.equal(updated!.max_devices, 4);
  assert.equal(updated!.position, base.position, 'not a column a person sets');

  assert.equal(await store.update(base.id, { ...base, retries: 7 }, base), undefined, 'the rule changed since `base` was read: nothing written');
  assert.equal((await store.get(base.id))!.retries, base.retries);
  const again = await store.update(base.id, { ...updated!, retries: 7 }, updated!);
  assert.equal(again!.retries, 7, 'made from the current row: written');
  assert.equal(again!.enabled, 0, 'the earlier change kept');
  assert.equal(await store.update(999, FIELDS), undefined, 'no such rule');

  await store.create(rule('other'), 2000);
  await assert.rejects(store.update(base.id, { ...again!, name: 'other' }), (error) => isUniqueViolation(error));
});

testOnBothDatabases('remove deletes the rule and what it remembers, then renumbers; move puts a rule anywhere, clamped', async (_t, { db }) => {
  const store = createRuleStore(db);
  const ids: number[] = [];
  for (const name of ['a', 'b', 'c', 'd']) ids.push((await store.create(rule(name), 1000)).id);
  const order = async () => (await store.list()).map((row) => `${row.position}${row.name}`).join(' ');

  assert.equal(await store.move(ids[3]!, 1), true);
  assert.equal(await order(), '1d 2a 3b 4c');
  assert.equal(await store.move(ids[3]!, 99), true);
  assert.equal(await order(), '1a 2b 3c 4d', 'past the end: last');
  assert.equal(await store.move(ids[1]!, 0), true);
  assert.equal(await order(), '1b 2a 3c 4d', 'before the start: first');
  assert.equal(await store.move(999, 1), false, 'no such rule');
  assert.equal(await order(), '1b 2a 3c 4d');

  await store.saveState(working(ids[0]!, mac(1)));
  assert.equal(await store.remove(ids[0]!), true);
  assert.equal(await order(), '1b 2c 3d');
  assert.equal(await store.stateOf(ids[0]!, mac(1)), undefined, "the rule's memory of devices went with it");
  assert.equal(await store.remove(ids[0]!), false, 'gone already');
  assert.equal((await store.create(rule('e'), 2000)).position, 4);
});

testOnBothDatabases('device states: saved and read back, by device latest first, held ones with their rule, counted, released', async (_t, { db }) => {
  const store = createRuleStore(db);
  const one = await store.create(rule('one'), 0);
  const two = await store.create(rule('two'), 0);
  await store.saveState(working(one.id, mac(1), { sequence: 1, last_job_id: 5 }));
  await store.saveState({ rule_id: two.id, device_mac: mac(1), state: 'held', attempts: 0, last_job_id: null, reason: 'held by two', updated_at: 20 });
  await store.saveState({ rule_id: one.id, device_mac: mac(2), state: 'held', attempts: 3, last_job_id: 6, reason: 'failed', updated_at: 30 });

  assert.deepEqual(await store.stateOf(one.id, mac(1)), { rule_id: one.id, device_mac: mac(1), state: 'working', attempts: 1, last_job_id: 5, reason: null, updated_at: 10, sequence: 1 });
  assert.equal(await store.stateOf(two.id, mac(2)), undefined);
  assert.deepEqual((await store.statesOf(mac(1))).map((row) => row.rule_id), [two.id, one.id], 'latest first');
  assert.deepEqual((await store.held()).map((row) => [row.device_mac, row.rule_name, row.reason]), [[mac(2), 'one', 'failed'], [mac(1), 'two', 'held by two']]);
  assert.deepEqual((await store.held(mac(1))).map((row) => row.rule_name), ['two'], "one device's holds");
  assert.deepEqual(await store.held(mac(9)), []);
  assert.equal(await store.devicesTaken(one.id), 2);
  assert.equal(await store.devicesTaken(two.id), 1);

  // A save without a number keeps the one given; a save with another number keeps the first too.
  await store.saveState({ ...working(one.id, mac(1), { attempts: 2, last_job_id: 7 }), updated_at: 40 });
  await store.saveState(working(one.id, mac(1), { attempts: 2, last_job_id: 7, sequence: 9 }));
  assert.equal((await store.stateOf(one.id, mac(1)))!.sequence, 1);
  assert.equal((await store.stateOf(one.id, mac(1)))!.last_job_id, 7);

  assert.equal(await store.release(one.id, mac(2)), true);
  assert.equal(await store.release(one.id, mac(2)), false, 'nothing left to release');
  assert.equal(await store.devicesTaken(one.id), 1);
  await assert.rejects(store.saveState(working(999, mac(3))), 'a state needs its rule (foreign key)');
});

testOnBothDatabases('a conditional save writes only over the state it expects: a changed or released row is left alone', async (_t, { db }) => {
  const store = createRuleStore(db);
  const line = await store.create(rule('line'), 0);
  await store.saveState(working(line.id, mac(1), { last_job_id: 5, sequence: 3 }));
  const read = (await store.stateOf(line.id, mac(1)))!;
  const held = { rule_id: line.id, device_mac: mac(1), state: 'held' as const, attempts: 1, last_job_id: null, reason: 'lost', updated_at: 50, sequence: 8 };

  assert.equal(await store.saveState(held, { ...read, last_job_id: 4 }), false, 'another job since');
  assert.equal(await store.saveState(held, { ...read, attempts: 2 }), false, 'another attempt since');
  assert.equal(await store.saveState(held, { ...read, state: 'held' }), false, 'another state since');
  assert.equal((await store.stateOf(line.id, mac(1)))!.state, 'working');
  assert.equal(await store.saveState(held, read), true);
  assert.deepEqual(await store.stateOf(line.id, mac(1)), { ...held, sequence: 3 }, 'written, its number kept');
  assert.equal(await store.saveState({ ...held, reason: 'again' }, { state: 'held', attempts: 1, last_job_id: null }), true, 'a null job is expected as null');

  await store.release(line.id, mac(1));
  assert.equal(await store.saveState(held, { state: 'held', attempts: 1, last_job_id: null }), false, 'a released device is not taken on again by a late save');
  assert.equal(await store.stateOf(line.id, mac(1)), undefined);
});

testOnBothDatabases('a device keeps its rule number across retries; a released device taken on again gets the next, never a used one', async (_t, { db }) => {
  const store = createRuleStore(db);
  const line = await store.create(rule('line'), 0);
  const take = async (device: string) => {
    await store.claim(line.id, device, 'ordering', 0);
    return store.numberFor(line.id, device);
  };
  assert.equal(await take('a'), 1);
  assert.equal(await take('b'), 2);
  assert.equal(await store.numberFor(line.id, 'a'), 1, 'a retry of the first device renders 1 again');
  assert.equal((await store.stateOf(line.id, 'a'))!.sequence, 1, 'kept on its row');
  assert.equal(await store.numberFor(line.id, 'c'), 3, 'a device the rule has no row for yet: the next number, saved by the caller');
  assert.equal(await store.stateOf(line.id, 'c'), undefined);
  assert.ok(await store.release(line.id, 'a'));
  assert.equal(await take('a'), 4, 'taken on again after release: the next number');
  assert.equal((await store.get(line.id))!.devices_numbered, 4);
  await assert.rejects(store.numberFor(999, 'a'), 'no such rule');
});

testOnBothDatabases('a claim takes a device on held while its limit has room, once; a released device frees its place', async (_t, { db }) => {
  const store = createRuleStore(db);
  const line = await store.create(rule('line', { max_devices: 2 }), 0);
  const open = await store.create(rule('open'), 0);
  const first = await store.claim(line.id, mac(1), 'ordering', 70);
  assert.deepEqual(first, { rule_id: line.id, device_mac: mac(1), state: 'held', attempts: 0, last_job_id: null, reason: 'ordering', updated_at: 70, sequence: null });
  assert.equal(await store.claim(line.id, mac(1), 'again', 71), undefined, 'taken on already');
  assert.equal((await store.stateOf(line.id, mac(1)))!.reason, 'ordering', 'the first claim stands');
  assert.ok(await store.claim(line.id, mac(2), 'ordering', 72));
  assert.equal(await store.claim(line.id, mac(3), 'ordering', 73), undefined, 'the limit of 2 is full');
  assert.equal(await store.stateOf(line.id, mac(3)), undefined);
  assert.ok(await store.release(line.id, mac(1)));
  assert.ok(await store.claim(line.id, mac(3), 'ordering', 74), 'a released place is free again');
  assert.equal(await store.claim(999, mac(4), 'ordering', 75), undefined, 'no such rule');
  for (let n = 1; n <= 5; n++) assert.ok(await store.claim(open.id, mac(n), 'ordering', 80), 'no limit');
  assert.equal((await store.get(line.id))!.devices_numbered, 0, 'a claim gives no number');
});

testOnBothDatabases('claims made at once on one handle: the limit holds, and one device is taken on once', async (_t, { db }) => {
  const store = createRuleStore(db);
  const line = await store.create(rule('line', { max_devices: 3 }), 0);
  const claims = await Promise.all([1, 2, 3, 4, 5, 6, 1, 2].map((n) => store.claim(line.id, mac(n), 'ordering', n)));
  assert.equal(claims.filter(Boolean).length, 3);
  assert.equal(await store.devicesTaken(line.id), 3);
});

test('several stations on one PostgreSQL: claims keep the limit, numbers are never given twice, a device keeps one number', async (t) => {
  const handles = await stations(t, 4);
  const stores = handles.map((handle) => createRuleStore(handle.db));
  const line = await stores[0]!.create(rule('line', { max_devices: 5 }), 0);
  const open = await stores[0]!.create(rule('open'), 0);
  for (let round = 0; round < 3; round++) {
    // 16 devices at once, each on its station, for 5 places (the places of the last round stay taken).
    const claims = await Promise.all(Array.from({ length: 16 }, (_, n) => stores[n % 4]!.claim(line.id, mac(round * 16 + n), 'ordering', n)));
    assert.equal(claims.filter(Boolean).length, round === 0 ? 5 : 0, `round ${round}`);
    assert.equal(await stores[0]!.devicesTaken(line.id), 5);
  }
  // The same device on every station at once: one claim wins.
  const same = await Promise.all(stores.map((store) => store.claim(open.id, mac(200), 'ordering', 0)));
  assert.equal(same.filter(Boolean).length, 1);

  // 40 devices numbered at once: 1..40, each once. The one device asked on every station at once keeps one number.
  for (let n = 0; n < 40; n++) await stores[0]!.claim(open.id, mac(n), 'ordering', 0);
  const numbers = await Promise.all(Array.from({ length: 40 }, (_, n) => stores[n % 4]!.numberFor(open.id, mac(n))));
  assert.deepEqual([...numbers].sort((x, y) => x - y), Array.from({ length: 40 }, (_, n) => n + 1));
  const own = await Promise.all(stores.map((store) => store.numberFor(open.id, mac(200))));
  const kept = (await stores[0]!.stateOf(open.id, mac(200)))!.sequence;
  assert.ok(kept !== null && kept > 40);
  assert.deepEqual(own, [kept, kept, kept, kept], 'every station is told the number the row kept');
});

test('several stations on one PostgreSQL: rules added, moved and removed at once keep positions 1..n', async (t) => {
  const handles = await stations(t, 4);
  const stores = handles.map((handle) => createRuleStore(handle.db));
  // From an empty table: the first ones added at once must not share place 1 either.
  const created = await Promise.all(Array.from({ length: 13 }, (_, n) => stores[n % 4]!.create(rule(`r${n}`), 0)));
  const positions = async () => (await stores[0]!.list()).map((row) => row.position);
  assert.deepEqual(await positions(), Array.from({ length: 13 }, (_, n) => n + 1), 'added at once: each its own place');
  assert.equal(new Set((await stores[0]!.list()).map((row) => row.name)).size, 13);

  await Promise.all([
    ...created.slice(0, 8).map((row, n) => stores[n % 4]!.move(row.id, 13 - n)),
    ...created.slice(8).map((row, n) => stores[n % 4]!.remove(row.id)),
  ]);
  assert.deepEqual(await positions(), Array.from({ length: 8 }, (_, n) => n + 1), 'moved and removed at once: no gap, no twice');
});

testOnBothDatabases('the line switch: running until paused, kept in the database, paused once, resumed once', async (_t, { db }) => {
  const line = createLineSwitch(db);
  assert.equal(line.paused(), true, 'not read yet: paused, so a restart cannot resume a stopped line');
  await line.refresh();
  assert.equal(line.paused(), false);
  assert.deepEqual(line.state(), { paused: false, paused_at: null });
  assert.equal(await line.pause(1_700_000_000_000), true);
  assert.deepEqual(line.state(), { paused: true, paused_at: '2023-11-14T22:13:20.000Z' });
  assert.equal(await line.pause(1_700_000_999_000), false, 'paused already: the first time is kept');
  assert.equal(line.state().paused_at, '2023-11-14T22:13:20.000Z');

  const restarted = createLineSwitch(db);
  await restarted.refresh();
  assert.equal(restarted.paused(), true, 'a restart does not resume the line');
  assert.equal(await restarted.resume(), true);
  assert.equal(restarted.paused(), false);
  assert.equal(await restarted.resume(), false, 'running already');

  assert.equal(line.paused(), true, 'another station answers from memory until told');
  await line.refresh();
  assert.equal(line.paused(), false);
});

test('several stations on one PostgreSQL pause at once: one pauses it, all agree on when', async (t) => {
  const handles = await stations(t, 4);
  const lines = handles.map((handle) => createLineSwitch(handle.db));
  await Promise.all(lines.map((line) => line.refresh()));
  const paused = await Promise.all(lines.map((line, n) => line.pause(1_700_000_000_000 + n)));
  assert.equal(paused.filter(Boolean).length, 1);
  const when = lines[paused.indexOf(true)]!.state().paused_at;
  assert.deepEqual(lines.map((line) => line.state()), lines.map(() => ({ paused: true, paused_at: when })));
  const resumed = await Promise.all(lines.map((line) => line.resume()));
  assert.equal(resumed.filter(Boolean).length, 1);
  assert.ok(lines.every((line) => !line.paused()));
});
