import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { createNetbootLab, inNamespace, requireRoot, type NetbootLab } from '../helpers/netns.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { linkStations, startStation, type LabStation } from '../helpers/stations.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15: an image added on one station is deployed on another. Two stations in two labs
// (each its own device LAN), one PostgreSQL, and a veth link between the server namespaces as
// the factory network: B fetches A's copy over it, checks every chunk and the whole file, and
// only then hands out deploys of it.

/** Every image file in a data folder, content-addressed (images/sha256/) or older (images/). */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img'));

const MAC = 'dc:a6:32:00:00:01';

interface Copy {
  station: string;
  state: string;
  bytes_done: number;
  bytes_total: number | null;
  error: string | null;
  source_station: string | null;
  broken: string | null;
}

async function twoStations(t: TestContext, options: { startB?: boolean } = {}) {
  const postgres = startTestPostgres(t);
  const [labA, labB] = [createNetbootLab(t), createNetbootLab(t)];
  const link = linkStations(t, labA, labB);
  const [atA, atB] = link.addresses;
  const a = await startStation(t, labA, 'line-a', postgres.url, { stationUrl: `http://${atA}:5000` });
  const startB = () => startStation(t, labB, 'line-b', postgres.url, { stationUrl: `http://${atB}:5000` });
  const b = options.startB === false ? undefined : await startB();
  return { postgres, labA, labB, link, a, b, startB };
}

/** A real upload through the station's admin API, then its chunk cache built. */
async function addImage(t: TestContext, station: LabStation, name: string, data = readFileSync(makeExt4Image(tempDir(t), 64).image)) {
  const added = await fetch(`${station.base}/api/images?name=${name}`, { method: 'POST', headers: { authorization: `Bearer ${station.token}` }, body: data });
  assert.equal(added.status, 201, await added.clone().text());
  const view = (await added.json()) as { id: number; size: number; sha256: string };
  await waitFor(`${name} compressed on ${station.name}`, async () => (await station.admin('GET', `/api/images/${name}`)).body.block_map?.compression.state === 'ready');
  return { ...view, data };
}

const copyOn = async (viewer: LabStation, image: string, station: string): Promise<Copy | undefined> =>
  ((await viewer.admin('GET', `/api/images/${image}`)).body.copies as Copy[]).find((copy) => copy.station === station);

/** The one image file in a station's data folder. */
function imageFileOf(station: LabStation): string {
  const files = imageFiles(station.dataDir);
  assert.equal(files.length, 1, `${station.name} holds ${files.join(', ')}`);
  return join(station.dataDir, 'images', files[0]!);
}

function pollOnce(lab: NetbootLab) {
  return JSON.parse(inNamespace(lab.deviceNs, 'curl', ['-sS', '--max-time', '20', `http://10.20.50.1:5000/api/device-action-poll?mac=${MAC}&wait=0&features=sparse,zstd`])) as { action: string };
}

