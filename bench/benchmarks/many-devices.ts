import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { createLinkLab, serverTxBytes, type Lab } from '../lib/netns.js';
import { startNginx, NGINX_PORT, type Nginx } from '../lib/nginx.js';
import { REPO, startOurServer, type OurServer } from '../lib/our-server.js';
import { piOsImage, type PiOsImage } from '../lib/pi-os-image.js';
import { cpuSeconds, dropCaches, killGroup, run, sleep, startProcess, waitForExit } from '../lib/proc.js';
import { ratioRow, type Section } from '../lib/report.js';
import { withTargets } from '../lib/targets.js';
import { fmt, median, percentile, rotate } from '../lib/stats.js';

const CLIENT = join(REPO, 'device', 'provisioning-client.sh');
const STEP_TIMEOUT_MS = 15 * 60_000;
const JOB_POLL_MS = 100;
const GOAL = 0.35;

/** One contender's run: all devices started together. */
interface Round {
  /** From the start (the orders, or the bmaptool processes) to the last device done, seconds. */
  wall: number;
  /** Per device, from the start to that device done, seconds. */
  devices: number[];
  /** Server → devices bytes on the veth (its server end's tx counter). */
  wireBytes: number;
  /** CPU seconds of the server (our node process; nginx's master and workers). */
  cpu: number;
}

type Rounds = { ours: Round[]; bmaptool: Round[] };

const macOf = (index: number) => `dc:a6:32:be:0d:${(index + 1).toString(16).padStart(2, '0')}`;

/**
 * Many devices at once: N real clients in one namespace deploy one Raspberry Pi OS-shaped image
 * over a shared 1 Gbit/s link, ordered together through the admin API, against N concurrent
 * `bmaptool copy` from nginx over the same link. Wall time to all done, per-device times, bytes on
 * the wire and server CPU for both.
 */
export async function manyDevicesBenchmark(ctx: BenchContext): Promise<Section> {
  const image = await piOsImage(ctx.cacheDir, ctx.tools, ctx.sizes.piOsImageBytes, ctx.sizes.piOsBootBytes, ctx.log);
  const devices = ctx.options.devices;
  ctx.log(`many: ${devices} devices at once over 1 Gbit/s`);
  const lab = createLinkLab(ctx.tools, ctx.cleanup, { rate: '1gbit', clientMac: macOf(0) });
  const rounds = await manyIn(ctx, lab, image, devices).finally(() => lab.close());

  const med = (key: keyof Rounds, pick: (round: Round) => number) => median(rounds[key].map(pick));
  const p50 = (round: Round) => percentile(round.devices, 0.5);
  const p95 = (round: Round) => percentile(round.devices, 0.95);
  const base = `${devices}× bmaptool copy`;
  const name = `many: ${devices} devices at once, ${fmt.size(image.bytes)} Pi OS-shaped image (${fmt.mb(image.mappedBytes)} mapped), 1 Gbit/s`;
  const row = (measure: string, pick: (round: Round) => number, show: (value: number) => string, goal?: number) => {
    const [ours, theirs] = [med('ours', pick), med('bmaptool', pick)];
    return ratioRow(name, measure, show(ours), `${show(theirs)} (${base})`, ours / theirs, goal === undefined ? undefined : { kind: 'max', value: goal });
  };
  const cpu = (seconds: number) => `${seconds.toFixed(seconds < 10 ? 2 : 1)} CPU s`;
  const list = (key: keyof Rounds) =>
    rounds[key].map((round) => `wall ${fmt.seconds(round.wall)} (devices ${fmt.list(round.devices, fmt.seconds)}), ${fmt.mb(round.wireBytes)} on the wire, ${cpu(round.cpu)}`).join('; ');
  return {
    title: '5. Many devices at once',
    rows: [
      row(`wall time to all ok vs ${devices}× bmaptool`, (round) => round.wall, fmt.seconds, GOAL),
      row('time per device: p50', p50, fmt.seconds),
      row('time per device: p95', p95, fmt.seconds),
      row('bytes on the wire (server → devices)', (round) => round.wireBytes, fmt.mb),
      row('server CPU during the run', (round) => round.cpu, cpu),
    ],
    details: [
      `Image: ${describeImage(image)}`,
      `Lab: ${lab.description}; the server (ours and nginx) in one namespace, all ${devices} devices in the other (one address, told apart by MAC). Every run: \`sync; echo 3 > /proc/sys/vm/drop_caches\`, a wait for the disk to go idle, a fresh sparse target file per device (image size + 16 MiB); the order of the two rotates between repetitions. Ours: the image added with \`cm4prov image add\`, ${devices} × \`busybox sh device/provisioning-client.sh\` (PATH: busybox applets, curl${ctx.tools.zstd ? ', zstd' : ''}, cm4prov-io built for this machine) waiting for the operator, then all ${devices} deploys ordered at once (concurrent \`POST /api/devices/MAC/deploy\`), each job polled every ${JOB_POLL_MS} ms until \`ok\` (read-back included); every client exits 0. Baseline: ${devices} × \`bmaptool copy --bmap IMG.bmap http://…/IMG.img TARGET\` from nginx, started together, each exits 0 (over http bmaptool reads the image as one stream up to its last mapped block, skipping unmapped ranges by reading them: those cross the wire too). Per-device time: from the orders (the start) to that device's ok (its exit); p95 of ${devices} is the slowest device. Bytes on the wire: tx bytes of the veth's server end (payload, headers, polls). Server CPU: user + system seconds of the \`cm4prov serve\` node process, or of nginx's master and workers.`,
      `ours: ${list('ours')}`,
      `bmaptool: ${list('bmaptool')}`,
    ],
  };
}

