/**
 * The benchmark suite: `npm run bench -- [--only NAME] [--repeat N] [--quick] [--keep]`.
 * Runs each benchmark against its baseline in the same run, prints a markdown table with the
 * machine it ran on, and writes it to bench/results/latest.md. Needs root; see bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backupBenchmark } from './benchmarks/backup.js';
import { deployBenchmark } from './benchmarks/deploy.js';
import { longPollBenchmark } from './benchmarks/long-polls.js';
import { manyDevicesBenchmark } from './benchmarks/many-devices.js';
import { servingBenchmark } from './benchmarks/serving.js';
import { stationCopyBenchmark } from './benchmarks/station-copy.js';
import { lineBenchmark } from './line.js';
import { createCleanup, Interrupted } from './lib/cleanup.js';
import { createContext, findTools, sizesFor, type BenchContext } from './lib/context.js';
import { deviceToolsDir } from './lib/device-path.js';
import { describeMachine, loadAverage, otherCpuMeter } from './lib/machine.js';
import { leftoverNamespaces } from './lib/netns.js';
import { parseOptions, USAGE, UsageError, type BenchmarkName, type Options } from './lib/options.js';
import { REPO } from './lib/our-server.js';
import { diskOf, refuseNewProcesses, stopAllStarted } from './lib/proc.js';
import { renderReport, type Section } from './lib/report.js';
import { GIB } from './lib/stats.js';

const BENCH_DIR = join(REPO, 'bench');
const CACHE_DIR = join(BENCH_DIR, '.cache');
const RESULTS = join(BENCH_DIR, 'results', 'latest.md');

const RUNNERS: Record<BenchmarkName, (ctx: BenchContext) => Promise<Section>> = {
  deploy: deployBenchmark,
  serving: servingBenchmark,
  backup: backupBenchmark,
  polls: longPollBenchmark,
  line: lineBenchmark,
  many: manyDevicesBenchmark,
  copies: stationCopyBenchmark,
};

const started = Date.now();
const loadAtStart = loadAverage();
const otherCpu = otherCpuMeter();
const log = (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
const fail = (sentence: string, code = 2): never => {
  process.stderr.write(`bench: ${sentence}\n`);
  process.exit(code);
};

let options: Options;
try {
  options = parseOptions(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) fail(error.message);
  throw error;
}
if (options.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (process.getuid?.() !== 0) fail('needs root (network namespaces, tc and dropping the page cache): run it as root, e.g. sudo npm run bench.');
const found = findTools(options.only);
if ('missing' in found) fail(found.missing);
const { tools } = found as Exclude<typeof found, { missing: string }>;

const sizes = sizesFor(options.quick);
mkdirSync(CACHE_DIR, { recursive: true });
const needed = (options.quick ? 2 : 10) * GIB;
const free = statfsSync(CACHE_DIR).bavail * statfsSync(CACHE_DIR).bsize;
if (free < needed) fail(`needs about ${needed / GIB} GiB free under ${CACHE_DIR}, has ${(free / GIB).toFixed(1)} GiB.`);
if (Number(loadAtStart) > 1) log(`note: the machine is busy (load average ${loadAtStart}); other work skews the numbers`);
const leftovers = leftoverNamespaces(tools);
if (leftovers.length) log(`note: namespaces from an earlier, killed run are still there (${leftovers.join(', ')}); \`ip netns del NAME\` removes them`);

// Measure the server as it runs in production: the compiled dist/, fresh from these sources.
const build = spawnSync(process.execPath, [join(REPO, 'scripts', 'build.mjs')], { encoding: 'utf8' });
if (build.status !== 0) fail(`could not build dist/ (scripts/build.mjs): ${build.stderr.trim() || build.stdout.trim()}`);

const runDir = join(CACHE_DIR, `run-${process.pid}`);
const cleanup = createCleanup((line) => log(`warning: ${line}`));
let finishing: Promise<void> | undefined;
let interrupted = false;
/** Ends what this run started and removes its scratch files; the image stays with --keep. */
const finish = () =>
  (finishing ??= (async () => {
    await cleanup.runAll();
    await stopAllStarted();
    rmSync(runDir, { recursive: true, force: true });
    if (!options.keep) {
      for (const entry of readdirSync(CACHE_DIR)) if (!entry.startsWith('run-')) rmSync(join(CACHE_DIR, entry), { recursive: true, force: true });
    }
  })());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping, cleaning up (namespaces, processes, scratch files)`);
    refuseNewProcesses();
    interrupted = true;
    process.once(signal, () => process.exit(130));
    finish().finally(() => process.exit(130));
  });
}

const sections: Section[] = [];
const failures: string[] = [];
try {
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const ctx = createContext({
    options,
    sizes,
    tools,
    cleanup,
    runDir,
    cacheDir: CACHE_DIR,
    disk: diskOf(CACHE_DIR),
    deviceBin: deviceToolsDir(join(runDir, 'device-bin'), tools),
    log,
  });
  log(`benchmarks: ${options.only.join(', ')}; ${options.repeat} run(s) each${options.quick ? '; quick sizes' : ''}`);
  for (const name of options.only) {
    if (interrupted) break;
    log(`— ${name}`);
    try {
      sections.push(await RUNNERS[name](ctx));
    } catch (error) {
      if (interrupted || error instanceof Interrupted) break;
      log(`${name} failed: ${(error as Error).stack ?? error}`);
      failures.push(`${name}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  if (interrupted) throw new Interrupted();
  const machine = describeMachine(CACHE_DIR, REPO, { nginx: tools.nginx, bmaptool: tools.bmaptool, curl: tools.curl, busybox: tools.busybox, zstd: tools.zstd }, loadAtStart, otherCpu());
  const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const notes = [
    ...(options.quick ? ['**Quick run** (small sizes): a smoke test, not numbers to quote.'] : []),
    'Goals are from the issue; "–" means no goal was set. Times and latencies: lower is better; throughput: higher is better.',
    'Disk-bound numbers (deploy, backup) spread between repetitions, on a VM especially (page-cache memory the hypervisor backs lazily): every repetition is listed below its table; compare ratios within one run.',
  ];
  const report = renderReport({ date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), command, seconds: (Date.now() - started) / 1000, machine, sections, failures, notes });
  process.stdout.write(`${report}\n`);
  mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
  writeFileSync(RESULTS, report);
  log(`written to ${RESULTS}`);
} catch (error) {
  if (!(error instanceof Interrupted)) throw error;
} finally {
  await finish();
}
process.exit(interrupted ? 130 : failures.length ? 1 : 0);
