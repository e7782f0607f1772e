import { mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import type { BenchImage } from '../lib/image.js';
import { createLinkLab, serverTxBytes, type Lab } from '../lib/netns.js';
import { startNginx, NGINX_PORT, type Nginx } from '../lib/nginx.js';
import { SERVER_PORT, startOurServer, type OurServer } from '../lib/our-server.js';
import { dropCaches, run, sleep } from '../lib/proc.js';
import { ratioRow, type Section } from '../lib/report.js';
import { withTargets } from '../lib/targets.js';
import { fmt, median, rotate } from '../lib/stats.js';
import { launchPostgres } from '../../test/helpers/postgres.js';

const STEP_TIMEOUT_MS = 15 * 60_000;
const POLL_MS = 50;

interface CopyRun {
  /** Bytes A sent over the link (its veth end's tx counter) from B's start to its copy complete. */
  wireBytes: number;
  /** From the first sight of B's copy fetching to its copy complete (checked), seconds. */
  fetchSeconds: number;
  /** From station B's start to its copy complete, seconds. */
  seconds: number;
  /** Of which B took this long to answer its first request. */
  startSeconds: number;
}

type Runs = { ours: CopyRun[]; bmaptool: Array<{ seconds: number; wireBytes: number }> };

/**
 * Image copy between stations (issue 15): station A holds an image; station B, on the other end
 * of a 1 Gbit/s link and sharing A's PostgreSQL, starts with an empty data folder and fetches its
 * own copy (zstd chunks, each checked, then the whole file's sha256). Baseline: `bmaptool copy`
 * of the same image from nginx on A's side over the same link (its ranges checked against the bmap).
 */
export async function stationCopyBenchmark(ctx: BenchContext): Promise<Section> {
  const image = await ctx.image();
  ctx.log('copies: station B fetches an image from station A over 1 Gbit/s');
  const lab = createLinkLab(ctx.tools, ctx.cleanup, { rate: '1gbit', clientMac: 'dc:a6:32:be:0e:01' });
  const postgres = launchPostgres('cm4prov');
  const removePostgres = ctx.cleanup.add('the PostgreSQL server', () => postgres.remove());
  let runs: Runs;
  try {
    runs = await copiesIn(ctx, lab, image, postgres.url);
  } finally {
    await lab.close();
    await removePostgres();
  }
  const [fetch, whole, theirs] = [median(runs.ours.map((r) => r.fetchSeconds)), median(runs.ours.map((r) => r.seconds)), median(runs.bmaptool.map((r) => r.seconds))];
  const [ourWire, theirWire] = [median(runs.ours.map((r) => r.wireBytes)), median(runs.bmaptool.map((r) => r.wireBytes))];
  const name = `copies: ${fmt.size(image.bytes)} ext4 image (${fmt.mb(image.mappedBytes)} mapped) from station A to station B, 1 Gbit/s`;
  return {
    title: '6. Image copy between stations',
    rows: [
      ratioRow(name, 'fetch to a checked copy vs bmaptool', fmt.seconds(fetch), `${fmt.seconds(theirs)} (bmaptool copy)`, fetch / theirs),
      ratioRow(name, "from B's start to its checked copy vs bmaptool", fmt.seconds(whole), `${fmt.seconds(theirs)} (bmaptool copy)`, whole / theirs),
      ratioRow(name, 'bytes on the wire (A → B)', fmt.mb(ourWire), `${fmt.mb(theirWire)} (bmaptool copy)`, ourWire / theirWire),
    ],
    details: [
      `Lab: ${lab.description}; station A (\`cm4prov serve --database postgres://… --station line-a --station-url http://${lab.serverAddress}:${SERVER_PORT}\`) and nginx in one namespace, station B in the other; PostgreSQL on this machine (its own server, Unix socket, started by the benchmark). The image is added on A with \`cm4prov image add\` and A is idle (its chunk cache built) before anything is timed.`,
      `Ours: every run starts a fresh station B (a new name and an empty data folder) after \`sync; echo 3 > /proc/sys/vm/drop_caches\`; A's \`GET /api/images/NAME\`, polled every ${POLL_MS} ms from before B starts, shows B's copy fetching, then complete (B fetched A's zstd chunk stream, checked each chunk's sha256, wrote the image sparse and its own chunk cache, then checked the whole file's sha256 before putting it in place). The fetch is timed from the first poll that shows it fetching to the first that shows it complete; the second row from B's start, which took ${fmt.list(runs.ours.map((r) => r.startSeconds), fmt.seconds)} to its first answer. Baseline: \`bmaptool copy --bmap IMG.bmap http://A/IMG.img TARGET\` in B's namespace, after the same cache drop (its mapped ranges checked against the bmap's checksums; no whole-file check). The order of the two rotates between repetitions.`,
      `ours: fetch ${fmt.list(runs.ours.map((r) => r.fetchSeconds), fmt.seconds)}, from B's start ${fmt.list(runs.ours.map((r) => r.seconds), fmt.seconds)}, on the wire ${fmt.list(runs.ours.map((r) => r.wireBytes), fmt.mb)}; bmaptool: ${fmt.list(runs.bmaptool.map((r) => r.seconds), fmt.seconds)}, on the wire ${fmt.list(runs.bmaptool.map((r) => r.wireBytes), fmt.mb)}. Bytes on the wire: tx bytes of the veth's end on A's side (payload, headers, B's polls of PostgreSQL go over its Unix socket, not the link).`,
    ],
  };
}

async function copiesIn(ctx: BenchContext, lab: Lab, image: BenchImage, database: string): Promise<Runs> {
  const runDir = join(ctx.runDir, 'copies');
  mkdirSync(runDir, { recursive: true });
  let a: OurServer | undefined;
  let nginx: Nginx | undefined;
  try {
    a = await startOurServer(lab, { dataDir: join(runDir, 'line-a'), runDir, cleanup: ctx.cleanup, name: 'line-a', database, stationUrl: `http://${lab.serverAddress}:${SERVER_PORT}` });
    const importSeconds = await a.addImage('bench', image.path);
    ctx.log(`  image added on station A and A idle again after ${importSeconds.toFixed(0)} s`);
    nginx = await startNginx(lab, { nginx: ctx.tools.nginx, root: dirname(image.path), runDir, probe: basename(image.path), cleanup: ctx.cleanup });
    const imageUrl = `http://${lab.serverAddress}:${NGINX_PORT}/${basename(image.path)}`;
    const runs: Runs = { ours: [], bmaptool: [] };
    const contenders: [keyof Runs, (rep: number) => Promise<void>][] = [
      ['ours', async (rep) => void runs.ours.push(await copyToNewStation(ctx, lab, a!, database, runDir, `line-b${rep}`))],
      ['bmaptool', async () => void runs.bmaptool.push(await bmaptoolCopy(ctx, lab, image, imageUrl, join(runDir, 'target.img')))],
    ];
    for (let rep = 1; rep <= ctx.options.repeat; rep++) {
      for (const [, measure] of rotate(contenders, rep - 1)) {
        await a.settle();
        await measure(rep);
      }
      ctx.log(`  run ${rep}/${ctx.options.repeat}: ours fetch ${fmt.seconds(runs.ours.at(-1)!.fetchSeconds)} (${fmt.seconds(runs.ours.at(-1)!.seconds)} from its start), bmaptool ${fmt.seconds(runs.bmaptool.at(-1)!.seconds)}`);
    }
    return runs;
  } finally {
    await nginx?.stop();
    await a?.stop();
  }
}

async function copyToNewStation(ctx: BenchContext, lab: Lab, a: OurServer, database: string, runDir: string, name: string): Promise<CopyRun> {
  const dataDir = join(runDir, name);
  await dropCaches(ctx.disk);
  const wireBefore = serverTxBytes(ctx.tools, lab);
  const began = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - began) / 1e9;
  // Watched through A's API from before B starts: when B's copy row first says fetching, and when complete.
  let fetching: number | undefined;
  let stop = false;
  const watched = (async () => {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!stop) {
      const { copies } = (await a.admin('GET', '/api/images/bench')) as { copies: { station: string; state: string; error: string | null }[] };
      const copy = copies.find((entry) => entry.station === name);
      if (copy?.state === 'fetching') fetching ??= since();
      if (copy?.state === 'complete') return since();
      if (copy?.state === 'failed') throw new Error(`station ${name}'s copy failed: ${copy.error}`);
      if (Date.now() > deadline) throw new Error(`station ${name}'s copy not complete after ${STEP_TIMEOUT_MS / 60_000} min (${copy?.state ?? 'not begun'})`);
      await sleep(POLL_MS);
    }
    throw new Error('stopped');
  })();
  let b: OurServer | undefined;
  try {
    b = await startOurServer(lab, {
      dataDir,
      runDir,
      cleanup: ctx.cleanup,
      name,
      database,
      namespace: lab.clientNs,
      address: lab.clientAddress,
      stationUrl: `http://${lab.clientAddress}:${SERVER_PORT}`,
    });
    const startSeconds = since();
    const seconds = await watched;
    if (fetching === undefined) throw new Error(`station ${name}'s copy was never seen fetching: poll faster than ${POLL_MS} ms`);
    return { fetchSeconds: seconds - fetching, seconds, startSeconds, wireBytes: serverTxBytes(ctx.tools, lab) - wireBefore };
  } finally {
    stop = true;
    await watched.catch(() => undefined);
    await b?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function bmaptoolCopy(ctx: BenchContext, lab: Lab, image: BenchImage, url: string, target: string): Promise<{ seconds: number; wireBytes: number }> {
  return withTargets([target], image.bytes, async () => {
    const [ip, ...exec] = lab.exec(lab.clientNs);
    await dropCaches(ctx.disk);
    const wireBefore = serverTxBytes(ctx.tools, lab);
    const result = await run(ip!, [...exec, ctx.tools.bmaptool, 'copy', '--bmap', image.bmap, url, target], { timeoutMs: STEP_TIMEOUT_MS });
    return { seconds: result.seconds, wireBytes: serverTxBytes(ctx.tools, lab) - wireBefore };
  });
}
