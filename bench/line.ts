import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.js';
import { benchImage, type BenchImage } from './lib/image.js';
import { createLoopbackLab, type Lab } from './lib/netns.js';
import { REPO, startOurServer, type OurServer } from './lib/our-server.js';
import { killGroup, sleep, startProcess } from './lib/proc.js';
import { ratioRow, type Section } from './lib/report.js';
import { fmt, MIB, percentile } from './lib/stats.js';

const CLIENT = join(REPO, 'device', 'provisioning-client.sh');
const DEVICES = 12;
/** Device i arrives (its client starts, as after a netboot) at i × this many ms: a fixed schedule. */
const ARRIVAL_EVERY_MS = 3000;
const DEVICE_TIMEOUT_MS = 5 * 60_000;
/** A small root filesystem: what a line deploys, sized so 12 devices take about a minute. */
const IMAGE_BYTES = 128 * MIB;
const IMAGE_FILE_BYTES = 24 * MIB;

type Mode = 'rule' | 'operator';

interface Arrival {
  mac: string;
  /** From the client's "registered" line to its exit after the job's result was accepted, seconds. */
  seconds: number;
  /** When it registered and when its client ended, ms since the run began. */
  registeredAt: number;
  doneAt: number;
}

interface LineRun {
  mode: Mode;
  arrivals: Arrival[];
  /** Admin API requests the bench made after set-up (image, rule): the operator's actions. */
  adminRequests: number;
  /** First registration to last device done, seconds. */
  spanSeconds: number;
}

/**
 * The line benchmark: 12 devices (the real client, a file as each eMMC) arrive on a fixed
 * schedule at a server with one rule (deploy the default image), and nobody touches the admin
 * API. Baseline, in the same run: the same devices, each ordered through the admin API the moment
 * it registers (one operator action per device, made as fast as a program can).
 */
export async function lineBenchmark(ctx: BenchContext): Promise<Section> {
  const image = await benchImage(ctx.cacheDir, IMAGE_BYTES, IMAGE_FILE_BYTES, ctx.log);
  const runs: LineRun[] = [];
  for (const mode of ['rule', 'operator'] as const) {
    ctx.log(`line: ${DEVICES} devices, one every ${ARRIVAL_EVERY_MS / 1000} s, ${mode === 'rule' ? 'one rule, no operator' : 'ordered by hand as each registers'}`);
    const lab = createLoopbackLab(ctx.tools, ctx.cleanup);
    runs.push(await lineIn(ctx, lab, image, mode).finally(() => lab.close()));
  }
  const [rules, operator] = runs as [LineRun, LineRun];
  const p50 = (run: LineRun) => percentile(run.arrivals.map((a) => a.seconds), 0.5);
  const p95 = (run: LineRun) => percentile(run.arrivals.map((a) => a.seconds), 0.95);
  const perHour = (run: LineRun) => (DEVICES / run.spanSeconds) * 3600;
  const name = `line: ${DEVICES} devices arriving every ${ARRIVAL_EVERY_MS / 1000} s, ${fmt.size(image.bytes)} ext4 image`;
  const base = '(ordered by hand at registration)';
  return {
    title: 'Line',
    rows: [
      ratioRow(name, 'time per device, registered → ok: p50', fmt.seconds(p50(rules)), `${fmt.seconds(p50(operator))} ${base}`, p50(rules) / p50(operator)),
      ratioRow(name, 'time per device, registered → ok: p95', fmt.seconds(p95(rules)), `${fmt.seconds(p95(operator))} ${base}`, p95(rules) / p95(operator)),
      ratioRow(name, 'devices per hour (first registration → last ok)', perHour(rules).toFixed(0), `${perHour(operator).toFixed(0)} ${base}`, perHour(rules) / perHour(operator)),
      { benchmark: name, measure: 'operator actions after set-up', ours: String(rules.adminRequests), baseline: String(operator.adminRequests), ratio: '–', goal: '0', met: rules.adminRequests === 0 ? 'yes' : 'no' },
    ],
    details: [
      `Image: ${fmt.size(image.bytes)} ext4 (${fmt.mb(image.fileBytes)} of files, ${fmt.mb(image.mappedBytes)} mapped), added with \`cm4prov image add --default\`. Set-up, not counted: the image, and in the rule run one rule (\`POST /api/rules {action: deploy}\`: the default image). Each device: \`busybox sh device/provisioning-client.sh\` (AFTER_JOB=exit, a sparse file as its eMMC, a scratch LED dir), started at i × ${ARRIVAL_EVERY_MS / 1000} s in one namespace's lo with the server. Time per device: from the client's "registered" line to its exit 0 after the server accepted its ok result (the deploy's read-back included). Every job was checked afterwards in the stopped server's database: one ok deploy per device, ordered by the rule (or by the operator in the baseline), and each LED left steady on. Devices per hour is bounded by the arrival schedule (${((DEVICES - 1) * ARRIVAL_EVERY_MS) / 1000} s from first to last arrival): it shows the line keeps up, not its ceiling. One pass each (no repetitions): a few minutes in all.`,
      ...runs.map((run) => `${run.mode === 'rule' ? 'rule' : 'by hand'}: ${run.arrivals.map((a) => fmt.seconds(a.seconds)).join(', ')}; span ${fmt.seconds(run.spanSeconds)}; admin requests after set-up ${run.adminRequests}`),
    ],
  };
}

