import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { postgresDatabase, type Queries } from '../../src/db/database.js';
import type { DeviceRow, DeviceStore } from '../../src/devices/store.js';
import type { ImageLibrary } from '../../src/images/library.js';
import type { JobService } from '../../src/jobs/service.js';
import type { JobRow } from '../../src/jobs/store.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { createLineSwitch } from '../../src/rules/line.js';
import { createRuleStore, type RuleFields } from '../../src/rules/store.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { testDatabaseUrl } from '../helpers/postgres.js';

// The rule engine over the real rule store on both databases, with the jobs service faked: its
// orders wait a turn (as a query does) and keep one active job per device (as its unique index
// does). Devices asking at once must not be taken on past a limit, nor ordered for twice.

const RULE: RuleFields = {
  name: 'line', enabled: 1, match_mac: null, match_serial: null, match_model: null, min_emmc_bytes: null, max_emmc_bytes: null,
  match_holds_image: null, action: 'deploy', image: null, after_success: null, full_match: 0, max_devices: null, retries: 1,
  provision_again: 0, finish: null, profile: null, confirm_boot: 0, confirm_timeout: null, first_boot_hook: null,
};

const mac = (n: number) => `dc:a6:32:00:01:${n.toString(16).padStart(2, '0')}`;
const turn = () => new Promise((resolve) => setImmediate(resolve));

type FakeJob = Pick<JobRow, 'id' | 'device_mac' | 'kind' | 'state' | 'error' | 'boot_state' | 'image_id'> & { sequence?: number };

/** The jobs table all stations share, faked: an order waits a turn, then is refused if the device has an active job. */
function fakeJobs(refuse?: string) {
  const rows: FakeJob[] = [];
  const active = (device: string) => rows.find((job) => job.device_mac === device && (job.state === 'queued' || job.state === 'running'));
  const order = async (device: string, kind: JobRow['kind'], sequence?: number) => {
    await turn();
    if (refuse) throw new Error(refuse);
    if (active(device)) throw new Error(`device ${device} already has a queued or running job; cancel it first`);
    const job: FakeJob = { id: rows.length + 1, device_mac: device, kind, state: 'queued', error: null, boot_state: null, image_id: 1, sequence };
    rows.push(job);
    return job;
  };
  const service = {
    activeFor: async (device: string) => (await turn(), active(device)),
    find: async (id: number) => (await turn(), rows.find((job) => job.id === id)),
    list: async (filter: { mac: string }) => ({ rows: rows.filter((job) => job.device_mac === filter.mac).reverse() }),
    orderDeploy: (device: string, _image: string | undefined, options: { rule?: { sequence?: number } }) => order(device, 'deploy', options.rule?.sequence),
    orderBackup: (device: string) => order(device, 'backup'),
  };
  return { rows, service: service as unknown as JobService };
}

const device = (address: string): DeviceRow => ({
  mac: address, ip: null, serial: null, model: null, storage_bytes: null, client_version: null, first_seen_at: 0, last_seen_at: 0,
  netboot_enabled: 1, boot_stage: null, boot_stage_at: null, registered_at: 0, emmc_cid: null, server_url: null, station: null,
});

async function station(db: Queries, jobs: JobService) {
  const store = createRuleStore(db);
  const line = createLineSwitch(db);
  const devices = { get: async (address: string) => (await turn(), device(address)) } as unknown as DeviceStore;
  const images = { resolveForDeploy: async () => ({ name: 'os', sha256: 'a' }), get: async () => ({ sha256: 'a' }) } as unknown as ImageLibrary;
  const engine = createRuleEngine({ store, devices, jobs, images, line, clock: { now: () => 5000 }, bus: createEventBus(), log: pino({ level: 'silent' }) });
  await line.refresh();
  return { store, line, engine };
}

testOnBothDatabases('one device asking twice at once is taken on once and ordered for once', async (_t, { db }) => {
  const jobs = fakeJobs();
  const { store, engine } = await station(db, jobs.service);
  const rule = await store.create(RULE, 0);
  await Promise.all([engine.consider(mac(1), 'register'), engine.consider(mac(1), 'poll'), engine.consider(mac(1), 'poll')]);
  assert.equal(jobs.rows.length, 1);
  assert.deepEqual(await store.stateOf(rule.id, mac(1)), {
    rule_id: rule.id, device_mac: mac(1), state: 'working', attempts: 1, last_job_id: jobs.rows[0]!.id, reason: null, updated_at: 5000, sequence: 1,
  });
  assert.equal(jobs.rows[0]!.sequence, 1, 'the order carries the number');
});

