import { basename, dirname, join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import type { BenchImage } from '../lib/image.js';
import { createLinkLab, createLoopbackLab, type Lab } from '../lib/netns.js';
import { startNginx, NGINX_PORT } from '../lib/nginx.js';
import { REPO, startOurServer, type OurServer } from '../lib/our-server.js';
import { dropCaches, killGroup, run, sleep, startProcess, waitForExit } from '../lib/proc.js';
import { ratioRow, type Section } from '../lib/report.js';
import { withTargets } from '../lib/targets.js';
import { fmt, median, rotate } from '../lib/stats.js';

const CLIENT = join(REPO, 'device', 'provisioning-client.sh');
const MAC = 'dc:a6:32:be:0c:01';
const STEP_TIMEOUT_MS = 15 * 60_000;
const MODES = [
  { key: '1gbit', title: '1 Gbit/s link', goals: { bmaptool: 0.5, curlDd: 0.15 } },
  { key: 'loopback', title: 'loopback', goals: { bmaptool: 1.0, curlDd: undefined } },
] as const;

type Times = { ours: number[]; bmaptool: number[]; curlDd: number[] };

/**
 * Benchmark 1: deploy of an ext4 image onto a file target, ours (server + the real device client,
 * a black box: order through the admin API, stop the clock when the job is `ok`, which
 * includes the client's read-back) against bmaptool copy and curl | dd + read-back.
 */
export async function deployBenchmark(ctx: BenchContext): Promise<Section> {
  const image = await ctx.image();
  const section: Section = { title: '1. Deploy', rows: [], details: [] };
  const name = `1. deploy ${fmt.size(image.bytes)} ext4, ${((100 * image.fileBytes) / image.bytes).toFixed(0)} % full (${((100 * image.mappedBytes) / image.bytes).toFixed(0)} % mapped)`;
  for (const mode of MODES) {
    ctx.log(`deploy over ${mode.title}`);
    const lab = mode.key === '1gbit' ? createLinkLab(ctx.tools, ctx.cleanup, { rate: '1gbit', clientMac: MAC }) : createLoopbackLab(ctx.tools, ctx.cleanup);
    const times = await deployIn(ctx, lab, image).finally(() => lab.close());
    const [ours, bmap, curlDd] = [median(times.ours), median(times.bmaptool), median(times.curlDd)];
    section.rows.push(
      ratioRow(name, `${mode.title}: time vs bmaptool`, fmt.seconds(ours), `${fmt.seconds(bmap)} (bmaptool copy)`, ours / bmap, { kind: 'max', value: mode.goals.bmaptool }),
      ratioRow(name, `${mode.title}: time vs curl | dd`, fmt.seconds(ours), `${fmt.seconds(curlDd)} (curl | dd + read-back)`, ours / curlDd, mode.goals.curlDd === undefined ? undefined : { kind: 'max', value: mode.goals.curlDd }),
    );
    section.details.push(
      `${mode.title} (${lab.description}): ours ${fmt.list(times.ours, fmt.seconds)}; bmaptool ${fmt.list(times.bmaptool, fmt.seconds)}; curl | dd ${fmt.list(times.curlDd, fmt.seconds)}`,
    );
  }
  section.details.unshift(
    `Image: ${fmt.size(image.bytes)} ext4 built with \`mke2fs -t ext4 -d\` from ${image.files} files (${fmt.mb(image.fileBytes)}) copied from /usr/lib and /usr/share; bmap: ${fmt.mb(image.mappedBytes)} mapped (${((100 * image.mappedBytes) / image.bytes).toFixed(1)} %).`,
    'Every run: `sync; echo 3 > /proc/sys/vm/drop_caches`, a wait for the disk to go idle, a fresh sparse target file of the image size + 16 MiB; the order of the three rotates from one repetition to the next. Ours: the image added with `cm4prov image add IMG --name bench --default` (IMG.bmap lies beside it), `cm4prov serve` + `busybox sh device/provisioning-client.sh` (PATH: busybox applets, curl' +
      `${ctx.tools.zstd ? ', zstd' : ''}, cm4prov-io built for this machine), timed from the admin API order to the job's state \`ok\` (includes the client's read-back sha256). bmaptool: \`bmaptool copy --bmap IMG.bmap http://…/IMG.img TARGET\` from nginx (checks the bmap's range checksums). curl | dd: \`curl -s URL | dd of=TARGET bs=4M conv=fsync\`, then \`dd if=TARGET … | sha256sum\` of the image's bytes, with the same busybox tools as the client.`,
  );
  return section;
}

async function deployIn(ctx: BenchContext, lab: Lab, image: BenchImage): Promise<Times> {
  const runDir = ctx.runDir;
  let server: OurServer | undefined;
  let stopNginx: (() => Promise<void>) | undefined;
  try {
    server = await startOurServer(lab, { dataDir: ctx.libraryDataDir, runDir, cleanup: ctx.cleanup, name: 'deploy-server' });
    const importSeconds = await server.addImage('bench', image.path);
    if (importSeconds) ctx.log(`  image added to the library and the server idle again after ${importSeconds.toFixed(0)} s`);
    stopNginx = (await startNginx(lab, { nginx: ctx.tools.nginx, root: dirname(image.path), runDir, probe: basename(image.path), cleanup: ctx.cleanup })).stop;
    const imageUrl = `http://${lab.serverAddress}:${NGINX_PORT}/${basename(image.path)}`;
    const target = join(runDir, 'target.img');
    const times: Times = { ours: [], bmaptool: [], curlDd: [] };
    const contenders: [keyof Times, () => Promise<number>][] = [
      ['ours', () => deployOurs(ctx, lab, server!, target)],
      ['bmaptool', () => timed(ctx, lab, [ctx.tools.bmaptool, 'copy', '--bmap', image.bmap, imageUrl, target], process.env)],
      ['curlDd', () => curlDd(ctx, lab, imageUrl, target, image)],
    ];
    for (let rep = 1; rep <= ctx.options.repeat; rep++) {
      for (const [key, measure] of rotate(contenders, rep - 1)) {
        // Our server must be idle first: no background work of its own runs into a measurement.
        await server.settle();
        times[key].push(await withTargets([target], image.bytes, measure));
      }
      ctx.log(`  run ${rep}/${ctx.options.repeat}: ours ${fmt.seconds(times.ours.at(-1)!)}, bmaptool ${fmt.seconds(times.bmaptool.at(-1)!)}, curl | dd ${fmt.seconds(times.curlDd.at(-1)!)}`);
    }
    return times;
  } finally {
    await stopNginx?.();
    await server?.stop();
  }
}


/** Runs a command in the client namespace after dropping the caches; returns its wall time. */
async function timed(ctx: BenchContext, lab: Lab, argv: string[], env: NodeJS.ProcessEnv) {
  const [ip, ...exec] = lab.exec(lab.clientNs);
  await dropCaches(ctx.disk);
  return (await run(ip!, [...exec, ...argv], { timeoutMs: STEP_TIMEOUT_MS, env })).seconds;
}

async function curlDd(ctx: BenchContext, lab: Lab, url: string, target: string, image: BenchImage) {
  // A cut download leaves a short target: the read-back sha256 then differs, and that fails the run.
  const script = 'curl -s --fail "$1" | dd of="$2" bs=4M conv=fsync 2>/dev/null; dd if="$2" bs=4M count="$3" iflag=count_bytes 2>/dev/null | sha256sum';
  const [ip, ...exec] = lab.exec(lab.clientNs);
  await dropCaches(ctx.disk);
  const result = await run(ip!, [...exec, ctx.tools.busybox, 'sh', '-c', script, 'sh', url, target, String(image.bytes)], { timeoutMs: STEP_TIMEOUT_MS, env: { PATH: ctx.deviceBin } });
  if (!result.stdout.startsWith(image.sha256)) throw new Error(`curl | dd read back ${result.stdout.trim()}, not the image's ${image.sha256}`);
  return result.seconds;
}

/** Ours as an operator sees it: the client waits, the order goes in, the job ends `ok`. */
async function deployOurs(ctx: BenchContext, lab: Lab, server: OurServer, target: string) {
  const [ip, ...exec] = lab.exec(lab.clientNs);
  const client = startProcess(ip!, [...exec, ctx.tools.busybox, 'sh', CLIENT], {
    env: { PATH: ctx.deviceBin, PROVISIONING_SERVER: server.url, TARGET_DEVICE: target, DEVICE_MAC: MAC, PROVISIONING_CMDLINE: '/dev/null', POLL_WAIT: '30', POLL_INTERVAL: '1' },
  });
  let output = '';
  client.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  client.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  try {
    const deadline = Date.now() + 60_000;
    while (!/waiting for the operator/.test(output)) {
      if (client.exitCode !== null || Date.now() > deadline) throw new Error(`the client did not start waiting: ${output.slice(-600)}`);
      await sleep(20);
    }
    await dropCaches(ctx.disk);
    const began = process.hrtime.bigint();
    const { id } = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
    const end = Date.now() + STEP_TIMEOUT_MS;
    let job: { state: string; error: string | null };
    for (;;) {
      job = await server.admin('GET', `/api/jobs/${id}`);
      if (!['queued', 'running'].includes(job.state)) break;
      if (Date.now() > end) throw new Error(`job ${id} still ${job.state} after ${STEP_TIMEOUT_MS / 60_000} min`);
      await sleep(50);
    }
    const seconds = Number(process.hrtime.bigint() - began) / 1e9;
    if (job.state !== 'ok') throw new Error(`deploy job ${id} ended ${job.state}: ${job.error}; the client printed: ${output.slice(-600)}`);
    const code = await waitForExit(client, 60_000);
    if (code !== 0) throw new Error(`the client exited with ${code} after an ok job: ${output.slice(-600)}`);
    return seconds;
  } finally {
    killGroup(client);
  }
}