test("an image uploaded on A is fetched by B over the station link, checked, and deployed on B; a deploy ordered on B before its copy is complete waits for it; a backup taken on B downloads through A; the same bytes re-added on A are complete on B with no fetch; a byte changed in B's copy marks only B's copy damaged, and a deploy on B waits until B has fetched it again", async (t) => {
  if (!requireRoot(t)) return;
  const { labB, link, a, b } = await twoStations(t);
  const seen = (await a.admin('GET', '/api/stations')).body;
  assert.deepEqual(seen.stations.map((s: { name: string; url: string }) => [s.name, s.url]), [['line-a', 'http://10.77.0.1:5000'], ['line-b', 'http://10.77.0.2:5000']]);

  // The link is down: B knows of the image (one database) but cannot fetch it yet.
  link.down();
  const os = await addImage(t, a, 'os');
  const failed = await waitFor("B's first fetch to fail", async () => {
    const copy = await copyOn(b!, 'os', 'line-b');
    return copy?.state === 'failed' ? copy : undefined;
  });
  assert.match(failed.error!, /^station line-a \(http:\/\/10\.77\.0\.1:5000\) cannot be reached: /);
  const onB = (await b!.admin('GET', '/api/images/os')).body;
  assert.equal(onB.broken, null, 'a file B does not have yet does not make the image broken');
  assert.deepEqual(imageFiles(b!.dataDir), []);

  // A device on B's LAN registers with the real client; the deploy is ordered on B while B has no copy.
  inNamespace(labB.deviceNs, 'ip', ['addr', 'add', '10.20.50.101/24', 'dev', 'eth0']);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 96 * 1024 * 1024);
  const first = runClient(t, { server: 'http://10.20.50.1:5000', target: emmc, mac: MAC, namespace: labB.deviceNs });
  await waitFor('the device registered on B', async () => (await b!.admin('GET', `/api/devices/${MAC}`)).status === 200);
  first.kill();
  await first.exited;
  const ordered = await b!.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os' });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  assert.equal(pollOnce(labB).action, 'none', 'not handed out while B has no complete copy');
  assert.equal((await b!.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'queued');

  // The client waits on B; the link comes up; B's retry fetches the copy and wakes the poll.
  const client = runClient(t, { server: 'http://10.20.50.1:5000', target: emmc, mac: MAC, namespace: labB.deviceNs, env: { AFTER_JOB: 'poll' } });
  await waitFor('the device parked on B', async () => (await b!.admin('GET', '/api/stations')).body.parked_polls === 1);
  assert.equal((await b!.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'queued', 'still waiting for the copy');
  link.up();
  const copied = await waitFor("B's copy, complete", async () => {
    const copy = await copyOn(a, 'os', 'line-b');
    return copy?.state === 'complete' ? copy : undefined;
  }, 120_000);
  assert.deepEqual(copied, { station: 'line-b', state: 'complete', bytes_done: copied.bytes_total, bytes_total: copied.bytes_total, error: null, source_station: 'line-a', broken: null });
  const contentName = join('images', 'sha256', `${os.sha256}.img`);
  assert.equal(imageFileOf(b!), join(b!.dataDir, contentName), "B's copy has A's name for it");
  assert.equal(imageFileOf(a), join(a.dataDir, contentName));
  assert.equal(await sha256OfFile(imageFileOf(b!)), os.sha256, "B's file is the image");
  assert.deepEqual(readdirSync(join(b!.dataDir, 'tmp')), []);

  const job = await waitFor('the deploy on B', async () => {
    const now = (await b!.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
    return ['ok', 'failed'].includes(now.state) && now;
  }, 120_000);
  assert.equal(job.state, 'ok', `${job.error}\n${client.output()}`);
  assert.equal(job.station, 'line-b');
  assert.equal(job.sha256, os.sha256);
  assert.equal(await sha256OfFile(emmc, os.size), os.sha256, 'the eMMC holds the image');

  // A backup taken on B (the device polls B) is downloaded through A's admin API, whole and by Range.
  const backupJob = await a.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(backupJob.status, 201, JSON.stringify(backupJob.body));
  const backedUp = await waitFor('the backup on B', async () => {
    const now = (await a.admin('GET', `/api/jobs/${backupJob.body.id}`)).body;
    return ['ok', 'failed'].includes(now.state) ? now : undefined;
  }, 120_000);
  assert.equal(backedUp.state, 'ok', backedUp.error);
  assert.equal(backedUp.station, 'line-b');
  const backup = (await a.admin('GET', `/api/backups/${backedUp.backup_id}`)).body;
  const stored = (readdirSync(join(b!.dataDir, 'backups'), { recursive: true }) as string[]).filter((name) => name.endsWith(`-job${backupJob.body.id}.img`));
  assert.equal(stored.length, 1, 'the file is on B');
  const onDiskOfB = readFileSync(join(b!.dataDir, 'backups', stored[0]!));
  const download = (headers: Record<string, string> = {}) => fetch(`${a.base}/api/backups/${backup.id}/download`, { headers: { authorization: `Bearer ${a.token}`, ...headers } });
  const whole = await download();
  assert.equal(whole.status, 200);
  const body = Buffer.from(await whole.arrayBuffer());
  assert.equal(body.length, backup.size);
  assert.ok(body.equals(onDiskOfB), "byte for byte B's file");
  assert.equal(createHash('sha256').update(body).digest('hex'), backup.sha256);
  assert.equal(whole.headers.get('content-disposition'), `attachment; filename="backup-dca632000001-${backup.id}.img"`);
  const part = await download({ range: 'bytes=1000-1999' });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 1000-1999/${backup.size}`);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(body.subarray(1000, 2000)));

  // The same bytes added on A under a second name while B cannot reach A: B's copy is complete
  // at once from its own file (one file for both), no byte asked of A.
  link.down();
  await addImage(t, a, 'os-again', os.data);
  const again = await waitFor("B's copy of os-again", async () => {
    const copy = await copyOn(a, 'os-again', 'line-b');
    return copy?.state === 'complete' ? copy : undefined;
  });
  assert.equal(again.source_station, 'line-b', 'made from its own file');
  assert.equal(imageFileOf(b!), join(b!.dataDir, contentName), 'still one file on B');

  // A byte changed in B's copy (A still cut off): the next deploy ordered on B marks B's copy
  // damaged, not the image; it waits while B cannot fetch the copy again, and runs once B has.
  flipByte(imageFileOf(b!), 4096);
  const redeploy = await b!.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os' });
  assert.equal(redeploy.status, 201, JSON.stringify(redeploy.body));
  // (Its fetch again goes on, or fails, while A cannot be reached: it cannot complete.)
  const damaged = await waitFor("B's copy damaged, being fetched again", async () => {
    const copy = await copyOn(a, 'os', 'line-b');
    return copy?.broken && copy.state !== 'complete' ? copy : undefined;
  });
  assert.equal(damaged.broken, 'its file was changed: its first or last MiB differ from what was imported');
  assert.deepEqual([(await a.admin('GET', '/api/images/os')).body.broken, (await copyOn(a, 'os', 'line-a'))!.broken], [null, null], "A's copy and the image stay deployable");
  assert.equal((await b!.admin('GET', `/api/jobs/${redeploy.body.id}`)).body.state, 'queued', 'the deploy waits on B');
  link.up();
  const redeployed = await waitFor('the deploy on B after its copy is fetched again', async () => {
    const now = (await b!.admin('GET', `/api/jobs/${redeploy.body.id}`)).body;
    return ['ok', 'failed'].includes(now.state) && now;
  }, 120_000);
  assert.equal(redeployed.state, 'ok', `${redeployed.error}\n${client.output()}`);
  assert.deepEqual(await copyOn(a, 'os', 'line-b'), { station: 'line-b', state: 'complete', bytes_done: copied.bytes_total, bytes_total: copied.bytes_total, error: null, source_station: 'line-a', broken: null });
  assert.equal(await sha256OfFile(imageFileOf(b!)), os.sha256, "B's file is whole again");
  assert.equal(await sha256OfFile(emmc, os.size), os.sha256);

  client.kill();
  await b!.stop();
  const ownerDown = await download();
  assert.equal(ownerDown.status, 503);
  assert.match(((await ownerDown.json()) as { message: string }).message, new RegExp(`^backup ${backup.id} is on station line-b, which (cannot be reached|is down)`));
});

test("a chunk damaged in A's copy fails B's fetch, naming the chunk; B never completes a bad copy, and fetches it once A's copy is whole again", async (t) => {
  if (!requireRoot(t)) return;
  const { postgres, a, startB } = await twoStations(t, { startB: false });
  const os = await addImage(t, a, 'os');
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  const frame = (
    await client.query<{ zoffset: number; zlength: number; cache_file: string }>(
      "SELECT c.zoffset, c.zlength, m.cache_file FROM images i JOIN block_maps m ON m.id = i.block_map_id JOIN block_map_chunks c ON c.map_id = m.id WHERE i.name = 'os' AND c.idx = 1",
    )
  ).rows[0]!;
  const cache = join(a.dataDir, frame.cache_file);
  const at = Number(frame.zoffset) + Math.floor(Number(frame.zlength) / 2);
  const original = flipByte(cache, at);

  const b = await startB();
  const failure = await waitFor("B's fetch to fail", async () => {
    const copy = await copyOn(b, 'os', 'line-b');
    return copy?.state === 'failed' ? copy : undefined;
  });
  assert.match(failure.error!, /^chunk 1 \(at byte \d+\) from line-a (does not hash to the map's sha256|is not a zstd frame)/);
  const updatedAt = async () => Number((await client.query<{ updated_at: string }>("SELECT updated_at FROM image_copies WHERE station = 'line-b'")).rows[0]!.updated_at);
  const firstFailure = await updatedAt();
  await waitFor('a second attempt, failed too', async () => (await updatedAt()) > firstFailure && (await copyOn(b, 'os', 'line-b'))?.state === 'failed');
  assert.match((await copyOn(b, 'os', 'line-b'))!.error!, /^chunk 1 /);
  assert.deepEqual(imageFiles(b.dataDir), [], 'no bad copy in images/');
  assert.deepEqual(readdirSync(join(b.dataDir, 'tmp')).filter((name) => name.startsWith('copy-')), [], 'nor half a one in tmp/');

  flipByte(cache, at, original);
  await client.end();
  await waitFor("B's copy, complete", async () => (await copyOn(b, 'os', 'line-b'))?.state === 'complete', 120_000);
  assert.equal(await sha256OfFile(imageFileOf(b)), os.sha256);
});

/** Changes one byte of a file (to `value`, or its complement); returns what it was. */
function flipByte(path: string, offset: number, value?: number): number {
  const fd = openSync(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    const before = byte[0]!;
    byte[0] = value ?? before ^ 0xff;
    writeSync(fd, byte, 0, 1, offset);
    return before;
  } finally {
    closeSync(fd);
  }
}