testOnBothDatabases('devices asking at once: the limit holds, and each device taken on has its own number', async (_t, { db }) => {
  const jobs = fakeJobs();
  const { store, engine } = await station(db, jobs.service);
  const rule = await store.create({ ...RULE, max_devices: 3 }, 0);
  await Promise.all(Array.from({ length: 8 }, (_, n) => engine.consider(mac(n), 'poll')));
  assert.equal(jobs.rows.length, 3);
  assert.deepEqual(jobs.rows.map((job) => job.sequence).sort(), [1, 2, 3]);
  assert.equal(await store.devicesTaken(rule.id), 3);
  const [verdict] = await engine.verdictsFor(device(mac(9)), 'poll');
  assert.equal(verdict!.reason, 'its limit is reached (3 of 3 devices)');
});

testOnBothDatabases('a failed job retried by two requests at once: one retry is ordered, and the loser does not hold the device', async (_t, { db }) => {
  const jobs = fakeJobs();
  const { store, engine } = await station(db, jobs.service);
  const rule = await store.create(RULE, 0);
  await engine.consider(mac(1), 'poll');
  jobs.rows[0]!.state = 'failed';
  jobs.rows[0]!.error = 'eMMC write error';
  await Promise.all([engine.consider(mac(1), 'poll'), engine.consider(mac(1), 'poll'), engine.firstBootSettled({ ...jobs.rows[0]!, state: 'failed' } as JobRow)]);
  assert.deepEqual(jobs.rows.map((job) => job.state), ['failed', 'queued']);
  const state = (await store.stateOf(rule.id, mac(1)))!;
  assert.deepEqual([state.state, state.attempts, state.last_job_id, state.sequence], ['working', 2, 2, 1], 'the retry keeps the number');

  // The retry fails too: retries: 1 is used up, the device is held once, with the reason.
  jobs.rows[1]!.state = 'failed';
  jobs.rows[1]!.error = 'eMMC write error';
  await Promise.all([engine.consider(mac(1), 'poll'), engine.consider(mac(1), 'poll')]);
  assert.equal(jobs.rows.length, 2);
  assert.deepEqual((await store.held()).map((row) => row.reason), ['the deploy failed 2 times; the last, job 2: eMMC write error']);
});

testOnBothDatabases('an order that cannot be placed holds the device with the reason; a hold rule holds it; a paused line orders nothing', async (_t, { db }) => {
  const refused = fakeJobs('no image is the default');
  const first = await station(db, refused.service);
  const rule = await first.store.create(RULE, 0);
  await first.engine.consider(mac(1), 'poll');
  const held = (await first.store.stateOf(rule.id, mac(1)))!;
  assert.deepEqual([held.state, held.reason, held.sequence], ['held', 'the deploy could not be ordered: no image is the default', 1]);

  const jobs = fakeJobs();
  const { store, engine, line } = await station(db, jobs.service);
  await store.update(rule.id, { ...RULE, action: 'hold' });
  await engine.consider(mac(2), 'register');
  assert.equal((await store.stateOf(rule.id, mac(2)))!.reason, "rule 'line' holds new devices for a person");
  await store.update(rule.id, RULE);
  await line.pause(1);
  await engine.consider(mac(3), 'register');
  assert.equal(await store.stateOf(rule.id, mac(3)), undefined);
  assert.equal(jobs.rows.length, 0);
});

test('several stations on one PostgreSQL: devices asking each station at once are taken on within the limit', async (t) => {
  const url = await testDatabaseUrl(t);
  const handles = await Promise.all([1, 2, 3].map(() => postgresDatabase(url)));
  t.after(() => Promise.all(handles.map((handle) => handle.close())));
  const jobs = fakeJobs();
  const stations = await Promise.all(handles.map((handle) => station(handle.db, jobs.service)));
  const rule = await stations[0]!.store.create({ ...RULE, max_devices: 4 }, 0);
  await Promise.all(Array.from({ length: 15 }, (_, n) => stations[n % 3]!.engine.consider(mac(n), 'poll')));
  assert.equal(jobs.rows.length, 4);
  assert.deepEqual(jobs.rows.map((job) => job.sequence).sort(), [1, 2, 3, 4]);
  assert.equal(await stations[1]!.store.devicesTaken(rule.id), 4);
});
