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
import type { RuleDeviceRow, RuleRow, RuleStore } from './store.js';

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
 */
export function createRuleEngine(deps: EngineDeps) {
  const { store, devices, jobs, images, line, clock, bus, log } = deps;
  const by = (rule: RuleRow) => ({ id: rule.id, name: rule.name });

  function holdsImage(rule: RuleRow, mac: string): HoldsImage {
    let image;
    try {
      image = images.resolveForDeploy(rule.image ?? undefined);
    } catch (error) {
      return { holds: false, why: `its image cannot be deployed: ${(error as Error).message}` };
    }
    const last = jobs.list({ mac, kind: 'deploy', limit: 2 }).rows.find((job) => job.state !== 'queued' && job.state !== 'running');
    const holds = last?.state === 'ok' && images.get(last.image_id!)?.sha256 === image.sha256;
    return holds
      ? { holds, why: `the device already holds a verified deploy of '${image.name}' (job ${last!.id})` }
      : { holds, why: `the device holds no verified deploy of '${image.name}'` };
  }

  function save(rule: RuleRow, mac: string, values: Pick<RuleDeviceRow, 'state' | 'attempts' | 'last_job_id' | 'reason'> & { sequence?: number | null }) {
    store.saveState({ rule_id: rule.id, device_mac: mac, updated_at: clock.now(), ...values });
    if (values.state === 'held') log.warn({ rule: rule.name, mac, reason: values.reason }, 'device held by rule');
    bus.emit('device.changed', { mac });
  }

  const firstBoot = (rule: RuleRow) =>
    rule.confirm_boot ? { confirmBoot: true, confirmTimeout: rule.confirm_timeout ?? undefined, firstBootHook: rule.first_boot_hook ?? undefined } : {};

  /** Orders the rule's first step (or `kind`, for a retry or the deploy after a backup). */
  function order(rule: RuleRow, mac: string, attempts: number, kind?: JobRow['kind']) {
    const step = kind ?? (rule.action === 'deploy' ? 'deploy' : 'backup');
    // The device's number with the rule ({{rule_sequence}}), saved below whether the order is placed or not.
    const sequence = store.numberFor(rule.id, mac);
    try {
      const after = rule.after_success ?? undefined;
      // Back up, then deploy: after the backup the device must take the deploy, so it never powers off then.
      const finish = rule.action === 'backup_deploy' && step === 'backup' && rule.finish === 'poweroff' ? 'reboot' : (rule.finish ?? undefined);
      const job = step === 'deploy'
        ? jobs.orderDeploy(mac, rule.image ?? undefined, { after, fullMatch: rule.full_match === 1, rule: { ...by(rule), sequence }, finish, profile: rule.profile ?? undefined, ...firstBoot(rule) })
        // Back up, then deploy: the device must netboot again after the backup to take the deploy.
        : jobs.orderBackup(mac, { after: rule.action === 'backup_deploy' ? 'netboot' : after, rule: by(rule), finish });
      save(rule, mac, { state: 'working', attempts, last_job_id: job.id, reason: null, sequence });
    } catch (error) {
      save(rule, mac, { state: 'held', attempts, last_job_id: null, reason: `the ${step} could not be ordered: ${(error as Error).message}`, sequence });
    }
  }

  /** The rule's work on the device goes on after its last job ended: next step, retry, or hold. */
  function carryOn(rule: RuleRow, state: RuleDeviceRow) {
    const mac = state.device_mac;
    const job = state.last_job_id === null ? undefined : jobs.find(state.last_job_id);
    if (!job) return save(rule, mac, { ...state, state: 'held', reason: 'its last job is gone from the records' });
    if (job.state === 'ok' || job.state === 'unconfirmed') {
      if (rule.action === 'backup_deploy' && job.kind === 'backup') return order(rule, mac, 1, 'deploy');
      // A deploy that asked for first-boot confirmation is done only once the installed OS called back.
      if (job.boot_state === 'awaiting') return;
      if (job.boot_state !== 'not_confirmed') return save(rule, mac, { ...state, state: 'provisioned', reason: null });
      if (state.attempts <= rule.retries) return order(rule, mac, state.attempts + 1, job.kind);
      const tries = state.attempts === 1 ? '' : ` (${state.attempts} attempts)`;
      const within = timeoutWords(job.boot_confirm_timeout_s ?? DEFAULT_CONFIRM_TIMEOUT_S);
      return save(rule, mac, { ...state, state: 'held', reason: `its deploy (job ${job.id}) was not confirmed: no first-boot call within ${within}${tries}` });
    }
    if (job.state === 'cancelled') {
      return save(rule, mac, { ...state, state: 'held', reason: `job ${job.id} was cancelled by a person` });
    }
    if (state.attempts <= rule.retries) return order(rule, mac, state.attempts + 1, job.kind);
    const tries = state.attempts === 1 ? 'once' : `${state.attempts} times`;
    save(rule, mac, { ...state, state: 'held', reason: `the ${job.kind} failed ${tries}; the last, job ${job.id}: ${job.error ?? 'no reason given'}` });
  }

  function verdictsFor(device: DeviceRow, trigger: Trigger): RuleVerdict[] {
    let decided: RuleRow | undefined;
    return store.list().map((rule) => {
      const verdict = (matches: boolean, decides: boolean, acts: boolean, reason: string): RuleVerdict => {
        if (decides) decided = rule;
        return { rule: { id: rule.id, name: rule.name, position: rule.position }, matches, decides, acts, reason };
      };
      if (!rule.enabled) return verdict(false, false, false, 'it is disabled');
      const why = mismatch(rule, device, () => holdsImage(rule, device.mac));
      if (why) return verdict(false, false, false, why);
      if (decided) return verdict(true, false, false, `rule '${decided.name}' comes first and decides for this device`);
      const state = store.stateOf(rule.id, device.mac);
      if (state?.state === 'held') return verdict(true, true, false, `it holds this device: ${state.reason}`);
      if (state?.state === 'working') return verdict(true, true, true, `it goes on with its work on this device (job ${state.last_job_id})`);
      if (state?.state === 'provisioned') {
        if (rule.provision_again && trigger === 'register') return verdict(true, true, true, `it provisions it again (it registered again): ${describeAction(rule)}`);
        const again = rule.provision_again ? ' until the device registers again' : ' unless a person orders it';
        return verdict(true, true, false, `it provisioned this device ok (job ${state.last_job_id}) and does not act again${again}`);
      }
      const taken = store.devicesTaken(rule.id);
      if (rule.max_devices !== null && taken >= rule.max_devices) {
        return verdict(true, false, false, `its limit is reached (${taken} of ${rule.max_devices} devices)`);
      }
      return verdict(true, true, true, `it would ${describeAction(rule)}`);
    });
  }

  return {
    verdictsFor,
    /**
     * A job's first boot was confirmed or not (src/first-boot/): the rule that ordered it goes on
     * at once (provisioned, a retry, or held), without waiting for the device to ask.
     */
    firstBootSettled(job: JobRow) {
      if (line.paused() || jobs.activeFor(job.device_mac)) return;
      for (const state of store.statesOf(job.device_mac)) {
        const rule = store.get(state.rule_id)!;
        if (state.state === 'working' && rule.enabled && state.last_job_id === job.id) return carryOn(rule, state);
      }
    },
    /** A device registered or polled: the rule that decides for it acts, unless the line is paused or a job is active. */
    consider(mac: string, trigger: Trigger) {
      if (line.paused() || jobs.activeFor(mac)) return;
      const device = devices.get(mac);
      if (!device) return;
      for (const state of store.statesOf(mac)) {
        const rule = store.get(state.rule_id)!;
        if (state.state === 'working' && rule.enabled) return carryOn(rule, state);
      }
      const acting = verdictsFor(device, trigger).find((verdict) => verdict.decides);
      if (!acting?.acts) return;
      const rule = store.get(acting.rule.id)!;
      if (rule.action === 'hold') {
        return save(rule, mac, { state: 'held', attempts: 0, last_job_id: null, reason: `rule '${rule.name}' holds new devices for a person` });
      }
      order(rule, mac, 1);
    },
  };
}

export type RuleEngine = ReturnType<typeof createRuleEngine>;
