import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Queries } from '../db/database.js';
import type { DeviceRow } from '../devices/store.js';
import type { JobRow } from '../jobs/store.js';
import type { FirstBootHook } from './hook-files.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { normalizeMac } from '../shared/mac.js';
import { newToken } from '../shared/tokens.js';
import { createFirstBootStore, type BootReport, type FirstBootStore } from './store.js';
import { timeoutWords } from './view.js';

export const DEFAULT_CONFIRM_TIMEOUT_S = 600;
export const FIRST_BOOT_PATH = '/api/first-boot';

export interface FirstBootDeps {
  store: FirstBootStore;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** The base URL devices reach the server at (--public-url); without it there is no {{first_boot_url}}. */
  publicUrl: string | undefined;
  /** A job's first boot was confirmed or not: the rule that ordered it goes on (src/rules/engine.ts). */
  onSettled?: (job: JobRow) => void | Promise<void>;
}

/** What the installed OS's hook sends, once. */
export interface FirstBootCall {
  token?: string;
  mac?: string;
  serial?: string;
  os_release?: string;
  kernel?: string;
}

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');
const iso = (ms: number | null) => (ms === null ? 'an unknown time' : new Date(ms).toISOString());

/**
 * First-boot confirmation (issue 13): a deploy that asks for it gets a one-time token when it is
 * ordered (rendered into its per-device files for the installed OS's hook; only the hash is kept).
 * Once the job ends ok it awaits the hook's call until its deadline: the call confirms it; no call
 * in time leaves it not confirmed, and the device netboots again (src/services.ts).
 */
export function createFirstBootService(deps: FirstBootDeps) {
  const { store, clock, bus, log } = deps;

  async function settled(job: JobRow, state: 'confirmed' | 'not_confirmed') {
    // 'job.changed' keeps live views current and becomes the webhook event job.confirmed / job.not_confirmed.
    bus.emit('job.changed', { jobId: job.id, mac: job.device_mac, state, snapshot: job });
    bus.emit('device.changed', { mac: job.device_mac });
    try {
      await deps.onSettled?.(job);
    } catch (error) {
      log.error({ err: error, job: job.id }, 'rule engine failed after a first boot was settled');
    }
  }

  return {
    /**
     * A new one-time token for a deploy to `device`, and the URL its hook calls: --public-url, else
     * where the device's client last reached this server (null when neither is known).
     */
    newToken(device: Pick<DeviceRow, 'server_url'>) {
      const base = deps.publicUrl ?? device.server_url;
      return { token: newToken(), url: base === null || base === undefined ? null : `${base.replace(/\/+$/, '')}${FIRST_BOOT_PATH}` };
    },

    /**
     * Records that the queued job `jobId` asks for confirmation with `token` (only its hash is
     * kept); in the caller's transaction `tx` when given (the one creating the job).
     */
    async arm(jobId: number, token: string, hook: FirstBootHook, timeoutSeconds = DEFAULT_CONFIRM_TIMEOUT_S, tx?: Queries): Promise<void> {
      await (tx ? createFirstBootStore(tx) : store).arm(jobId, hashOf(token), hook, timeoutSeconds);
    },

    /** The hook's call: confirms the job its token belongs to, once. Each refusal is one sentence. */
    async confirm(call: FirstBootCall): Promise<JobRow> {
      if (!call.token) throw badRequest('a first-boot call needs token: the one-time token the deploy wrote for the installed OS');
      const hash = hashOf(call.token);
      const job = await store.byTokenHash(hash);
      // Found by its hash (an index lookup); the comparison after it is constant-time as well.
      if (!job || !timingSafeEqual(Buffer.from(job.boot_token_hash!), Buffer.from(hash))) {
        throw notFound('no deploy is waiting for this first-boot token');
      }
      if (call.mac !== undefined && call.mac !== '') {
        const mac = normalizeMac(call.mac);
        if (mac !== job.device_mac) throw conflict(`job ${job.id} deployed device ${job.device_mac}, not ${mac}`);
      }
      switch (job.boot_state) {
        case 'confirmed':
          throw conflict(`job ${job.id}'s first boot was already confirmed at ${iso(job.boot_confirmed_at)}`);
        case 'superseded':
          throw conflict(`job ${job.id}'s first boot is no longer awaited: a newer job for ${job.device_mac} was ordered before this call came`);
        case 'not_confirmed':
          throw conflict(`job ${job.id} is not confirmed: no first-boot call came within ${timeoutWords(job.boot_confirm_timeout_s ?? DEFAULT_CONFIRM_TIMEOUT_S)}; a call now confirms nothing`);
        case null:
          if (job.state === 'queued' || job.state === 'running') throw conflict(`job ${job.id} is still ${job.state}; its first boot can be confirmed only after it ends ok`);
          throw conflict(`job ${job.id} ended ${job.state}, so no first boot is awaited`);
      }
      const report: BootReport = {
        serial: call.serial || null,
        mac: call.mac ? normalizeMac(call.mac) : null,
        os_release: call.os_release || null,
        kernel: call.kernel || null,
      };
      // The state read above may be stale (another call, the watchdog): the update is conditional.
      const confirmed = await store.confirm(job.id, report, clock.now());
      if (!confirmed) throw conflict(`job ${job.id}'s first boot is no longer awaited`);
      log.info({ job: job.id, mac: job.device_mac, os_release: report.os_release, kernel: report.kernel }, 'first boot confirmed');
      await settled(confirmed, 'confirmed');
      return confirmed;
    },

    /**
     * A new job was ordered for `mac`: its earlier deploys stop awaiting their first boot, so an
     * old deadline can never switch netboot on under the new work (the rule that ordered one
     * treats it as done: a person took the device over).
     */
    async supersede(mac: string, newerJobId: number): Promise<void> {
      for (const id of await store.supersede(mac, newerJobId)) {
        log.info({ job: id, mac, newer: newerJobId }, 'first boot no longer awaited: a newer job was ordered');
        bus.emit('job.changed', { jobId: id, mac, state: 'superseded' });
      }
    },

    /** Marks jobs whose first boot did not call back in time as not confirmed (the watchdog calls this). */
    async expireDue(): Promise<JobRow[]> {
      const expired: JobRow[] = [];
      for (const job of await store.due(clock.now())) {
        // Another station's watchdog, or a call just in time, may have settled it since: conditional.
        const row = await store.expire(job.id);
        if (!row) continue;
        log.warn({ job: job.id, mac: job.device_mac }, 'first boot not confirmed in time');
        await settled(row, 'not_confirmed');
        expired.push(row);
      }
      return expired;
    },
  };
}

export type FirstBootService = ReturnType<typeof createFirstBootService>;
