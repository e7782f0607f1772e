import { isUniqueViolation } from '../db/errors.js';
import { DEFAULT_FIRST_BOOT_HOOK, type FirstBootHook } from '../first-boot/hook-files.js';
import type { DeviceStore } from '../devices/store.js';
import type { JobService } from '../jobs/service.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { normalizeMac } from '../shared/mac.js';
import { describeAction, type RuleEngine, type RuleVerdict } from './engine.js';
import type { LineState, LineSwitch } from './line.js';
import { normalizeMacPattern, serialPatterns } from './match.js';
import type { RuleBody, RulePatch } from './schemas.js';
import type { RuleFields, RuleRow, RuleStore } from './store.js';

export interface RuleView {
  id: number;
  name: string;
  position: number;
  enabled: boolean;
  match: {
    mac: string | null;
    serial: string[];
    model: string | null;
    emmc_min_bytes: number | null;
    emmc_max_bytes: number | null;
    holds_image: boolean | null;
  };
  action: RuleRow['action'];
  image: string | null;
  after: RuleRow['after_success'];
  full_match: boolean;
  limit: number | null;
  retries: number;
  provision_again: boolean;
  /** What the device does after an ok job: reboot (null: the default, reboot), poweroff or wait. */
  finish: RuleRow['finish'];
  /** The profile of per-device files its deploys write; null: none. */
  profile: string | null;
  /** Its deploys wait for the first-boot call; a device counts as provisioned only once it came. */
  confirm_boot: boolean;
  /** Seconds the first boot is awaited; null: 600. */
  confirm_timeout: number | null;
  /** The hook its confirming deploys write (cmdline, cmdline-boot, or none: its profile carries one). */
  first_boot_hook: FirstBootHook;
  /** What it does, in words: "deploy 'raspios'". */
  does: string;
  /** Devices it has taken on (what its limit counts). */
  devices: number;
}

export interface RuleServiceDeps {
  store: RuleStore;
  engine: RuleEngine;
  line: LineSwitch;
  devices: DeviceStore;
  jobs: JobService;
  clock: Clock;
  bus: EventBus;
  /** Throws or rejects (404) when there is no profile of per-device files by that name (src/device-files/). */
  requireProfile?: (name: string) => unknown;
}

/** A PATCH that loses to other changes this often in a row is refused (409) rather than retried forever. */
const UPDATE_TRIES = 5;

const taken = (name: string) => conflict(`there is already a rule named '${name}'`);

const bool = (value: boolean | null | undefined) => (value === null || value === undefined ? null : value ? 1 : 0);