async function lineIn(ctx: BenchContext, lab: Lab, image: BenchImage, mode: Mode): Promise<LineRun> {
  const runDir = join(ctx.runDir, `line-${mode}`);
  const dataDir = join(runDir, 'data');
  mkdirSync(runDir, { recursive: true });
  let server: OurServer | undefined;
  const clients: ChildProcess[] = [];
  let adminRequests = 0;
  try {
    server = await startOurServer(lab, { dataDir, runDir, cleanup: ctx.cleanup, name: `line-${mode}` });
    await server.addImage('line', image.path);
    if (mode === 'rule') await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', confirm_boot: false });
    await server.settle();
    const orderByHand = async (mac: string) => {
      adminRequests++;
      await server!.admin('POST', `/api/devices/${mac}/deploy`, {});
    };

    const began = Date.now();
    const arrivals = await Promise.all(
      Array.from({ length: DEVICES }, async (_, index) => {
        await sleep(index * ARRIVAL_EVERY_MS);
        const mac = `dc:a6:32:11:00:${(index + 1).toString(16).padStart(2, '0')}`;
        const device = join(runDir, `device-${index + 1}`);
        const client = startDevice(ctx, lab, server!, image, device, mac);
        clients.push(client.child);
        await client.registered;
        const registeredAt = Date.now() - began;
        if (mode === 'operator') await orderByHand(mac);
        const code = await client.exited;
        const doneAt = Date.now() - began;
        if (code !== 0) throw new Error(`device ${mac}: the client exited with ${code}: ${client.output().slice(-600)}`);
        const led = readFileSync(join(device, 'led', 'trigger'), 'utf8').trim();
        if (led !== 'none' || readFileSync(join(device, 'led', 'brightness'), 'utf8').trim() !== '1') {
          throw new Error(`device ${mac}: its LED does not show done (trigger ${led})`);
        }
        return { mac, seconds: (doneAt - registeredAt) / 1000, registeredAt, doneAt };
      }),
    );
    await server.stop();
    server = undefined;
    checkJobs(join(dataDir, 'cm4prov.sqlite'), arrivals, mode);
    const first = Math.min(...arrivals.map((a) => a.registeredAt));
    const last = Math.max(...arrivals.map((a) => a.doneAt));
    ctx.log(`  ${mode}: p50 ${fmt.seconds(percentile(arrivals.map((a) => a.seconds), 0.5))}, span ${fmt.seconds((last - first) / 1000)}, admin requests after set-up ${adminRequests}`);
    return { mode, arrivals, adminRequests, spanSeconds: (last - first) / 1000 };
  } finally {
    for (const child of clients) killGroup(child);
    await server?.stop();
  }
}

/** One device: a sparse file as its eMMC, a scratch LED dir, and the real client, started now. */
function startDevice(ctx: BenchContext, lab: Lab, server: OurServer, image: BenchImage, dir: string, mac: string) {
  mkdirSync(join(dir, 'led'), { recursive: true });
  for (const [file, text] of [['trigger', 'none timer heartbeat [mmc0]'], ['brightness', '0'], ['max_brightness', '1'], ['delay_on', '500'], ['delay_off', '500']]) {
    writeFileSync(join(dir, 'led', file!), `${text}\n`);
  }
  const target = join(dir, 'emmc.img');
  writeFileSync(target, '');
  truncateSync(target, image.bytes + 16 * MIB);
  const [ip, ...exec] = lab.exec(lab.clientNs);
  const child = startProcess(ip!, [...exec, ctx.tools.busybox, 'sh', CLIENT], {
    env: {
      PATH: ctx.deviceBin, PROVISIONING_SERVER: server.url, TARGET_DEVICE: target, DEVICE_MAC: mac, PROVISIONING_CMDLINE: '/dev/null',
      POLL_WAIT: '30', POLL_INTERVAL: '1', AFTER_JOB: 'exit', LED_DIR: join(dir, 'led'),
    },
  });
  let output = '';
  let onLine: (() => void) | undefined;
  const collect = (chunk: Buffer) => {
    output += chunk;
    onLine?.();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const registered = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`device ${mac} did not register within ${DEVICE_TIMEOUT_MS / 1000} s: ${output.slice(-600)}`)), DEVICE_TIMEOUT_MS);
    onLine = () => {
      if (!/registered; waiting/.test(output)) return;
      clearTimeout(timer);
      onLine = undefined;
      resolve();
    };
    void exited.then(() => {
      clearTimeout(timer);
      if (onLine) reject(new Error(`device ${mac}'s client exited before registering: ${output.slice(-600)}`));
    });
  });
  const timeout = setTimeout(() => killGroup(child), DEVICE_TIMEOUT_MS);
  void exited.then(() => clearTimeout(timeout));
  return { child, registered, exited, output: () => output };
}

/** Each device has exactly one job: an ok deploy, ordered by the rule (or by the operator in the baseline). */
function checkJobs(dbFile: string, arrivals: Arrival[], mode: Mode) {
  const db = new Database(dbFile, { readonly: true });
  try {
    for (const { mac } of arrivals) {
      const jobs = db.prepare('SELECT kind, state, ordered_by, error FROM jobs WHERE device_mac = ?').all(mac) as { kind: string; state: string; ordered_by: string; error: string | null }[];
      const wanted = mode === 'rule' ? 'rule' : 'operator';
      if (jobs.length !== 1 || jobs[0]!.kind !== 'deploy' || jobs[0]!.state !== 'ok' || jobs[0]!.ordered_by !== wanted) {
        throw new Error(`device ${mac}: expected one ok deploy ordered by the ${wanted}, found ${JSON.stringify(jobs)}`);
      }
    }
  } finally {
    db.close();
  }
}
