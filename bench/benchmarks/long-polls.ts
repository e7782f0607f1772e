import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { createLoopbackLab } from '../lib/netns.js';
import { REPO, SERVER_PORT, startOurServer, type OurServer } from '../lib/our-server.js';
import { run } from '../lib/proc.js';
import { ratioRow, type Row, type Section } from '../lib/report.js';
import { fmt, median, percentile } from '../lib/stats.js';
import { launchPostgres } from '../../test/helpers/postgres.js';

const LOAD = join(REPO, 'bench', 'benchmarks', 'long-poll-load.ts');
const ADMIN_CALLS = 50;

interface LoadResult {
  devices: number;
  idle: { rss: number; admin: number[] };
  parked: { rss: number; admin: number[] };
  sequential: number[];
  burst: number[];
  after: { rss: number; peak: number };
  pollErrors: number;
}

/** One run of the load generator against our server on SQLite, or on PostgreSQL when `database` is given. */
async function measure(ctx: BenchContext, database: string | undefined): Promise<LoadResult> {
  const lab = createLoopbackLab(ctx.tools, ctx.cleanup);
  let server: OurServer | undefined;
  const kind = database ? 'postgres' : 'sqlite';
  try {
    server = await startOurServer(lab, { dataDir: join(ctx.runDir, `polls-data-${kind}`), runDir: ctx.runDir, cleanup: ctx.cleanup, name: `polls-${kind}`, database });
    const small = join(ctx.runDir, 'small.img');
    writeFileSync(small, randomBytes(1024 * 1024));
    await server.addImage('small', small);
    const params = { url: `http://127.0.0.1:${SERVER_PORT}`, token: server.token, devices: ctx.sizes.pollDevices, sample: ctx.sizes.pollSample, wait: 60, serverPid: server.pid, adminCalls: ADMIN_CALLS };
    const [ip, ...exec] = lab.exec(lab.clientNs);
    const load = await run(
      ip!,
      [...exec, 'sh', '-c', 'ulimit -n 65536 2>/dev/null || true; exec "$@"', 'sh', process.execPath, '--import', 'tsx', LOAD, JSON.stringify(params)],
      { timeoutMs: 10 * 60_000, cwd: REPO },
    );
    for (const line of load.stderr.trim().split('\n')) if (line) ctx.log(`  ${kind}: ${line}`);
    return JSON.parse(load.stdout.trim().split('\n').pop()!) as LoadResult;
  } finally {
    await server?.stop();
    await lab.close();
  }
}

/**
 * Benchmark 4: many devices long-polling at once. A separate load generator parks one
 * `GET /api/device-action-poll?wait=60` per device, then the operator orders deploys for a
 * sample; order → answer latency, admin API latency and RSS with the polls parked vs idle.
 * Run on the embedded SQLite, then on a PostgreSQL of the benchmark's own (Unix socket, on this
 * machine: the shared database of several stations), and the two compared.
 */
export async function longPollBenchmark(ctx: BenchContext): Promise<Section> {
  const result = await measure(ctx, undefined);
  const postgres = launchPostgres('cm4prov');
  const removePostgres = ctx.cleanup.add('the PostgreSQL server', () => postgres.remove());
  let onPostgres: LoadResult;
  try {
    onPostgres = await measure(ctx, postgres.url);
  } finally {
    await removePostgres();
  }

  const name = `4. ${result.devices} long-polling devices, loopback`;
  const none = (benchmark: string, measure: string, ours: string): Row => ({ benchmark, measure, ours, baseline: '–', ratio: '–', goal: '–', met: '–' });
  const adminIdle = median(result.idle.admin);
  const adminParked = median(result.parked.admin);
  const pgName = `4b. the same on PostgreSQL (baseline: SQLite, same run)`;
  const p99 = (samples: number[]) => percentile(samples, 0.99);
  return {
    title: '4. Long-polling devices',
    rows: [
      none(name, `order → answer, one at a time (${result.sequential.length}): p50 / p99`, `${fmt.ms(percentile(result.sequential, 0.5))} / ${fmt.ms(p99(result.sequential))}`),
      none(name, `order → answer, burst of ${result.burst.length}: p50 / p99`, `${fmt.ms(percentile(result.burst, 0.5))} / ${fmt.ms(p99(result.burst))}`),
      ratioRow(name, 'admin `GET /api/devices` p50, polls parked vs none', fmt.ms(adminParked), `${fmt.ms(adminIdle)} (no polls)`, adminParked / adminIdle),
      ratioRow(name, 'server RSS, polls parked vs none', fmt.mb(result.parked.rss), `${fmt.mb(result.idle.rss)} (no polls)`, result.parked.rss / result.idle.rss),
      ratioRow(pgName, 'order → answer, one at a time: p99', fmt.ms(p99(onPostgres.sequential)), fmt.ms(p99(result.sequential)), p99(onPostgres.sequential) / p99(result.sequential)),
      ratioRow(pgName, `order → answer, burst of ${onPostgres.burst.length}: p99`, fmt.ms(p99(onPostgres.burst)), fmt.ms(p99(result.burst)), p99(onPostgres.burst) / p99(result.burst)),
      ratioRow(pgName, 'admin `GET /api/devices` p50, polls parked', fmt.ms(median(onPostgres.parked.admin)), fmt.ms(adminParked), median(onPostgres.parked.admin) / adminParked),
      ratioRow(pgName, 'server RSS, polls parked', fmt.mb(onPostgres.parked.rss), fmt.mb(result.parked.rss), onPostgres.parked.rss / result.parked.rss),
    ],
    details: [
      `A load generator (Node, http.Agent without a socket limit) registers ${result.devices} devices, then parks one \`GET /api/device-action-poll?mac=…&wait=60\` per device. Deploys are ordered through the admin API for ${result.sequential.length} devices one at a time (next order after the answer), then for ${result.burst.length} others at once; latency = from sending the order to the device's poll answer. Admin latency: ${ADMIN_CALLS} sequential \`GET /api/devices\` (each a new connection, the first page of ${result.devices} devices), first before any poll, then with all polls parked.`,
      `SQLite: admin GET /api/devices: no polls p50 ${fmt.ms(adminIdle)}, p99 ${fmt.ms(percentile(result.idle.admin, 0.99))}; polls parked p50 ${fmt.ms(adminParked)}, p99 ${fmt.ms(percentile(result.parked.admin, 0.99))}. Server RSS after the orders ${fmt.mb(result.after.rss)}, peak (VmHWM) ${fmt.mb(result.after.peak)}. Poll errors: ${result.pollErrors}.`,
      `PostgreSQL (its own server on this machine, Unix socket, started by the benchmark): order → answer one at a time p50 ${fmt.ms(percentile(onPostgres.sequential, 0.5))}, burst p50 ${fmt.ms(percentile(onPostgres.burst, 0.5))}; admin GET /api/devices parked p50 ${fmt.ms(median(onPostgres.parked.admin))}; server RSS peak ${fmt.mb(onPostgres.after.peak)} (the PostgreSQL server's own memory is not counted). Poll errors: ${onPostgres.pollErrors}.`,
      'No goal was set for this benchmark: it shows the latencies, that the server stays responsive, and what PostgreSQL costs beside SQLite.',
    ],
  };
}
