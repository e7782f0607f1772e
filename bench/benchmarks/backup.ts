import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { createLoopbackLab } from '../lib/netns.js';
import { registerDevice, runningJob, startOurServer, type OurServer } from '../lib/our-server.js';
import { dropCaches, memory, run } from '../lib/proc.js';
import { ratioRow, verdict, type Section } from '../lib/report.js';
import { fmt, MB, median, rotate } from '../lib/stats.js';

const MAC = 'dc:a6:32:be:0c:03';
const STEP_TIMEOUT_MS = 15 * 60_000;
const RSS_GOAL = 150 * MB;

/**
 * Benchmark 3: a backup's upload into our server (what the client sends: `curl -T -` with a
 * Content-Length) against `dd conv=fsync` writing the same bytes to the same disk, both read
 * from the page cache; plus the server's peak RSS.
 */
export async function backupBenchmark(ctx: BenchContext): Promise<Section> {
  const bytes = ctx.sizes.imageBytes;
  const source = join(ctx.runDir, 'backup-source.img');
  const sha256 = writeRandomFile(source, bytes);
  const lab = createLoopbackLab(ctx.tools, ctx.cleanup);
  const dataDir = join(ctx.runDir, 'backup-data');
  const times = { ours: [] as number[], dd: [] as number[] };
  let server: OurServer | undefined;
  let peak = 0;
  try {
    server = await startOurServer(lab, { dataDir, runDir: ctx.runDir, cleanup: ctx.cleanup, name: 'backup-server' });
    const live = server;
    const [ip, ...exec] = lab.exec(lab.clientNs);
    const uploadOnce = async () => {
      await registerDevice(live, MAC, bytes);
      const { id, order } = await runningJob(live, MAC, 'backup');
      await coldDiskWarmSource(source, ctx.disk);
      const upload = await run(
        ip!,
        [...exec, 'curl', '-sS', '-T', '-', '-H', `Content-Length: ${bytes}`, '-H', 'Transfer-Encoding:', '-H', 'Expect:', '-w', '\n%{http_code}', order.upload_url!],
        { timeoutMs: STEP_TIMEOUT_MS, stdinFile: source },
      );
      const [status, ...body] = upload.stdout.trim().split('\n').reverse();
      const reply = JSON.parse(body.reverse().join('\n') || '{}');
      if (status !== '200' || reply.received_bytes !== bytes) throw new Error(`the upload got HTTP ${status}: ${upload.stdout.slice(0, 300)}`);
      await finishBackup(live, id, order, sha256, bytes);
      return upload.seconds;
    };
    const ddOnce = async () => {
      const out = join(dataDir, 'dd-baseline.img');
      await coldDiskWarmSource(source, ctx.disk);
      const seconds = (await run('dd', [`if=${source}`, `of=${out}`, 'bs=4M', 'conv=fsync'], { timeoutMs: STEP_TIMEOUT_MS })).seconds;
      rmSync(out, { force: true });
      return seconds;
    };
    const contenders: ['ours' | 'dd', () => Promise<number>][] = [['ours', uploadOnce], ['dd', ddOnce]];
    for (let rep = 1; rep <= ctx.options.repeat; rep++) {
      for (const [key, measure] of rotate(contenders, rep - 1)) {
        // The server may still work on a stored backup (block map, cache): not during a measurement.
        await live.settle();
        times[key].push(await measure());
      }
      ctx.log(`  run ${rep}/${ctx.options.repeat}: ours ${fmt.rate(bytes / times.ours.at(-1)!)}, dd ${fmt.rate(bytes / times.dd.at(-1)!)}`);
    }
    peak = memory(server.pid).peak;
  } finally {
    await server?.stop();
    await lab.close();
  }

  const rate = { ours: bytes / median(times.ours), dd: bytes / median(times.dd) };
  const name = `3. backup upload ${fmt.size(bytes)}, loopback`;
  return {
    title: '3. Backup upload',
    rows: [
      ratioRow(name, 'throughput', fmt.rate(rate.ours), `${fmt.rate(rate.dd)} (dd conv=fsync)`, rate.ours / rate.dd, { kind: 'min', value: 0.8 }),
      { benchmark: name, measure: 'server peak RSS (VmHWM)', ours: fmt.mb(peak), baseline: '–', ratio: '–', goal: `< ${fmt.mb(RSS_GOAL)}`, met: verdict(peak < RSS_GOAL) },
    ],
    details: [
      'Ours: a running backup job\'s upload URL, `curl -T - -H \'Content-Length: N\' -H \'Transfer-Encoding:\'` fed from a file of random bytes (the server hashes, writes and fsyncs it, then stores the backup); timed to curl\'s exit, i.e. the server\'s reply. dd: `dd if=IMAGE of=FILE bs=4M conv=fsync` on the same file system. Before each run: `sync`, drop caches, wait for the disk to go idle, then the source is read once into the page cache; which of the two goes first alternates.',
      `ours ${fmt.list(times.ours, fmt.seconds)}; dd ${fmt.list(times.dd, fmt.seconds)}; peak RSS is VmHWM of the server process after all runs (a fresh server).`,
    ],
  };
}

/**
 * The eMMC's bytes: random, so that neither side can skip or shrink anything (no zero runs to
 * leave as holes, nothing to compress). Returns their sha256.
 */
function writeRandomFile(path: string, bytes: number): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(16 * 1024 * 1024);
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < bytes; written += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, bytes - written));
      randomFillSync(part);
      hash.update(part);
      writeSync(fd, part);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

async function coldDiskWarmSource(source: string, disk: string | undefined) {
  await dropCaches(disk);
  await run('dd', [`if=${source}`, 'of=/dev/null', 'bs=4M'], { timeoutMs: STEP_TIMEOUT_MS });
}

/**
 * Ends the job as the client does (its sha256 in the result) if the upload alone did not, then
 * deletes the backup to free the disk.
 */
async function finishBackup(server: OurServer, id: number, order: Record<string, string>, sha256: string, bytes: number) {
  let job = await server.admin('GET', `/api/jobs/${id}`);
  if (job.state === 'running') {
    const result = new URL(order.result_url!);
    job = (await server.call('POST', `${result.pathname}${result.search}`, { json: { status: 'ok', sha256, bytes, mac: MAC } })).body;
  }
  if (job?.state !== 'ok') throw new Error(`the backup job ended ${JSON.stringify(job)}`);
  const { backups } = await server.admin('GET', '/api/backups');
  for (const backup of backups as { id: number; sha256: string }[]) {
    if (backup.sha256 !== sha256) throw new Error(`the stored backup hashes to ${backup.sha256}, not ${sha256}`);
    await server.admin('DELETE', `/api/backups/${backup.id}`);
  }
}
