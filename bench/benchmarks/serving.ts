import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { createLoopbackLab, type Lab } from '../lib/netns.js';
import { NGINX_PORT, startNginx } from '../lib/nginx.js';
import { registerDevice, runningJob, startOurServer, type OurServer } from '../lib/our-server.js';
import { cpuSeconds, run } from '../lib/proc.js';
import { ratioRow, type Section } from '../lib/report.js';
import { fmt, median, MIB, rotate } from '../lib/stats.js';

const MAC = 'dc:a6:32:be:0c:02';
const CONCURRENCY = [1, 8];

/** N curl clients at once, timed inside the namespace from before the first start to after the last exit. */
const CLIENTS_SCRIPT = `
n=$1 url=$2 pids=''
start=$(date +%s%N)
i=0
while [ "$i" -lt "$n" ]; do curl -sS --fail -o /dev/null -w '%{size_download}\\n' "$url" & pids="$pids $!"; i=$((i + 1)); done
failed=0
for pid in $pids; do wait "$pid" || failed=1; done
end=$(date +%s%N)
echo "elapsed $start $end"
exit $failed
`;

interface Sample {
  rate: number;
  cpuPerGb: number;
}

/**
 * Benchmark 2: the same image file served to 1 and 8 concurrent curl clients, by our server
 * (a deploy job's image URL) and by nginx, from a warm page cache, on loopback.
 */
export async function servingBenchmark(ctx: BenchContext): Promise<Section> {
  const image = await ctx.image();
  const lab = createLoopbackLab(ctx.tools, ctx.cleanup);
  const samples: Record<string, { ours: Sample[]; nginx: Sample[] }> = {};
  let server: OurServer | undefined;
  let stopNginx: (() => Promise<void>) | undefined;
  try {
    server = await startOurServer(lab, { dataDir: ctx.libraryDataDir, runDir: ctx.runDir, cleanup: ctx.cleanup, name: 'serving-server' });
    const importSeconds = await server.addImage('bench', image.path);
    if (importSeconds) ctx.log(`  image added to the library and the server idle again after ${importSeconds.toFixed(0)} s`);
    await registerDevice(server, MAC, image.bytes + 16 * MIB);
    const { order } = await runningJob(server, MAC, 'deploy');
    // nginx serves the very file our server sends (its library copy), so both read the same pages.
    const imagesDir = join(ctx.libraryDataDir, 'images');
    const file = readdirSync(imagesDir).find((entry) => entry.endsWith('.img') && statSync(join(imagesDir, entry)).size === image.bytes);
    if (!file) throw new Error(`no ${image.bytes}-byte image in ${imagesDir}`);
    const nginx = await startNginx(lab, { nginx: ctx.tools.nginx, root: imagesDir, runDir: ctx.runDir, probe: file, cleanup: ctx.cleanup });
    stopNginx = nginx.stop;
    await run('dd', [`if=${join(imagesDir, file)}`, 'of=/dev/null', 'bs=4M'], { timeoutMs: 600_000 });

    const ours = { url: order.url!, cpu: () => cpuSeconds(server!.pid) };
    const theirs = { url: `http://127.0.0.1:${NGINX_PORT}/${basename(file)}`, cpu: nginx.cpuSeconds };
    for (const clients of CONCURRENCY) {
      const entry = (samples[clients] = { ours: [] as Sample[], nginx: [] as Sample[] });
      for (let rep = 1; rep <= ctx.options.repeat; rep++) {
        for (const key of rotate(['ours', 'nginx'] as const, rep - 1)) {
          await server.settle();
          entry[key].push(await download(lab, key === 'ours' ? ours : theirs, clients, image.bytes));
        }
        ctx.log(`  ${clients} client(s), run ${rep}/${ctx.options.repeat}: ours ${fmt.rate(entry.ours.at(-1)!.rate)}, nginx ${fmt.rate(entry.nginx.at(-1)!.rate)}`);
      }
    }
  } finally {
    await stopNginx?.();
    await server?.stop();
    await lab.close();
  }

  const section: Section = { title: '2. Image serving', rows: [], details: [] };
  const name = `2. image serving, ${fmt.size(image.bytes)} file, loopback`;
  for (const clients of CONCURRENCY) {
    const { ours, nginx } = samples[clients]!;
    const rate = { ours: median(ours.map((s) => s.rate)), nginx: median(nginx.map((s) => s.rate)) };
    const cpu = { ours: median(ours.map((s) => s.cpuPerGb)), nginx: median(nginx.map((s) => s.cpuPerGb)) };
    const label = `${clients} client${clients > 1 ? 's' : ''}`;
    section.rows.push(
      ratioRow(name, `${label}: throughput (aggregate)`, fmt.rate(rate.ours), `${fmt.rate(rate.nginx)} (nginx)`, rate.ours / rate.nginx, { kind: 'min', value: 0.9 }),
      ratioRow(name, `${label}: server CPU per GB`, `${cpu.ours.toFixed(2)} s`, `${cpu.nginx.toFixed(2)} s (nginx)`, cpu.ours / cpu.nginx),
    );
    section.details.push(
      `${label}: ours ${fmt.list(ours.map((s) => s.rate), fmt.rate)} (${fmt.list(ours.map((s) => s.cpuPerGb), (v) => `${v.toFixed(2)} s/GB`)}); nginx ${fmt.list(nginx.map((s) => s.rate), fmt.rate)} (${fmt.list(nginx.map((s) => s.cpuPerGb), (v) => `${v.toFixed(2)} s/GB`)})`,
    );
  }
  section.details.unshift(
    'Ours: `GET /api/device-jobs/:job/image?token=…` of a running deploy job; nginx (Debian, sendfile on, one worker per core) serving the same file of the server\'s library, page cache warm. Each client is `curl -o /dev/null`; throughput = all bytes ÷ time from the first start to the last exit. CPU = utime + stime of the server process (nginx: master + workers) per GB sent.',
  );
  return section;
}

async function download(lab: Lab, server: { url: string; cpu: () => number }, clients: number, bytes: number): Promise<Sample> {
  const [ip, ...exec] = lab.exec(lab.clientNs);
  const before = server.cpu();
  const result = await run(ip!, [...exec, 'sh', '-c', CLIENTS_SCRIPT, 'sh', String(clients), server.url], { timeoutMs: 15 * 60_000 });
  const cpu = server.cpu() - before;
  const lines = result.stdout.trim().split('\n');
  const [, start, end] = lines.pop()!.split(' ');
  const sizes = lines.map(Number);
  if (sizes.length !== clients || sizes.some((size) => size !== bytes)) throw new Error(`a client got ${sizes.join(', ')} bytes, not ${bytes}`);
  const total = bytes * clients;
  return { rate: total / ((Number(end) - Number(start)) / 1e9), cpuPerGb: cpu / (total / 1e9) };
}
