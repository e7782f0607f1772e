import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { createNetbootLab, inNamespace, requireRoot, type NetbootLab } from '../helpers/netns.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { linkStations, startStation, type LabStation } from '../helpers/stations.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15's faults, on two stations sharing one PostgreSQL (each in its own lab, its own device
// LAN): PostgreSQL restarted in the middle of a deploy served by B and ordered on A, then B
// killed outright in the middle of the next one. A's stall watchdog ends B's orphaned job; A
// carries on.

const ON_B = 'dc:a6:32:00:00:01';
const ON_A = 'dc:a6:32:00:00:02';
const MiB = 1024 * 1024;
const STALL_TIMEOUT_S = 10; // --job-stall-timeout's minimum

/**
 * 64 MiB holding a MiB of random bytes every 4 MiB: the zero gaps cut it into 16 chunks of 1 MiB,
 * none compressible. Over a device link shaped to 12 Mbit/s a deploy lasts about 12 s, and its
 * bytes_done moves with each chunk, well inside the stall timeout.
 */
function writeSpacedImage(path: string) {
  const image = Buffer.alloc(64 * MiB);
  for (let at = 0; at < image.length; at += 4 * MiB) randomFillSync(image, at, MiB);
  writeFileSync(path, image);
}

/**
 * Shapes what the lab's server sends to its device LAN (tbf on the bridge port the device's veth
 * is plugged into): a steady rate, packet by packet. curl's --limit-rate is no use here: it lets
 * the first MiBs through at once and then pauses for seconds to bring the average down, and a
 * pause as long as the stall timeout ends the job.
 */
function shapeDeviceLink(lab: NetbootLab, rate: string) {
  const ports = inNamespace(lab.serverNs, 'ip', ['-o', 'link', 'show', 'master', 'br0']).split('\n').filter(Boolean);
  assert.equal(ports.length, 1, ports.join('\n'));
  const port = /^\d+: ([^@:]+)/.exec(ports[0]!)![1]!;
  inNamespace(lab.serverNs, 'tc', ['qdisc', 'add', 'dev', port, 'root', 'tbf', 'rate', rate, 'burst', '32kb', 'latency', '400ms']);
}

/** A real upload through the station's admin API, then its chunk cache built. */
async function addImage(t: TestContext, station: LabStation, name: string) {
  const path = join(tempDir(t), `${name}.img`);
  writeSpacedImage(path);
  const added = await fetch(`${station.base}/api/images?name=${name}`, { method: 'POST', headers: { authorization: `Bearer ${station.token}` }, body: readFileSync(path) });
  assert.equal(added.status, 201, await added.clone().text());
  const view = (await added.json()) as { id: number; size: number; sha256: string };
  await waitFor(`${name} compressed on ${station.name}`, async () => (await station.admin('GET', `/api/images/${name}`)).body.block_map?.compression.state === 'ready');
  return view;
}

/** A device's poll from the lab's device LAN: its HTTP status and body. */
function pollFrom(lab: NetbootLab, mac: string) {
  const out = inNamespace(lab.deviceNs, 'curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', `http://10.20.50.1:5000/api/device-action-poll?mac=${mac}&wait=0`]);
  const at = out.lastIndexOf('\n');
  return { status: Number(out.slice(at + 1)), body: JSON.parse(out.slice(0, at)) as { error?: string; action?: string } };
}

async function jobWhen(station: LabStation, id: number, what: string, done: (job: any) => boolean, timeoutMs = 30_000) {
  return waitFor(what, async () => {
    const job = (await station.admin('GET', `/api/jobs/${id}`)).body;
    return done(job) ? job : undefined;
  }, timeoutMs);
}

const ended = (job: { state: string }) => !['queued', 'running'].includes(job.state);

