import type { Logger } from 'pino';
import type { DeviceRow, DeviceStore } from '../devices/store.js';
import { DEFAULT_CONFIRM_TIMEOUT_S } from '../first-boot/service.js';
import { timeoutWords } from '../first-boot/view.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import type { LineSwitch } from './line.js';
import { mismatch, type HoldsImage } from './match.js';
import type { ExpectedState, RuleDeviceRow, RuleRow, RuleStore } from './store.js';

export type Trigger = 'register' | 'poll';

/** One rule's answer for one device: does it match, does it decide for the device, would it act. */
export interface RuleVerdict {
  rule: { id: number; name: string; position: number };
  matches: boolean;
  /** The first rule that decides is the only one that can act; later ones are not asked. */
  decides: boolean;
  acts: boolean;
  reason: string;
}

export interface EngineDeps {
  store: RuleStore;
  devices: DeviceStore;
  jobs: JobService;
  images: ImageLibrary;
  line: LineSwitch;
  clock: Clock;
  bus: EventBus;
  log: Logger;
}

const ACTION_WORDS: Record<RuleRow['action'], string> = {
  deploy: 'deploy',
  backup_deploy: 'back up, then deploy',
  backup: 'back up',
  hold: 'hold it for a person',
};

export function describeAction(rule: RuleRow): string {
  const image = rule.image === null ? 'the default image' : `'${rule.image}'`;
  return rule.action === 'deploy' || rule.action === 'backup_deploy' ? `${ACTION_WORDS[rule.action]} ${image}` : ACTION_WORDS[rule.action];
}

/**
 * Zero-touch provisioning: when a device with no active job registers or polls, the first rule
 * that decides for it acts (orders a job, or holds it). What each rule did with each device is
 * kept (rule_devices), so an ok device is not provisioned again and a failing one is retried
 * only `retries` times, also across restarts.
 *
 * Several requests (and stations sharing one database) may consider the same device or the same
 * rule at once. A rule takes a device on only through `store.claim` (the limit counted under a
 * lock on the rule), and every later save is made over the state it was decided on: whoever
 * loses a race leaves the row as the winner wrote it. The one unconditional save records a job
 * that was ordered: it exists, so the rule follows it.
 */
