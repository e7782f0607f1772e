import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { createNetbootLab, inNamespace, requireRoot, type NetbootLab } from '../helpers/netns.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startStation } from '../helpers/stations.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15: two stations, each in its own network namespace with its own device LAN
// (10.20.50.0/24 on both, as two production lines would have), sharing one PostgreSQL. The
// database listens on a Unix socket only; both namespaces reach it through the file system.

const MAC = 'dc:a6:32:00:00:01';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

test('two stations on one PostgreSQL: each sees the other; an order on A reaches a device parked on B; racing polls hand a job out once', async (t) => {
  if (!requireRoot(t)) return;
  const postgres = startTestPostgres(t);
  const [labA, labB] = [createNetbootLab(t), createNetbootLab(t)];
  const a = await startStation(t, labA, 'line-a', postgres.url);
  const b = await startStation(t, labB, 'line-b', postgres.url);

  const seen = (await a.admin('GET', '/api/stations')).body;
  assert.equal(seen.station, 'line-a');
  assert.equal(seen.database, 'postgres');
  assert.equal(seen.channel, 'connected');
  assert.deepEqual(seen.stations.map((s: { name: string; up: boolean }) => [s.name, s.up]), [['line-a', true], ['line-b', true]]);

  // A device on B's LAN, running the real client; it keeps polling B after each job.
  inNamespace(labB.deviceNs, 'ip', ['addr', 'add', '10.20.50.101/24', 'dev', 'eth0']);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 1024 * 1024);
  const client = runClient(t, { server: 'http://10.20.50.1:5000', target: emmc, mac: MAC, namespace: labB.deviceNs, env: { AFTER_JOB: 'poll' } });
  const onA = await waitFor('the device, registered on B, listed on A', async () => {
    const device = await a.admin('GET', `/api/devices/${MAC}`);
    return device.status === 200 && device.body;
  });
  assert.equal(onA.station, 'line-b', 'it belongs to the station it polls');

  // Orders placed on A's API; each answered by the poll parked on B (PostgreSQL LISTEN/NOTIFY wakes it).
  const latencies: number[] = [];
  for (let round = 0; round < 12; round++) {
    await waitFor('the device parked on B', async () => (await b.admin('GET', '/api/stations')).body.parked_polls === 1, 30_000, 20);
    const ordered = Date.now();
    const job = await a.admin('POST', `/api/devices/${MAC}/backup`);
    assert.equal(job.status, 201, JSON.stringify(job.body));
    const done = await waitFor(`backup ${round}`, async () => {
      const now = (await a.admin('GET', `/api/jobs/${job.body.id}`)).body;
      return now.state === 'ok' && now;
    });
    assert.equal(done.station, 'line-b', 'served by the station the device polls');
    latencies.push(Date.parse(done.started_at) - ordered);
  }
  latencies.sort((x, y) => x - y);
  t.diagnostic(`order on A → job handed out on B, ${latencies.length} orders: p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms`);
  assert.ok(latencies.every((ms) => ms >= 0), `${latencies}`);
  client.kill();

  // The same device asking both stations at the same moment for its queued job: one gets it.
  inNamespace(labA.deviceNs, 'ip', ['addr', 'add', '10.20.50.101/24', 'dev', 'eth0']);
  const ask = (lab: NetbootLab) =>
    JSON.parse(inNamespace(lab.deviceNs, 'curl', ['-sS', '--max-time', '20', `http://10.20.50.1:5000/api/device-action-poll?mac=${MAC}&wait=0&features=zstd`]));
  for (let round = 0; round < 8; round++) {
    const job = await a.admin('POST', `/api/devices/${MAC}/backup`);
    assert.equal(job.status, 201, JSON.stringify(job.body));
    const answers = await Promise.all([labA, labB].map(async (lab) => ask(lab)));
    const given = answers.filter((answer) => answer.action === 'backup');
    assert.equal(given.length, 1, `round ${round}: ${JSON.stringify(answers)}`);
    // The loser's poll may come after the hand-out, and then reads as the device having restarted
    // (the job fails as abandoned, as on one station); either way it was handed out once.
    const taken = (await b.admin('GET', `/api/jobs/${job.body.id}`)).body;
    assert.equal(taken.station, answers[0]!.action === 'backup' ? 'line-a' : 'line-b', 'the winner serves it');
    assert.ok(['running', 'failed'].includes(taken.state), taken.state);
    if (taken.state === 'running') assert.equal((await b.admin('POST', `/api/jobs/${job.body.id}/cancel`)).status, 200);
  }
  const all = (await b.admin('GET', `/api/jobs?device=${MAC}&limit=100`)).body;
  assert.equal(all.total, 20, 'one job per order, none duplicated');
});