export function createRuleService(deps: RuleServiceDeps) {
  const { store, engine, line, devices, jobs, clock, bus } = deps;

  async function view(rule: RuleRow): Promise<RuleView> {
    return {
      id: rule.id,
      name: rule.name,
      position: rule.position,
      enabled: rule.enabled === 1,
      match: {
        mac: rule.match_mac,
        serial: serialPatterns(rule),
        model: rule.match_model,
        emmc_min_bytes: rule.min_emmc_bytes,
        emmc_max_bytes: rule.max_emmc_bytes,
        holds_image: rule.match_holds_image === null ? null : rule.match_holds_image === 1,
      },
      action: rule.action,
      image: rule.image,
      after: rule.after_success,
      full_match: rule.full_match === 1,
      limit: rule.max_devices,
      retries: rule.retries,
      provision_again: rule.provision_again === 1,
      finish: rule.finish,
      profile: rule.profile,
      confirm_boot: rule.confirm_boot === 1,
      confirm_timeout: rule.confirm_timeout,
      first_boot_hook: rule.first_boot_hook ?? DEFAULT_FIRST_BOOT_HOOK,
      does: describeAction(rule),
      devices: await store.devicesTaken(rule.id),
    };
  }

  async function require(id: number): Promise<RuleRow> {
    const rule = await store.get(id);
    if (!rule) throw notFound(`there is no rule ${id}`);
    return rule;
  }

  /** The stored columns for `body` applied over `base` (a PATCH leaves out what it does not name). */
  async function toFields(body: RulePatch, base?: RuleRow): Promise<RuleFields> {
    const pick = <K extends keyof RulePatch, T>(key: K, column: T, convert: (value: NonNullable<RulePatch[K]>) => T): T =>
      body[key] === undefined ? column : body[key] === null ? (null as T) : convert(body[key]!);
    const fields: RuleFields = {
      name: body.name?.trim() ?? base!.name,
      enabled: body.enabled === undefined ? (base?.enabled ?? 1) : body.enabled ? 1 : 0,
      match_mac: pick('mac', base?.match_mac ?? null, normalizeMacPattern),
      match_serial: pick('serial', base?.match_serial ?? null, (list) => (list.length === 0 ? null : JSON.stringify(list.map((glob) => glob.trim())))),
      match_model: pick('model', base?.match_model ?? null, (text) => text.trim()),
      min_emmc_bytes: pick('emmc_min_bytes', base?.min_emmc_bytes ?? null, Number),
      max_emmc_bytes: pick('emmc_max_bytes', base?.max_emmc_bytes ?? null, Number),
      match_holds_image: body.holds_image === undefined ? (base?.match_holds_image ?? null) : bool(body.holds_image),
      action: body.action ?? base!.action,
      image: pick('image', base?.image ?? null, (name) => name.trim()),
      after_success: pick('after', base?.after_success ?? null, (after) => after),
      full_match: body.full_match === undefined ? (base?.full_match ?? 0) : body.full_match ? 1 : 0,
      max_devices: pick('limit', base?.max_devices ?? null, (limit) => limit),
      retries: body.retries ?? base?.retries ?? 0,
      provision_again: body.provision_again === undefined ? (base?.provision_again ?? 0) : body.provision_again ? 1 : 0,
      finish: pick('finish', base?.finish ?? null, (finish) => finish),
      profile: pick('profile', base?.profile ?? null, (profile) => profile),
      // On by default for a new rule that deploys (issue 13); a PATCH that does not name it keeps it.
      confirm_boot: body.confirm_boot === undefined ? (base?.confirm_boot ?? ((body.action ?? base!.action) === 'deploy' || (body.action ?? base!.action) === 'backup_deploy' ? 1 : 0)) : body.confirm_boot ? 1 : 0,
      confirm_timeout: pick('confirm_timeout', base?.confirm_timeout ?? null, (seconds) => seconds),
      first_boot_hook: pick('first_boot_hook', base?.first_boot_hook ?? null, (hook) => hook),
    };
    if (fields.name === '') throw badRequest('a rule needs a name');
    if (fields.min_emmc_bytes !== null && fields.max_emmc_bytes !== null && fields.min_emmc_bytes > fields.max_emmc_bytes) {
      throw badRequest('emmc_min_bytes is larger than emmc_max_bytes: no device could match');
    }
    if ((fields.action === 'backup' || fields.action === 'hold') && fields.image !== null) {
      throw badRequest(`a rule that does '${fields.action}' deploys no image; leave image out`);
    }
    if (fields.profile !== null) {
      if (fields.action === 'backup' || fields.action === 'hold') throw badRequest(`a rule that does '${fields.action}' writes no per-device files; leave profile out`);
      await deps.requireProfile?.(fields.profile);
    }
    const other = await store.byName(fields.name);
    if (other && other.id !== base?.id) throw taken(fields.name);
    return fields;
  }

  const changed = () => {
    bus.emit('rules.changed', {});
    jobs.wakeAll();
  };

  const listed = async () => Promise.all((await store.list()).map(view));

  return {
    view,
    list: listed,
    get: async (id: number) => view(await require(id)),
    async add(body: RuleBody): Promise<RuleView> {
      const fields = await toFields(body);
      // The name was free when checked; a rule added meanwhile (another request or station) may have taken it.
      const rule = await store.create(fields, clock.now()).catch((error: unknown) => {
        throw isUniqueViolation(error) ? taken(fields.name) : error;
      });
      changed();
      return view(rule);
    },
    /**
     * The patch applied over the rule as it is; written only if no one changed the rule since it
     * was read (another request or station), else read and applied again: no change is lost.
     */
    async update(id: number, patch: RulePatch): Promise<RuleView> {
      for (let tries = 1; ; tries++) {
        const base = await require(id);
        const fields = await toFields(patch, base);
        const rule = await store.update(id, fields, base).catch((error: unknown) => {
          throw isUniqueViolation(error) ? taken(fields.name) : error;
        });
        if (rule) {
          changed();
          return view(rule);
        }
        if (tries === UPDATE_TRIES) throw conflict(`rule ${id} kept changing while this change was made; try again`);
      }
    },
    async remove(id: number): Promise<RuleView> {
      const shown = await view(await require(id));
      if (!(await store.remove(id))) throw notFound(`there is no rule ${id}`);
      changed();
      return shown;
    },
    async move(id: number, position: number): Promise<RuleView[]> {
      if (!(await store.move(id, position))) throw notFound(`there is no rule ${id}`);
      changed();
      return listed();
    },
    /** Which rule would act on the device now, and why each other one would not. */
    async test(macInput: string): Promise<{ mac: string; paused: boolean; active_job: number | null; acting: string | null; rules: RuleVerdict[] }> {
      const mac = normalizeMac(macInput);
      const device = await devices.get(mac);
      if (!device) throw notFound(`no device with MAC ${mac} has registered`);
      const verdicts = await engine.verdictsFor(device, 'poll');
      const acting = verdicts.find((verdict) => verdict.decides && verdict.acts);
      return { mac, paused: line.paused(), active_job: (await jobs.activeFor(mac))?.id ?? null, acting: acting?.rule.name ?? null, rules: verdicts };
    },
    /** Devices held by a rule: they wait for a person. */
    held: async () =>
      (await store.held()).map((row) => ({ mac: row.device_mac, rule: { id: row.rule_id, name: row.rule_name }, reason: row.reason, since: new Date(row.updated_at).toISOString() })),
    /** The latest hold by any rule on each of these devices, for their rows on the Devices page (one query). */
    async holdsOf(macs: string[]): Promise<Map<string, { rule: string; reason: string | null }>> {
      const holds = new Map<string, { rule: string; reason: string | null }>();
      for (const held of await store.held(macs)) if (!holds.has(held.device_mac)) holds.set(held.device_mac, { rule: held.rule_name, reason: held.reason });
      return holds;
    },
    /** Forgets what the rule did with the device: it may act on it again (a person released it). */
    async release(id: number, macInput: string): Promise<void> {
      const rule = await require(id);
      const mac = normalizeMac(macInput);
      if (!(await store.release(id, mac))) throw notFound(`rule '${rule.name}' has done nothing with device ${mac}`);
      bus.emit('device.changed', { mac });
      changed();
    },
    /** The switch as the database has it (another station may have flipped it). */
    async line(): Promise<LineState> {
      await line.refresh();
      return line.state();
    },
    async pause(): Promise<LineState> {
      await line.pause(clock.now());
      changed();
      return line.state();
    },
    async resume(): Promise<LineState> {
      await line.resume();
      changed(); // parked polls ask again: queued rule work is handed out, new work ordered
      return line.state();
    },
  };
}

export type RuleService = ReturnType<typeof createRuleService>;