function describeImage(image: PiOsImage) {
  return (
    `${fmt.size(image.bytes)} disk, MBR (\`sfdisk\`, disk id 0x${image.diskId}): partition 1 FAT32 (type c) at ${fmt.size(image.boot.offset)}, ${fmt.size(image.boot.bytes)}, ` +
    `built with \`mkfs.vfat -F 32 -n bootfs\` and filled with \`mcopy\` (cmdline.txt with root=PARTUUID=${image.diskId}-02, config.txt, ${image.boot.files - 2} host binaries as kernels and overlays/*.dtbo, ${fmt.mb(image.boot.fileBytes)}); ` +
    `partition 2 Linux (type 83) ${fmt.size(image.root.bytes)} ext4 built with \`mke2fs -t ext4 -d\` from ${image.root.files} files (${fmt.mb(image.root.fileBytes)}) copied from /usr/lib and /usr/share, ${image.root.usedPercent.toFixed(0)} % of its blocks used; ` +
    `each copied in at its offset with \`dd conv=notrunc,sparse\`; bmap (\`bmaptool create\`): ${fmt.mb(image.mappedBytes)} mapped (${((100 * image.mappedBytes) / image.bytes).toFixed(1)} %).`
  );
}

async function manyIn(ctx: BenchContext, lab: Lab, image: PiOsImage, devices: number): Promise<Rounds> {
  const runDir = join(ctx.runDir, 'many');
  mkdirSync(runDir, { recursive: true });
  let server: OurServer | undefined;
  let nginx: Nginx | undefined;
  try {
    server = await startOurServer(lab, { dataDir: join(runDir, 'data'), runDir, cleanup: ctx.cleanup, name: 'many-server' });
    checkIsNode(server.pid);
    const importSeconds = await server.addImage('pios', image.path);
    if (importSeconds) ctx.log(`  image added to the library and the server idle again after ${importSeconds.toFixed(0)} s`);
    nginx = await startNginx(lab, { nginx: ctx.tools.nginx, root: dirname(image.path), runDir, probe: basename(image.path), cleanup: ctx.cleanup });
    const imageUrl = `http://${lab.serverAddress}:${NGINX_PORT}/${basename(image.path)}`;
    const targets = Array.from({ length: devices }, (_, index) => join(runDir, `target-${index + 1}.img`));
    const rounds: Rounds = { ours: [], bmaptool: [] };
    const contenders: [keyof Rounds, () => Promise<Round>][] = [
      ['ours', () => deployOurs(ctx, lab, server!, targets)],
      ['bmaptool', () => bmaptoolCopies(ctx, lab, nginx!, image, imageUrl, targets)],
    ];
    for (let rep = 1; rep <= ctx.options.repeat; rep++) {
      for (const [key, measure] of rotate(contenders, rep - 1)) {
        await server.settle();
        rounds[key].push(await withTargets(targets, image.bytes, measure));
      }
      const last = (key: keyof Rounds) => rounds[key].at(-1)!;
      ctx.log(`  run ${rep}/${ctx.options.repeat}: ours ${fmt.seconds(last('ours').wall)} (${fmt.mb(last('ours').wireBytes)}), bmaptool ${fmt.seconds(last('bmaptool').wall)} (${fmt.mb(last('bmaptool').wireBytes)})`);
    }
    return rounds;
  } finally {
    await nginx?.stop();
    await server?.stop();
  }
}

/**
 * The CPU counted must be node's: `ip netns exec` and the `sh -c 'exec "$@"'` in front of it
 * both exec in place, so the PID we spawned is node's by the time the server answers.
 */
