import { sql } from 'kysely';
import { inTransaction, type Queries } from '../db/database.js';
import type { FirstBootHook } from '../first-boot/hook-files.js';

export type RuleAction = 'deploy' | 'backup_deploy' | 'backup' | 'hold';
export const RULE_ACTIONS: readonly RuleAction[] = ['deploy', 'backup_deploy', 'backup', 'hold'];

export interface RuleRow {
  id: number;
  name: string;
  position: number;
  enabled: number;
  match_mac: string | null;
  /** JSON array of globs. */
  match_serial: string | null;
  match_model: string | null;
  min_emmc_bytes: number | null;
  max_emmc_bytes: number | null;
  match_holds_image: number | null;
  action: RuleAction;
  image: string | null;
  after_success: 'emmc' | 'netboot' | null;
  full_match: number;
  max_devices: number | null;
  retries: number;
  provision_again: number;
  created_at: number;
  /** What the device does after an ok job it ordered; null: reboot. */
  finish: 'reboot' | 'poweroff' | 'wait' | null;
  /** The profile of per-device files its deploys write (src/device-files/); null: none. */
  profile: string | null;
  /** The last number given to a device it took on ({{rule_sequence}}); never counts down. */
  devices_numbered: number;
  /** 1: its deploys ask for first-boot confirmation (src/first-boot/); a device is provisioned only when confirmed. */
  confirm_boot: number;
  /** Seconds the first boot is awaited; null: the default (600). */
  confirm_timeout: number | null;
  /** The hook its confirming deploys write into the image; null: cmdline (src/first-boot/hook-files.ts). */
  first_boot_hook: FirstBootHook | null;
}

/** The columns a person sets (everything but id, position, created_at and the device count). */
export type RuleFields = Omit<RuleRow, 'id' | 'position' | 'created_at' | 'devices_numbered'>;

export type RuleDeviceState = 'working' | 'provisioned' | 'held';

export interface RuleDeviceRow {
  rule_id: number;
  device_mac: string;
  state: RuleDeviceState;
  attempts: number;
  last_job_id: number | null;
  reason: string | null;
  updated_at: number;
  /** The device's number with this rule: 1 for the first device it took on ({{rule_sequence}}); null for a device only held. */
  sequence: number | null;
}

/** What a conditional save expects to find (the state the caller read and decided on). */
export type ExpectedState = Pick<RuleDeviceRow, 'state' | 'attempts' | 'last_job_id'>;

const FIELDS: ReadonlyArray<keyof RuleFields> = [
  'name', 'enabled', 'match_mac', 'match_serial', 'match_model', 'min_emmc_bytes', 'max_emmc_bytes', 'match_holds_image',
  'action', 'image', 'after_success', 'full_match', 'max_devices', 'retries', 'provision_again',
  'finish', 'profile', 'confirm_boot', 'confirm_timeout', 'first_boot_hook',
];

/** The settings row that changes of the rules' order take turns on (its value means nothing). */
const ORDER_LOCK = 'rules_order_lock';

const columns = (fields: RuleFields) => Object.fromEntries(FIELDS.map((field) => [field, fields[field]])) as RuleFields;

