import type { FirstBootHook } from '../first-boot/hook-files.js';
import type { Db } from '../db/open.js';

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

const FIELDS: ReadonlyArray<keyof RuleFields> = [
  'name', 'enabled', 'match_mac', 'match_serial', 'match_model', 'min_emmc_bytes', 'max_emmc_bytes', 'match_holds_image',
  'action', 'image', 'after_success', 'full_match', 'max_devices', 'retries', 'provision_again',
  'finish', 'profile', 'confirm_boot', 'confirm_timeout', 'first_boot_hook',
];

export function createRuleStore(db: Db) {
  const all = db.prepare<[], RuleRow>('SELECT * FROM rules ORDER BY position, id');
  const byId = db.prepare<[number], RuleRow>('SELECT * FROM rules WHERE id = ?');
  const byName = db.prepare<[string], RuleRow>('SELECT * FROM rules WHERE name = ?');
  const insert = db.prepare(`
    INSERT INTO rules (${FIELDS.join(', ')}, position, created_at)
    VALUES (${FIELDS.map((field) => `@${field}`).join(', ')}, (SELECT coalesce(max(position), 0) + 1 FROM rules), @created_at)`);
  const update = db.prepare(`UPDATE rules SET ${FIELDS.map((field) => `${field} = @${field}`).join(', ')} WHERE id = @id`);
  const remove = db.prepare<[number]>('DELETE FROM rules WHERE id = ?');
  const setPosition = db.prepare<{ id: number; position: number }>('UPDATE rules SET position = @position WHERE id = @id');
  const stateOf = db.prepare<[number, string], RuleDeviceRow>('SELECT * FROM rule_devices WHERE rule_id = ? AND device_mac = ?');
  const ofDevice = db.prepare<[string], RuleDeviceRow>('SELECT * FROM rule_devices WHERE device_mac = ? ORDER BY updated_at DESC');
  const held = db.prepare<[], RuleDeviceRow & { rule_name: string }>(`
    SELECT rule_devices.*, rules.name AS rule_name FROM rule_devices JOIN rules ON rules.id = rule_id
    WHERE state = 'held' ORDER BY updated_at DESC`);
  const taken = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM rule_devices WHERE rule_id = ?');
  // A device keeps the number it was given first (retries, provision-again, the deploy after a backup).
  const save = db.prepare<RuleDeviceRow>(`
    INSERT INTO rule_devices (rule_id, device_mac, state, attempts, last_job_id, reason, updated_at, sequence)
    VALUES (@rule_id, @device_mac, @state, @attempts, @last_job_id, @reason, @updated_at, @sequence)
    ON CONFLICT (rule_id, device_mac) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
      last_job_id = excluded.last_job_id, reason = excluded.reason, updated_at = excluded.updated_at,
      sequence = coalesce(rule_devices.sequence, excluded.sequence)`);
  const nextNumber = db.prepare<[number], { n: number }>('UPDATE rules SET devices_numbered = devices_numbered + 1 WHERE id = ? RETURNING devices_numbered AS n');
  const release = db.prepare<[number, string]>('DELETE FROM rule_devices WHERE rule_id = ? AND device_mac = ?');

  return {
    list: () => all.all(),
    get: (id: number) => byId.get(id),
    byName: (name: string) => byName.get(name),
    create(fields: RuleFields, now: number): RuleRow {
      const { lastInsertRowid } = insert.run({ ...fields, created_at: now });
      return byId.get(Number(lastInsertRowid))!;
    },
    update(id: number, fields: RuleFields): RuleRow {
      update.run({ ...fields, id });
      return byId.get(id)!;
    },
    /** Deletes the rule and what it remembers of devices; history keeps its name on the jobs. */
    remove: db.transaction((id: number) => {
      remove.run(id);
      all.all().forEach((rule, index) => setPosition.run({ id: rule.id, position: index + 1 }));
    }),
    /** Puts the rule at `position` (1 = first) and renumbers the others in their order. */
    move: db.transaction((id: number, position: number) => {
      const others = all.all().filter((rule) => rule.id !== id);
      const at = Math.min(Math.max(position, 1), others.length + 1) - 1;
      others.splice(at, 0, byId.get(id)!);
      others.forEach((rule, index) => setPosition.run({ id: rule.id, position: index + 1 }));
    }),
    stateOf: (ruleId: number, mac: string) => stateOf.get(ruleId, mac),
    statesOf: (mac: string) => ofDevice.all(mac),
    held: () => held.all(),
    /** How many devices the rule has taken on (working, provisioned or held): what its limit counts. */
    devicesTaken: (ruleId: number) => taken.get(ruleId)!.n,
    /**
     * The device's number with the rule ({{rule_sequence}}): the one it already has, else the
     * rule's next (taken now; the caller saves it with the device's state, order or not).
     */
    numberFor(ruleId: number, mac: string): number {
      return stateOf.get(ruleId, mac)?.sequence ?? nextNumber.get(ruleId)!.n;
    },
    /** Saves what the rule did with the device; `sequence` is kept once set (null: none yet). */
    saveState: (row: Omit<RuleDeviceRow, 'sequence'> & { sequence?: number | null }) => save.run({ ...row, sequence: row.sequence ?? null }),
    release: (ruleId: number, mac: string) => release.run(ruleId, mac).changes === 1,
  };
}

export type RuleStore = ReturnType<typeof createRuleStore>;