test("two stations on one PostgreSQL: a restart of it in the middle of B's deploy ends ok, once; B killed in the middle of the next one: A fails that job as abandoned after the stall timeout and carries on", async (t) => {
  if (!requireRoot(t)) return;
  const postgres = startTestPostgres(t);
  const [labA, labB] = [createNetbootLab(t), createNetbootLab(t)];
  const link = linkStations(t, labA, labB);
  const [atA, atB] = link.addresses;
  const stall = ['--job-stall-timeout', String(STALL_TIMEOUT_S)];
  const a = await startStation(t, labA, 'line-a', postgres.url, { stationUrl: `http://${atA}:5000`, extraArgs: stall });
  const b = await startStation(t, labB, 'line-b', postgres.url, { stationUrl: `http://${atB}:5000`, extraArgs: stall });

  // A device on each LAN. B's gets 12 Mbit/s, and parks its polls for 300 s: an order reaches it
  // only through the stations' channel, never by its poll timing out and asking again.
  shapeDeviceLink(labB, '12mbit');
  inNamespace(labB.deviceNs, 'ip', ['addr', 'add', '10.20.50.101/24', 'dev', 'eth0']);
  inNamespace(labA.deviceNs, 'ip', ['addr', 'add', '10.20.50.101/24', 'dev', 'eth0']);
  const emmc = join(tempDir(t), 'emmc-b.img');
  await makeFakeEmmc(emmc, 64 * MiB);
  const emmcA = join(tempDir(t), 'emmc-a.img');
  await makeFakeEmmc(emmcA, MiB);
  const clientB = runClient(t, { server: 'http://10.20.50.1:5000', target: emmc, mac: ON_B, namespace: labB.deviceNs, env: { AFTER_JOB: 'poll', POLL_WAIT: '300' } });
  const clientA = runClient(t, { server: 'http://10.20.50.1:5000', target: emmcA, mac: ON_A, namespace: labA.deviceNs, env: { AFTER_JOB: 'poll' } });

  const os = await addImage(t, a, 'os');
  await waitFor("B's copy of os, complete", async () => {
    const copies = (await a.admin('GET', '/api/images/os')).body.copies as Array<{ station: string; state: string }>;
    return copies.find((copy) => copy.station === 'line-b')?.state === 'complete';
  }, 60_000);
  await waitFor('the device parked on B', async () => (await b.admin('GET', '/api/stations')).body.parked_polls === 1);

  // (1) The deploy, ordered on A, is served by B; PostgreSQL stops and starts again in its middle.
  const first = await a.admin('POST', `/api/devices/${ON_B}/deploy`, { image: 'os' });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const midway = await jobWhen(a, first.body.id, 'the deploy under way on B', (job) => job.state === 'running' && job.bytes_done > 0);

  const outageStarted = Date.now();
  postgres.stop();
  const poll = pollFrom(labB, 'dc:a6:32:00:00:99');
  assert.equal(poll.status, 503, 'another device asking B for work is told to come back, not "none"');
  assert.equal(poll.body.error, 'database_unreachable');
  const onA = await a.admin('GET', '/api/devices');
  assert.equal(onA.status, 503, JSON.stringify(onA.body));
  assert.equal(onA.body.error, 'database_unreachable');
  // Down until B has refused the device a report (progress, or its result): it went on through the outage.
  await waitFor('a report of the deploy refused by B', () =>
    b.output().split('\n').some((line) => line.includes(`/api/device-jobs/${first.body.id}/`) && line.includes('request failed')),
  );
  postgres.start();
  t.diagnostic(`PostgreSQL down ${Date.now() - outageStarted} ms, from ${midway.bytes_done} of ${midway.bytes_total} bytes written`);

  const firstDone = await jobWhen(a, first.body.id, 'the deploy to end', ended, 120_000);
  assert.equal(firstDone.state, 'ok', `${firstDone.error}\n${clientB.output()}`);
  assert.equal(firstDone.station, 'line-b', 'served by the station the device polls');
  assert.equal(firstDone.sha256, os.sha256);
  assert.equal(await sha256OfFile(emmc, os.size), os.sha256, 'the eMMC holds the image');
  assert.equal((await a.admin('GET', `/api/jobs?device=${ON_B}`)).body.total, 1, 'nothing ordered or handed out twice');

  // Both stations hear each other again: an order placed on A reaches the device parked on B.
  for (const station of [a, b]) await waitFor(`${station.name}'s channel back`, async () => (await station.admin('GET', '/api/stations')).body.channel === 'connected');
  await waitFor('the device parked on B again', async () => (await b.admin('GET', '/api/stations')).body.parked_polls === 1);

  // (2) The next deploy, ordered on A, under way on B: B dies (SIGKILL), and the device with it.
  const second = await a.admin('POST', `/api/devices/${ON_B}/deploy`, { image: 'os' });
  assert.equal(second.status, 201, JSON.stringify(second.body));
  await jobWhen(a, second.body.id, 'the second deploy under way on B', (job) => job.state === 'running' && job.bytes_done > 0);
  await b.kill();
  const killedAt = Date.now();
  clientB.kill();
  await clientB.exited;

  // A carries on: a backup of the device on its own LAN, ordered on A.
  await waitFor('the device on A registered', async () => (await a.admin('GET', `/api/devices/${ON_A}`)).body.station === 'line-a');
  const backup = await a.admin('POST', `/api/devices/${ON_A}/backup`);
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  const backedUp = await jobWhen(a, backup.body.id, 'the backup on A', ended);
  assert.equal(backedUp.state, 'ok', `${backedUp.error}\n${clientA.output()}`);
  assert.equal(backedUp.station, 'line-a');

  // B's job fails on A's watchdog, as abandoned, once A sees B down (while B is up, B judges the
  // jobs it serves: only it sees their bytes still moving).
  const abandoned = await jobWhen(a, second.body.id, "B's job to fail", ended, 60_000);
  const whenFailed = (await a.admin('GET', '/api/stations')).body;
  assert.equal(whenFailed.stations.find((s: { name: string }) => s.name === 'line-b')?.up, false, 'not failed by A while B was up');
  assert.equal(abandoned.state, 'failed');
  assert.equal(abandoned.station, 'line-b');
  const quiet = /^no word from the device for (\d+) s$/.exec(abandoned.error);
  assert.ok(quiet && Number(quiet[1]) >= STALL_TIMEOUT_S, abandoned.error);
  assert.equal((await a.admin('GET', `/api/jobs?device=${ON_B}`)).body.total, 2, 'one job per order');
  const failedAfter = Date.now() - killedAt;

  assert.deepEqual(whenFailed.stations.map((s: { name: string; up: boolean }) => [s.name, s.up]), [['line-a', true], ['line-b', false]]);
  assert.equal(whenFailed.channel, 'connected');
  t.diagnostic(`after B was killed: its job failed on A within ${failedAfter} ms`);
});
