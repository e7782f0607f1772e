import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { createLoopbackLab } from '../lib/netns.js';
import { REPO, SERVER_PORT, startOurServer, type OurServer } from '../lib/our-server.js';
import { run } from '../lib/proc.js';
import { ratioRow, type Row, type Section } from '../lib/report.js';
import { fmt, median, percentile } from '../lib/stats.js';

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

/**
 * Benchmark 4: many devices long-polling at once. A separate load generator parks one
 * `GET /api/device-action-poll?wait=60` per device, then the operator orders deploys for a
 * sample; order → answer latency, admin API latency and RSS with the polls parked vs idle.
 */
export async function longPollBenchmark(ctx: BenchContext): Promise<Section> {
  const lab = createLoopbackLab(ctx.tools, ctx.cleanup);
  let server: OurServer | undefined;
  let result: LoadResult;
  try {
    server = await startOurServer(lab, { dataDir: join(ctx.runDir, 'polls-data'), runDir: ctx.runDir, cleanup: ctx.cleanup, name: 'polls-server' });
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
    for (const line of load.stderr.trim().split('\n')) if (line) ctx.log(`  ${line}`);
    result = JSON.parse(load.stdout.trim().split('\n').pop()!) as LoadResult;
  } finally {
    await server?.stop();
    await lab.close();
  }

  const name = `4. ${result.devices} long-polling devices, loopback`;
  const none = (benchmark: string, measure: string, ours: string): Row => ({ benchmark, measure, ours, baseline: '–', ratio: '–', goal: '–', met: '–' });
  const adminIdle = median(result.idle.admin);
  const adminParked = median(result.parked.admin);
  return {
    title: '4. Long-polling devices',
    rows: [
      none(name, `order → answer, one at a time (${result.sequential.length}): p50 / p99`, `${fmt.ms(percentile(result.sequential, 0.5))} / ${fmt.ms(percentile(result.sequential, 0.99))}`),
      none(name, `order → answer, burst of ${result.burst.length}: p50 / p99`, `${fmt.ms(percentile(result.burst, 0.5))} / ${fmt.ms(percentile(result.burst, 0.99))}`),
      ratioRow(name, 'admin `GET /api/devices` p50, polls parked vs none', fmt.ms(adminParked), `${fmt.ms(adminIdle)} (no polls)`, adminParked / adminIdle),
      ratioRow(name, 'server RSS, polls parked vs none', fmt.mb(result.parked.rss), `${fmt.mb(result.idle.rss)} (no polls)`, result.parked.rss / result.idle.rss),
    ],
    details: [
      `A load generator (Node, http.Agent without a socket limit) registers ${result.devices} devices, then parks one \`GET /api/device-action-poll?mac=…&wait=60\` per device. Deploys are ordered through the admin API for ${result.sequential.length} devices one at a time (next order after the answer), then for ${result.burst.length} others at once; latency = from sending the order to the device's poll answer. Admin latency: ${ADMIN_CALLS} sequential \`GET /api/devices\` (each a new connection, the first page of ${result.devices} devices), first before any poll, then with all polls parked.`,
      `admin GET /api/devices: no polls p50 ${fmt.ms(adminIdle)}, p99 ${fmt.ms(percentile(result.idle.admin, 0.99))}; polls parked p50 ${fmt.ms(adminParked)}, p99 ${fmt.ms(percentile(result.parked.admin, 0.99))}. Server RSS after the orders ${fmt.mb(result.after.rss)}, peak (VmHWM) ${fmt.mb(result.after.peak)}. Poll errors: ${result.pollErrors}.`,
      'No goal was set for this benchmark: it shows the latencies and that the server stays responsive.',
    ],
  };
}