function checkIsNode(pid: number) {
  const command = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (command !== 'node') throw new Error(`the server's PID ${pid} is ${command}, not node: its CPU would not be the server's`);
}


/** What a run costs the server side, from a reading taken before it. */
function meter(ctx: BenchContext, lab: Lab, cpu: () => number) {
  const [wire, cpuBefore] = [serverTxBytes(ctx.tools, lab), cpu()];
  return () => ({ wireBytes: serverTxBytes(ctx.tools, lab) - wire, cpu: cpu() - cpuBefore });
}

async function bmaptoolCopies(ctx: BenchContext, lab: Lab, nginx: Nginx, image: PiOsImage, url: string, targets: string[]): Promise<Round> {
  const [ip, ...exec] = lab.exec(lab.clientNs);
  await dropCaches(ctx.disk);
  const measured = meter(ctx, lab, nginx.cpuSeconds);
  const began = process.hrtime.bigint();
  const results = await Promise.all(targets.map((target) => run(ip!, [...exec, ctx.tools.bmaptool, 'copy', '--bmap', image.bmap, url, target], { timeoutMs: STEP_TIMEOUT_MS })));
  const wall = Number(process.hrtime.bigint() - began) / 1e9;
  return { wall, devices: results.map((result) => result.seconds), ...measured() };
}

interface Client {
  child: ChildProcess;
  output(): string;
}

/** A device's client, started as deploy.ts starts one: it registers and waits for the operator. */
function startClient(ctx: BenchContext, lab: Lab, server: OurServer, target: string, mac: string): Client {
  const [ip, ...exec] = lab.exec(lab.clientNs);
  const child = startProcess(ip!, [...exec, ctx.tools.busybox, 'sh', CLIENT], {
    env: { PATH: ctx.deviceBin, PROVISIONING_SERVER: server.url, TARGET_DEVICE: target, DEVICE_MAC: mac, PROVISIONING_CMDLINE: '/dev/null', POLL_WAIT: '30', POLL_INTERVAL: '1' },
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  return { child, output: () => output };
}

async function untilWaiting(client: Client, mac: string) {
  const deadline = Date.now() + 60_000;
  while (!/waiting for the operator/.test(client.output())) {
    if (client.child.exitCode !== null || Date.now() > deadline) throw new Error(`the client of ${mac} did not start waiting: ${client.output().slice(-600)}`);
    await sleep(20);
  }
}

/** Polls a job until it leaves queued/running; returns the seconds from `began`, or throws unless it is ok. */
async function untilDone(server: OurServer, id: number, began: bigint, client: Client, mac: string) {
  const end = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const job = (await server.admin('GET', `/api/jobs/${id}`)) as { state: string; error: string | null };
    if (!['queued', 'running'].includes(job.state)) {
      const seconds = Number(process.hrtime.bigint() - began) / 1e9;
      if (job.state !== 'ok') throw new Error(`deploy job ${id} (${mac}) ended ${job.state}: ${job.error}; the client printed: ${client.output().slice(-600)}`);
      return seconds;
    }
    if (Date.now() > end) throw new Error(`job ${id} (${mac}) still ${job.state} after ${STEP_TIMEOUT_MS / 60_000} min`);
    await sleep(JOB_POLL_MS);
  }
}

/** Ours as an operator sees it: all clients wait, all orders go in at once, every job ends `ok`. */
async function deployOurs(ctx: BenchContext, lab: Lab, server: OurServer, targets: string[]): Promise<Round> {
  const macs = targets.map((_, index) => macOf(index));
  const clients = targets.map((target, index) => startClient(ctx, lab, server, target, macs[index]!));
  try {
    await Promise.all(clients.map((client, index) => untilWaiting(client, macs[index]!)));
    await dropCaches(ctx.disk);
    const measured = meter(ctx, lab, () => cpuSeconds(server.pid));
    const began = process.hrtime.bigint();
    const jobs = (await Promise.all(macs.map((mac) => server.admin('POST', `/api/devices/${mac}/deploy`, {})))) as { id: number }[];
    const devices = await Promise.all(jobs.map((job, index) => untilDone(server, job.id, began, clients[index]!, macs[index]!)));
    const wall = Math.max(...devices);
    const codes = await Promise.all(clients.map((client) => waitForExit(client.child, 60_000)));
    codes.forEach((code, index) => {
      if (code !== 0) throw new Error(`the client of ${macs[index]} exited with ${code} after an ok job: ${clients[index]!.output().slice(-600)}`);
    });
    return { wall, devices, ...measured() };
  } finally {
    for (const client of clients) killGroup(client.child);
  }
}