export function createRuleStore(db: Queries) {
  const inOrder = (q: Queries) => q.selectFrom('rules').selectAll().orderBy('position').orderBy('id').execute() as Promise<RuleRow[]>;
  const stateOf = (ruleId: number, mac: string) =>
    db.selectFrom('rule_devices').selectAll().where('rule_id', '=', ruleId).where('device_mac', '=', mac).executeTakeFirst() as Promise<RuleDeviceRow | undefined>;

  /**
   * Changes of the order (create, remove, move) take turns on one row of the settings table,
   * held until the transaction ends: on PostgreSQL the second station waits, then reads what the
   * first wrote. Locking the rules' own rows instead would deadlock two stations that reach them
   * in different orders, and there may be none. A portable `LOCK`, which SQLite (one writer at a
   * time anyway) lacks.
   */
  const lockOrder = (tx: Queries) =>
    tx.insertInto('settings').values({ key: ORDER_LOCK, value: '' }).onConflict((oc) => oc.column('key').doUpdateSet({ value: '' })).execute();
  async function renumber(tx: Queries, rules: RuleRow[]) {
    for (const [index, rule] of rules.entries()) {
      if (rule.position !== index + 1) await tx.updateTable('rules').set({ position: index + 1 }).where('id', '=', rule.id).execute();
    }
  }

  return {
    list: () => inOrder(db),
    get: (id: number) => db.selectFrom('rules').selectAll().where('id', '=', id).executeTakeFirst() as Promise<RuleRow | undefined>,
    byName: (name: string) => db.selectFrom('rules').selectAll().where('name', '=', name).executeTakeFirst() as Promise<RuleRow | undefined>,
    /** Adds the rule last. A taken name is refused by the unique index (src/db/errors.ts isUniqueViolation). */
    create: (fields: RuleFields, now: number): Promise<RuleRow> =>
      inTransaction(db, async (tx) => {
        await lockOrder(tx);
        return (await tx
          .insertInto('rules')
          .values({ ...columns(fields), position: sql<number>`(SELECT coalesce(max(position), 0) + 1 FROM rules)`, created_at: now })
          .returningAll()
          .executeTakeFirstOrThrow()) as RuleRow;
      }),
    /**
     * Writes the person's columns. With `expected` (the row the fields were made from), only if
     * no one changed the rule since: undefined then, as when the rule is gone.
     */
    async update(id: number, fields: RuleFields, expected?: RuleFields): Promise<RuleRow | undefined> {
      let query = db.updateTable('rules').set(columns(fields)).where('id', '=', id);
      for (const field of expected ? FIELDS : []) query = query.where(field, 'is not distinct from', expected![field]);
      return (await query.returningAll().executeTakeFirst()) as RuleRow | undefined;
    },
    /** Deletes the rule and what it remembers of devices; history keeps its name on the jobs. false: there was no such rule. */
    remove: (id: number): Promise<boolean> =>
      inTransaction(db, async (tx) => {
        await lockOrder(tx);
        const { numDeletedRows } = await tx.deleteFrom('rules').where('id', '=', id).executeTakeFirst();
        if (Number(numDeletedRows) !== 1) return false;
        await renumber(tx, await inOrder(tx));
        return true;
      }),
    /** Puts the rule at `position` (1 = first) and renumbers the others in their order. false: there is no such rule. */
    move: (id: number, position: number): Promise<boolean> =>
      inTransaction(db, async (tx) => {
        await lockOrder(tx);
        const rules = await inOrder(tx);
        const moving = rules.find((rule) => rule.id === id);
        if (!moving) return false;
        const others = rules.filter((rule) => rule !== moving);
        others.splice(Math.min(Math.max(position, 1), others.length + 1) - 1, 0, moving);
        await renumber(tx, others);
        return true;
      }),
    stateOf,
    statesOf: (mac: string) =>
      db.selectFrom('rule_devices').selectAll().where('device_mac', '=', mac).orderBy('updated_at', 'desc').orderBy('rule_id').execute() as Promise<RuleDeviceRow[]>,
    /** Devices held by a rule, the latest first (only `mac`'s, or those of the MACs given), with the rule's name. */
    held(mac?: string | string[]): Promise<Array<RuleDeviceRow & { rule_name: string }>> {
      let query = db
        .selectFrom('rule_devices')
        .innerJoin('rules', 'rules.id', 'rule_devices.rule_id')
        .selectAll('rule_devices')
        .select('rules.name as rule_name')
        .where('rule_devices.state', '=', 'held');
      if (typeof mac === 'string') query = query.where('rule_devices.device_mac', '=', mac);
      if (Array.isArray(mac)) {
        if (mac.length === 0) return Promise.resolve([]);
        query = query.where('rule_devices.device_mac', 'in', mac);
      }
      return query.orderBy('rule_devices.updated_at', 'desc').orderBy('rule_devices.device_mac').orderBy('rule_devices.rule_id').execute() as Promise<Array<RuleDeviceRow & { rule_name: string }>>;
    },
    /** How many devices the rule has taken on (working, provisioned or held): what its limit counts. */
    async devicesTaken(ruleId: number): Promise<number> {
      const { n } = await db.selectFrom('rule_devices').select(sql<number>`count(*)`.as('n')).where('rule_id', '=', ruleId).executeTakeFirstOrThrow();
      return n;
    },
    /**
     * Takes the device on for the rule if its limit has room: a new row, held with `reason` until
     * the caller saves what it did. undefined: the limit is full, the rule is gone, or the
     * device is taken on already (another request or station was first). The rule's row is
     * locked first, so claimers on several stations count one after another: the limit counts
     * the devices the rule remembers now (a released one frees its place), which a condition on
     * the rule's row alone could not express.
     */
    claim: (ruleId: number, mac: string, reason: string, now: number): Promise<RuleDeviceRow | undefined> =>
      inTransaction(db, async (tx) => {
        const rule = await tx
          .updateTable('rules')
          .set((eb) => ({ devices_numbered: eb.ref('devices_numbered') }))
          .where('id', '=', ruleId)
          .returning('max_devices')
          .executeTakeFirst();
        if (!rule) return undefined;
        if (rule.max_devices !== null) {
          const { n } = await tx.selectFrom('rule_devices').select(sql<number>`count(*)`.as('n')).where('rule_id', '=', ruleId).executeTakeFirstOrThrow();
          if (n >= rule.max_devices) return undefined;
        }
        return (await tx
          .insertInto('rule_devices')
          .values({ rule_id: ruleId, device_mac: mac, state: 'held', attempts: 0, last_job_id: null, reason, updated_at: now, sequence: null })
          .onConflict((oc) => oc.columns(['rule_id', 'device_mac']).doNothing())
          .returningAll()
          .executeTakeFirst()) as RuleDeviceRow | undefined;
      }),
    /**
     * The device's number with the rule ({{rule_sequence}}): the one it already has, else the
     * rule's next, kept on its row if it has one (the caller saves it with the device's state
     * otherwise). Two callers at once may both draw a number: the row keeps the first, both
     * are told that one, and the other number is never given (numbers are not given twice).
     */
    async numberFor(ruleId: number, mac: string): Promise<number> {
      const given = (await stateOf(ruleId, mac))?.sequence;
      if (given !== null && given !== undefined) return given;
      const { devices_numbered: next } = await db
        .updateTable('rules')
        .set((eb) => ({ devices_numbered: eb('devices_numbered', '+', 1) }))
        .where('id', '=', ruleId)
        .returning('devices_numbered')
        .executeTakeFirstOrThrow();
      const kept = await db
        .updateTable('rule_devices')
        .set({ sequence: sql<number>`coalesce(sequence, ${next})` })
        .where('rule_id', '=', ruleId)
        .where('device_mac', '=', mac)
        .returning('sequence')
        .executeTakeFirst();
      return kept?.sequence ?? next;
    },
    /**
     * Saves what the rule did with the device; `sequence` is kept once set (null: none yet).
     * With `expected`, only over that state: false when the row changed (or went) meanwhile.
     */
    async saveState(row: Omit<RuleDeviceRow, 'sequence'> & { sequence?: number | null }, expected?: ExpectedState): Promise<boolean> {
      const { rule_id, device_mac, state, attempts, last_job_id, reason, updated_at } = row;
      const sequence = row.sequence ?? null;
      if (expected) {
        const { numUpdatedRows } = await db
          .updateTable('rule_devices')
          .set({ state, attempts, last_job_id, reason, updated_at, sequence: sql<number | null>`coalesce(sequence, ${sequence})` })
          .where('rule_id', '=', rule_id)
          .where('device_mac', '=', device_mac)
          .where('state', '=', expected.state)
          .where('attempts', '=', expected.attempts)
          .where('last_job_id', 'is not distinct from', expected.last_job_id)
          .executeTakeFirst();
        return Number(numUpdatedRows) === 1;
      }
      // A device keeps the number it was given first (retries, provision-again, the deploy after a backup).
      await db
        .insertInto('rule_devices')
        .values({ rule_id, device_mac, state, attempts, last_job_id, reason, updated_at, sequence })
        .onConflict((oc) =>
          oc.columns(['rule_id', 'device_mac']).doUpdateSet((eb) => ({
            state: eb.ref('excluded.state'),
            attempts: eb.ref('excluded.attempts'),
            last_job_id: eb.ref('excluded.last_job_id'),
            reason: eb.ref('excluded.reason'),
            updated_at: eb.ref('excluded.updated_at'),
            sequence: sql<number | null>`coalesce(rule_devices.sequence, excluded.sequence)`,
          })),
        )
        .execute();
      return true;
    },
    async release(ruleId: number, mac: string): Promise<boolean> {
      const { numDeletedRows } = await db.deleteFrom('rule_devices').where('rule_id', '=', ruleId).where('device_mac', '=', mac).executeTakeFirst();
      return Number(numDeletedRows) === 1;
    },
  };
}

export type RuleStore = ReturnType<typeof createRuleStore>;
