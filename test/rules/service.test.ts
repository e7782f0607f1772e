import assert from 'node:assert/strict';
import type { Queries } from '../../src/db/database.js';
import type { DeviceStore } from '../../src/devices/store.js';
import type { JobService } from '../../src/jobs/service.js';
import type { RuleEngine } from '../../src/rules/engine.js';
import { createLineSwitch } from '../../src/rules/line.js';
import { createRuleService } from '../../src/rules/service.js';
import { createRuleStore } from '../../src/rules/store.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The rule service's writes when requests overlap (issue 15: every store call is a turn where
// another request runs): no change is lost, a name is taken once, a rule is removed once.

function service(db: Queries) {
  const jobs = { wakeAll: () => {}, activeFor: async () => undefined } as unknown as JobService;
  return createRuleService({
    store: createRuleStore(db),
    engine: {} as RuleEngine,
    line: createLineSwitch(db),
    devices: {} as DeviceStore,
    jobs,
    clock: { now: () => 1000 },
    bus: createEventBus(),
  });
}

const status = (result: PromiseSettledResult<unknown>) =>
  result.status === 'fulfilled' ? 'ok' : String((result.reason as { statusCode?: number }).statusCode);

testOnBothDatabases('patches of one rule at once each keep their change', async (_t, { db }) => {
  const rules = service(db);
  const rule = await rules.add({ name: 'line', action: 'deploy' });
  await Promise.all([
    rules.update(rule.id, { enabled: false }),
    rules.update(rule.id, { limit: 4 }),
    rules.update(rule.id, { retries: 3 }),
    rules.update(rule.id, { model: 'Compute Module 4' }),
  ]);
  const now = await rules.get(rule.id);
  assert.deepEqual([now.enabled, now.limit, now.retries, now.match.model], [false, 4, 3, 'Compute Module 4']);
});

testOnBothDatabases('two adds of one name at once: one is stored, the other refused with 409', async (_t, { db }) => {
  const rules = service(db);
  const results = await Promise.allSettled([rules.add({ name: 'line', action: 'deploy' }), rules.add({ name: 'line', action: 'hold' })]);
  assert.deepEqual(results.map(status).sort(), ['409', 'ok']);
  assert.match(String((results.find((result) => result.status === 'rejected') as PromiseRejectedResult).reason.message), /^there is already a rule named 'line'$/);
  assert.equal((await rules.list()).length, 1);
});

testOnBothDatabases('a rule removed twice at once is removed once; the other is told 404, and moving it after is 404', async (_t, { db }) => {
  const rules = service(db);
  const rule = await rules.add({ name: 'line', action: 'deploy' });
  await rules.add({ name: 'other', action: 'hold' });
  const results = await Promise.allSettled([rules.remove(rule.id), rules.remove(rule.id)]);
  assert.deepEqual(results.map(status).sort(), ['404', 'ok']);
  await assert.rejects(rules.move(rule.id, 1), { statusCode: 404 });
  assert.deepEqual((await rules.list()).map((view) => [view.name, view.position]), [['other', 1]]);
});