export function createRuleEngine(deps: EngineDeps) {
  const { store, devices, jobs, images, line, clock, bus, log } = deps;
  const by = (rule: RuleRow) => ({ id: rule.id, name: rule.name });

  async function holdsImage(rule: RuleRow, mac: string): Promise<HoldsImage> {
    let image;
    try {
      image = await images.resolveForDeploy(rule.image ?? undefined);
    } catch (error) {
      return { holds: false, why: `its image cannot be deployed: ${(error as Error).message}` };
    }
    const last = (await jobs.list({ mac, kind: 'deploy', limit: 2 })).rows.find((job) => job.state !== 'queued' && job.state !== 'running');
    const holds = last?.state === 'ok' && (await images.get(last.image_id!))?.sha256 === image.sha256;
    return holds
      ? { holds, why: `the device already holds a verified deploy of '${image.name}' (job ${last!.id})` }
      : { holds, why: `the device holds no verified deploy of '${image.name}'` };
  }

  type Values = Pick<RuleDeviceRow, 'state' | 'attempts' | 'last_job_id' | 'reason'> & { sequence?: number | null };

  /** Saves what the rule did; with `expected`, only over the state the decision was made on. */
  async function save(rule: RuleRow, mac: string, values: Values, expected?: ExpectedState) {
    if (!(await store.saveState({ ...values, rule_id: rule.id, device_mac: mac, updated_at: clock.now() }, expected))) return;
    if (values.state === 'held') log.warn({ rule: rule.name, mac, reason: values.reason }, 'device held by rule');
    bus.emit('device.changed', { mac });
  }

  const firstBoot = (rule: RuleRow) =>
    rule.confirm_boot ? { confirmBoot: true, confirmTimeout: rule.confirm_timeout ?? undefined, firstBootHook: rule.first_boot_hook ?? undefined } : {};

  /** Orders the rule's first step (or `kind`, for a retry or the deploy after a backup), decided over `expected`. */
  async function order(rule: RuleRow, mac: string, attempts: number, expected: ExpectedState, kind?: JobRow['kind']) {
    const step = kind ?? (rule.action === 'deploy' ? 'deploy' : 'backup');
    // The device's number with the rule ({{rule_sequence}}), saved below whether the order is placed or not.
    const sequence = await store.numberFor(rule.id, mac);
    const after = rule.after_success ?? undefined;
    // Back up, then deploy: after the backup the device must take the deploy, so it never powers off then.
    const finish = rule.action === 'backup_deploy' && step === 'backup' && rule.finish === 'poweroff' ? 'reboot' : (rule.finish ?? undefined);
    let job: JobRow;
    try {
      job = step === 'deploy'
        ? await jobs.orderDeploy(mac, rule.image ?? undefined, { after, fullMatch: rule.full_match === 1, rule: { ...by(rule), sequence }, finish, profile: rule.profile ?? undefined, ...firstBoot(rule) })
        // Back up, then deploy: the device must netboot again after the backup to take the deploy.
        : await jobs.orderBackup(mac, { after: rule.action === 'backup_deploy' ? 'netboot' : after, rule: by(rule), finish });
    } catch (error) {
      // Conditional: when the order lost to one placed meanwhile (the device has a job now), that one stands.
      return save(rule, mac, { state: 'held', attempts, last_job_id: null, reason: `the ${step} could not be ordered: ${(error as Error).message}`, sequence }, expected);
    }
    await save(rule, mac, { state: 'working', attempts, last_job_id: job.id, reason: null, sequence });
  }

  /** The rule's work on the device goes on after its last job ended: next step, retry, or hold. */
  async function carryOn(rule: RuleRow, state: RuleDeviceRow) {
    const mac = state.device_mac;
    const hold = (reason: string) => save(rule, mac, { state: 'held', attempts: state.attempts, last_job_id: state.last_job_id, reason }, state);
    const job = state.last_job_id === null ? undefined : await jobs.find(state.last_job_id);
    if (!job) return hold('its last job is gone from the records');
    // Ordered by another request or station since this one found the device without an active job.
    if (job.state === 'queued' || job.state === 'running') return;
    if (job.state === 'ok' || job.state === 'unconfirmed') {
      if (rule.action === 'backup_deploy' && job.kind === 'backup') return order(rule, mac, 1, state, 'deploy');
      // A deploy that asked for first-boot confirmation is done only once the installed OS called back.
      if (job.boot_state === 'awaiting') return;
      if (job.boot_state !== 'not_confirmed') {
        return save(rule, mac, { state: 'provisioned', attempts: state.attempts, last_job_id: state.last_job_id, reason: null }, state);
      }
      if (state.attempts <= rule.retries) return order(rule, mac, state.attempts + 1, state, job.kind);
      const tries = state.attempts === 1 ? '' : ` (${state.attempts} attempts)`;
      const within = timeoutWords(job.boot_confirm_timeout_s ?? DEFAULT_CONFIRM_TIMEOUT_S);
      return hold(`its deploy (job ${job.id}) was not confirmed: no first-boot call within ${within}${tries}`);
    }
    if (job.state === 'cancelled') return hold(`job ${job.id} was cancelled by a person`);
    if (state.attempts <= rule.retries) return order(rule, mac, state.attempts + 1, state, job.kind);
    const tries = state.attempts === 1 ? 'once' : `${state.attempts} times`;
    return hold(`the ${job.kind} failed ${tries}; the last, job ${job.id}: ${job.error ?? 'no reason given'}`);
  }

  async function verdictsFor(device: DeviceRow, trigger: Trigger): Promise<RuleVerdict[]> {
    let decided: RuleRow | undefined;
    const verdicts: RuleVerdict[] = [];
    for (const rule of await store.list()) {
      const verdict = (matches: boolean, decides: boolean, acts: boolean, reason: string) => {
        if (decides) decided = rule;
        verdicts.push({ rule: { id: rule.id, name: rule.name, position: rule.position }, matches, decides, acts, reason });
      };
      if (!rule.enabled) {
        verdict(false, false, false, 'it is disabled');
        continue;
      }
      const why = await mismatch(rule, device, () => holdsImage(rule, device.mac));
      if (why) verdict(false, false, false, why);
      else if (decided) verdict(true, false, false, `rule '${decided.name}' comes first and decides for this device`);
      else {
        const [reason, decides, acts] = await standing(rule, device.mac, trigger);
        verdict(true, decides, acts, reason);
      }
    }
    return verdicts;
  }

  /** A matching rule's answer for the device, by what it remembers of it: why, does it decide, would it act. */
  async function standing(rule: RuleRow, mac: string, trigger: Trigger): Promise<[string, boolean, boolean]> {
    const state = await store.stateOf(rule.id, mac);
    if (state?.state === 'held') return [`it holds this device: ${state.reason}`, true, false];
    if (state?.state === 'working') return [`it goes on with its work on this device (job ${state.last_job_id})`, true, true];
    if (state?.state === 'provisioned') {
      if (rule.provision_again && trigger === 'register') return [`it provisions it again (it registered again): ${describeAction(rule)}`, true, true];
      const again = rule.provision_again ? ' until the device registers again' : ' unless a person orders it';
      return [`it provisioned this device ok (job ${state.last_job_id}) and does not act again${again}`, true, false];
    }
    const taken = await store.devicesTaken(rule.id);
    if (rule.max_devices !== null && taken >= rule.max_devices) return [`its limit is reached (${taken} of ${rule.max_devices} devices)`, false, false];
    return [`it would ${describeAction(rule)}`, true, true];
  }

  /** The device's work in progress with a rule, if any (a working state of an enabled rule, optionally for one job). */
  async function workingFor(mac: string, jobId?: number): Promise<[RuleRow, RuleDeviceRow] | undefined> {
    for (const state of await store.statesOf(mac)) {
      if (state.state !== 'working' || (jobId !== undefined && state.last_job_id !== jobId)) continue;
      const rule = await store.get(state.rule_id);
      // A rule deleted since the states were read took its states with it.
      if (rule?.enabled) return [rule, state];
    }
    return undefined;
  }

  return {
    verdictsFor,
    /**
     * A job's first boot was confirmed or not (src/first-boot/): the rule that ordered it goes on
     * at once (provisioned, a retry, or held), without waiting for the device to ask.
     */
    async firstBootSettled(job: JobRow): Promise<void> {
      if (line.paused() || (await jobs.activeFor(job.device_mac))) return;
      const working = await workingFor(job.device_mac, job.id);
      if (working) await carryOn(...working);
    },
    /** A device registered or polled: the rule that decides for it acts, unless the line is paused or a job is active. */
    async consider(mac: string, trigger: Trigger): Promise<void> {
      if (line.paused() || (await jobs.activeFor(mac))) return;
      const device = await devices.get(mac);
      if (!device) return;
      const working = await workingFor(mac);
      if (working) return carryOn(...working);
      const acting = (await verdictsFor(device, trigger)).find((verdict) => verdict.decides);
      if (!acting?.acts) return;
      const rule = await store.get(acting.rule.id);
      if (!rule) return;
      const holding = `rule '${rule.name}' holds new devices for a person`;
      const state = await store.stateOf(rule.id, mac);
      if (state) {
        // A device it provisioned, and acts on again; any other state was saved meanwhile by another request.
        if (state.state !== 'provisioned') return;
        if (rule.action === 'hold') return save(rule, mac, { state: 'held', attempts: 0, last_job_id: null, reason: holding }, state);
        return order(rule, mac, 1, state);
      }
      if (rule.action === 'hold') {
        const held = await store.claim(rule.id, mac, holding, clock.now());
        if (held) {
          log.warn({ rule: rule.name, mac, reason: held.reason }, 'device held by rule');
          bus.emit('device.changed', { mac });
        }
        return;
      }
      // Taken on held until the order is saved: a request that meets it meanwhile leaves it alone,
      // and a server that stops in between leaves it held with this sentence for a person.
      const claimed = await store.claim(rule.id, mac, `rule '${rule.name}' was ordering its work when this was saved; if this stays, release the device`, clock.now());
      if (claimed) await order(rule, mac, 1, claimed);
    },
  };
}

export type RuleEngine = ReturnType<typeof createRuleEngine>;
