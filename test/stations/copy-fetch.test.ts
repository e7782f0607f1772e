import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { imageRows } from '../../src/dashboard/views/images.js';
import { gapRequests } from '../../src/stations/copy-fetch.js';
import { STATION_SECRET_HEADER } from '../../src/stations/secret.js';
import { legacyBmap } from '../blockmap/bmaptool.js';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy.js';
import { pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Image copies between stations (issue 15), two stations in this process on loopback sharing one
// PostgreSQL: what a station serves to another (its secret, complete copies only), and a copy of
// a bmap image whose unmapped gaps hold data, fetched byte for byte.

/** Every image file in a data folder, content-addressed (images/sha256/) or older (images/). */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img'));

const MiB = 1024 * 1024;
const [MAC_A, MAC_B] = ['dc:a6:32:00:00:0a', 'dc:a6:32:00:00:0b'];
const BLOCK = 4096;

/** A station on a port known before it starts, so that it can announce its --station-url. */
async function station(t: TestContext, name: string, database: string): Promise<TestServer> {
  const port = await freePort();
  return startTestServer(t, { database, station: name, port, stationUrl: `http://127.0.0.1:${port}` });
}

const copiesOf = async (server: TestServer, image: string) =>
  (await server.admin('GET', `/api/images/${image}`)).body.copies as Array<{ station: string; state: string; bytes_done: number; bytes_total: number; error: string | null; source_station: string | null; broken: string | null }>;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

test('gaps between chunks are fetched in few requests: near ones together, the chunk between skipped', () => {
  const chunks = [
    { offset: 4096, length: 8192 },
    { offset: 12288, length: 4096 }, // adjacent: no gap between
    { offset: 20480, length: 4096 },
    { offset: 3 * MiB, length: 2 * MiB }, // more than a MiB between its gaps: they are fetched apart
  ];
  assert.deepEqual(gapRequests(chunks, 12 * MiB, MiB), [
    { start: 0, end: 3 * MiB, gaps: [{ start: 0, end: 4096 }, { start: 16384, end: 20480 }, { start: 24576, end: 3 * MiB }] },
    { start: 5 * MiB, end: 12 * MiB, gaps: [{ start: 5 * MiB, end: 12 * MiB }] },
  ]);
  assert.deepEqual(gapRequests([{ offset: 0, length: 100 }], 100), [], 'all mapped: nothing to fetch');
});

test('a bmap image whose unmapped gap holds data is copied to the other station byte for byte, sparse, with the same chunk cache; its bytes added again under a map of zeros are complete there at once, only the new cache fetched', async (t) => {
  const postgres = startTestPostgres(t);
  // A is reached through a proxy that notes every request for an image's chunks or raw bytes.
  const proxy = await startFaultProxy(t, [], { path: /^\/api\/station\/images\/\d+\/(chunks|raw|sparse)(\?|$)/ });
  const a = await startTestServer(t, { database: postgres.url, station: 'line-a', stationUrl: proxy.url });
  proxy.forwardTo(a.url);
  const b = await station(t, 'line-b', postgres.url);

  // 8 MiB: two mapped ranges, and between them 64 KiB of data the bmap leaves out (bmaptool does
  // not copy it; a copy of the image must still hold it, or its sha256 differs).
  const image = Buffer.alloc(8 * MiB);
  randomBytes(2 * MiB).copy(image, 0);
  randomBytes(64 * 1024).copy(image, 3 * MiB);
  randomBytes(MiB).copy(image, 5 * MiB);
  const bmap = legacyBmap('1.4', image, BLOCK, [[0, 2 * MiB / BLOCK - 1], [5 * MiB / BLOCK, 6 * MiB / BLOCK - 1]]);
  const headers = { authorization: `Bearer ${a.token}` };
  const declared = await fetch(`${a.url}/api/images/bmaps`, { method: 'POST', headers: { ...headers, 'content-type': 'application/xml' }, body: bmap });
  assert.equal(declared.status, 201, await declared.clone().text());
  const { bmap: bmapId } = (await declared.json()) as { bmap: string };
  const added = await fetch(`${a.url}/api/images?name=os&bmap=${bmapId}`, { method: 'POST', headers, body: image });
  assert.equal(added.status, 201, await added.clone().text());
  const view = (await added.json()) as { sha256: string; block_map: { source: string } };
  assert.equal(view.block_map.source, 'bmap');

  const copies = await waitFor("line-b's copy, complete", async () => {
    const now = await copiesOf(b, 'os');
    return now.find((copy) => copy.station === 'line-b')?.state === 'complete' ? now : undefined;
  });
  assert.deepEqual(copies.map((copy) => [copy.station, copy.state, copy.bytes_done, copy.bytes_total, copy.error]), [
    ['line-a', 'complete', image.length, image.length, null],
    ['line-b', 'complete', image.length, image.length, null],
  ]);
  const row = (await a.server.services.images.requireImage('os'))!;
  const map = (await a.server.services.blockMaps.get(row.block_map_id!))!;
  const copied = join(b.dataDir, row.file);
  assert.equal(sha256(readFileSync(copied)), view.sha256, "line-b's file is the image");
  assert.ok(readFileSync(copied).subarray(3 * MiB, 3 * MiB + 64 * 1024).equals(image.subarray(3 * MiB, 3 * MiB + 64 * 1024)), 'the unmapped data is there');
  assert.ok(statSync(copied).blocks * 512 < image.length / 2, 'its zeros are holes');
  assert.ok(readFileSync(join(b.dataDir, map.cache_file!)).equals(readFileSync(join(a.dataDir, map.cache_file!))), 'the same zstd frames, at the same offsets');
  assert.deepEqual(readdirSync(join(b.dataDir, 'tmp')), [], 'nothing left in tmp/');
  assert.deepEqual(proxy.faulted, [`bytes=0-${map.cache_bytes! - 1}`, 'none'], 'the chunk stream, then the gaps in one request without a Range: their zeros left out');
  const images = (await b.admin('GET', '/api/images/os')).body;
  assert.equal(images.broken, null);
  assert.equal(row.file, `images/sha256/${view.sha256}.img`, "named by its content, on line-b as on line-a");

  // The same bytes added on A without the bmap: another map (of zeros), the same file. B's copy
  // is complete from its own file at once; of A it asks only the new map's chunk stream.
  const asked = proxy.faulted.length;
  const again = await fetch(`${a.url}/api/images?name=os-zeros`, { method: 'POST', headers, body: image });
  assert.equal(again.status, 201, await again.clone().text());
  const zerosRow = await a.server.services.images.requireImage('os-zeros');
  assert.equal(zerosRow.file, row.file);
  assert.notEqual(zerosRow.block_map_id, row.block_map_id);
  const zerosCopy = await waitFor("line-b's copy of os-zeros", async () => (await copiesOf(b, 'os-zeros')).find((copy) => copy.station === 'line-b' && copy.state === 'complete'));
  assert.equal(zerosCopy.source_station, 'line-b', 'made from its own file, not fetched');
  await a.server.services.caches.idle();
  const zerosMap = (await a.server.services.blockMaps.get(zerosRow.block_map_id!))!;
  await waitFor("os-zeros's cache on line-b", () => b.server.services.images.cacheHere(zerosMap));
  assert.deepEqual(proxy.faulted.slice(asked), [`bytes=0-${zerosMap.cache_bytes! - 1}`], 'one request: the chunk stream, no raw bytes');
  assert.ok(readFileSync(join(b.dataDir, zerosMap.cache_file!)).equals(readFileSync(join(a.dataDir, zerosMap.cache_file!))));
  assert.deepEqual(imageFiles(b.dataDir), [`sha256/${view.sha256}.img`], 'one file for both on line-b');
  assert.deepEqual(readdirSync(join(b.dataDir, 'tmp')), []);

  // Removed on A: each station removes its own file, once no image names it.
  assert.equal((await a.admin('DELETE', '/api/images/os')).status, 204);
  await b.server.services.images.sweepRetired();
  assert.deepEqual(imageFiles(b.dataDir), [`sha256/${view.sha256}.img`], 'os-zeros still names it');
  assert.equal((await a.admin('DELETE', '/api/images/os-zeros')).status, 204);
  await waitFor('both files removed', () => imageFiles(a.dataDir).length + imageFiles(b.dataDir).length === 0);
});

test("station routes answer only the other stations, only from a complete copy; a copy not complete makes deploys wait and shows on the Images page; a station alone answers nobody", async (t) => {
  const postgres = startTestPostgres(t);
  const a = await station(t, 'line-a', postgres.url);
  const added = await fetch(`${a.url}/api/images?name=os`, { method: 'POST', headers: { authorization: `Bearer ${a.token}` }, body: randomBytes(3 * MiB) });
  assert.equal(added.status, 201);
  await a.server.services.caches.idle();
  const { id } = (await added.json()) as { id: number };
  const secret = a.server.services.stationSecret()!;
  assert.match(secret, /^[0-9a-f]{64}$/);
  const ask = (server: TestServer, path: string, extra: Record<string, string> = {}) => fetch(`${server.url}${path}`, { headers: { range: 'bytes=0-99', ...extra } });

  const anonymous = await ask(a, `/api/station/images/${id}/chunks`);
  assert.equal(anonymous.status, 401);
  assert.match(((await anonymous.json()) as { message: string }).message, /for the other stations sharing this database: send the station secret in x-cm4prov-station-secret/);
  const admin = await ask(a, `/api/station/images/${id}/raw`, { authorization: `Bearer ${a.token}` });
  assert.equal(admin.status, 401, 'the admin token is not a station secret');
  const wrong = await ask(a, `/api/station/images/${id}/raw`, { [STATION_SECRET_HEADER]: 'f'.repeat(64) });
  assert.equal(wrong.status, 403);
  assert.match(((await wrong.json()) as { message: string }).message, /the station secret is wrong/);

  const chunks = await ask(a, `/api/station/images/${id}/chunks`, { [STATION_SECRET_HEADER]: secret });
  assert.equal(chunks.status, 206);
  assert.equal((await chunks.arrayBuffer()).byteLength, 100);
  const raw = await ask(a, `/api/station/images/${id}/raw`, { [STATION_SECRET_HEADER]: secret });
  assert.equal(raw.status, 206);
  assert.match(raw.headers.get('content-range')!, /^bytes 0-99\/3145728$/);

  const b = await station(t, 'line-b', postgres.url);
  assert.equal(b.server.services.stationSecret(), secret, 'one secret, made by the first station');
  await waitFor("line-b's copy, complete", async () => (await copiesOf(b, 'os')).every((copy) => copy.state === 'complete') && (await copiesOf(b, 'os')).length === 2);
  await b.server.services.fetcher!.stop(); // so that it does not fetch the copy again meanwhile
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  const problemOn = async (server: TestServer) => server.server.services.images.fileProblem((await server.server.services.images.get(id))!);
  const rows = async () => String(imageRows(await a.server.services.images.list(), []));
  await client.query("UPDATE image_copies SET state = 'fetching', bytes_done = bytes_total * 45 / 100 + 1 WHERE station = 'line-b'");
  assert.deepEqual(await problemOn(b), { checking: true, reason: 'not on this station yet: fetching 45% from line-a' }, 'a deploy of it waits on line-b');
  assert.equal(await problemOn(a), null);
  assert.match(await rows(), /<span class="sub" title="">on line-b: fetching 45%<\/span>/, "A's Images page tells of B's fetch");
  await client.query("UPDATE image_copies SET state = 'failed', error = 'test' WHERE station = 'line-b'");
  await client.end();
  assert.deepEqual(await problemOn(b), { checking: true, reason: 'not on this station yet: fetching it from line-a failed (test); it is tried again' });
  assert.match(await rows(), /<span class="sub" title="test">on line-b: fetch failed, retrying<\/span>/);
  const notComplete = await ask(b, `/api/station/images/${id}/chunks`, { [STATION_SECRET_HEADER]: secret });
  assert.equal(notComplete.status, 409);
  assert.equal(((await notComplete.json()) as { message: string }).message, "station line-b has no complete copy of image 'os'");
  const none = await ask(a, `/api/station/images/${id + 1000}/chunks`, { [STATION_SECRET_HEADER]: secret });
  assert.equal(none.status, 404);

  const alone = await startTestServer(t);
  const refused = await ask(alone, '/api/station/images/1/chunks', { [STATION_SECRET_HEADER]: secret });
  assert.equal(refused.status, 403);
  assert.match(((await refused.json()) as { message: string }).message, /shares no database with other stations/);
});

/** Station line-a with a 12 MiB image, reached through a proxy that stalls its chunk stream halfway, the first time. */
async function stallingHalfway(t: TestContext, database: string) {
  const faults: Fault[] = [];
  const proxy = await startFaultProxy(t, faults, { path: /^\/api\/station\/images\/\d+\/chunks$/ });
  const a = await startTestServer(t, { database, station: 'line-a', stationUrl: proxy.url });
  proxy.forwardTo(a.url);
  const image = randomBytes(12 * MiB);
  const added = await fetch(`${a.url}/api/images?name=os`, { method: 'POST', headers: { authorization: `Bearer ${a.token}` }, body: image });
  assert.equal(added.status, 201);
  await a.server.services.caches.idle();
  const map = (await a.server.services.blockMaps.get((await a.server.services.images.requireImage('os')).block_map_id!))!;
  faults.push({ stallAfter: Math.floor(map.cache_bytes! / 2) });
  return { proxy, a, image, map };
}

test('a station stopped in the middle of a fetch leaves nothing in images/ or tmp/, says so on the copy, and fetches it whole once started again', async (t) => {
  const postgres = startTestPostgres(t);
  const { proxy, a, image } = await stallingHalfway(t, postgres.url);

  const b = await station(t, 'line-b', postgres.url);
  const temps = () => readdirSync(join(b.dataDir, 'tmp')).filter((name) => name.startsWith('copy-'));
  await waitFor('the fetch stalled halfway', () => proxy.faulted.length === 1 && temps().length === 2);
  await b.close();
  assert.deepEqual(temps(), [], 'its temp files are removed');
  assert.deepEqual(imageFiles(b.dataDir), [], 'no half image in images/');
  const stopped = (await copiesOf(a, 'os')).find((copy) => copy.station === 'line-b')!;
  assert.deepEqual([stopped.state, stopped.error], ['failed', 'the station stopped in the middle of the fetch; it starts over when it is back']);

  await b.restart();
  await waitFor("line-b's copy, complete", async () => (await copiesOf(a, 'os')).find((copy) => copy.station === 'line-b')?.state === 'complete');
  assert.equal(proxy.faulted.length, 2, 'fetched again, from the start');
  assert.equal(sha256(readFileSync(join(b.dataDir, (await b.server.services.images.requireImage('os')).file))), sha256(image));
});

test('a chunk stream that goes silent halfway (a link down under an open connection) is given up after the idle time and fetched on from the first frame not taken', async (t) => {
  const postgres = startTestPostgres(t);
  const { proxy, a, image, map } = await stallingHalfway(t, postgres.url); // and then silence, for as long as anyone waits

  const port = await freePort();
  const b = await startTestServer(t, { database: postgres.url, station: 'line-b', port, stationUrl: `http://127.0.0.1:${port}` }, { peerIdleMs: 3000 });
  await waitFor("line-b's copy, complete", async () => (await copiesOf(a, 'os')).find((copy) => copy.station === 'line-b')?.state === 'complete');
  // The stall is silence for as long as anyone waits; the other requests answer within the 3 s
  // (were one slower, on a loaded machine, its fetch would start over: more requests, same second one).
  assert.ok(proxy.faulted.length >= 2, `one silent stream, then more requests: ${proxy.faulted.join(', ')}`);
  const resumedAt = Number(/^bytes=(\d+)-/.exec(proxy.faulted[1]!)?.[1]);
  assert.ok(resumedAt > 0 && resumedAt <= map.cache_bytes! / 2, `the second request starts at the first frame not taken whole: ${proxy.faulted[1]}`);
  assert.equal(sha256(readFileSync(join(b.dataDir, (await b.server.services.images.requireImage('os')).file))), sha256(image));
});

test("a byte changed in line-b's copy marks only line-b's copy damaged: line-a still deploys it, a deploy on line-b waits with a sentence until line-b has fetched it again", async (t) => {
  const postgres = startTestPostgres(t);
  // A's chunk stream: given the first time, refused after that until the test lets it through.
  const faults: Fault[] = ['forward', 'refuse'];
  const proxy = await startFaultProxy(t, faults, { path: /^\/api\/station\/images\/\d+\/chunks$/, repeat: true });
  const a = await startTestServer(t, { database: postgres.url, station: 'line-a', stationUrl: proxy.url });
  proxy.forwardTo(a.url);
  const image = randomBytes(3 * MiB);
  const added = await fetch(`${a.url}/api/images?name=os`, { method: 'POST', headers: { authorization: `Bearer ${a.token}` }, body: image });
  assert.equal(added.status, 201);
  await a.server.services.caches.idle();
  const b = await station(t, 'line-b', postgres.url);
  await waitFor("line-b's copy, complete", async () => (await copiesOf(a, 'os')).find((copy) => copy.station === 'line-b')?.state === 'complete');

  const row = await b.server.services.images.requireImage('os');
  const path = join(b.dataDir, row.file);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([image[1000]! ^ 0xff]), 0, 1, 1000);
  closeSync(fd);

  await registerDevice(b, MAC_B);
  const ordered = await b.admin('POST', `/api/devices/${MAC_B}/deploy`, { image: 'os' });
  assert.equal(ordered.status, 201, 'accepted: line-a has it intact, line-b fetches it again');
  const damaged = await waitFor("line-b's fetch again refused", async () => {
    const copy = (await copiesOf(a, 'os')).find((one) => one.station === 'line-b');
    return copy?.state === 'failed' ? copy : undefined;
  });
  const reason = 'its file was changed: its first or last MiB differ from what was imported';
  assert.equal(damaged.broken, reason);
  assert.match(String(imageRows(await a.server.services.images.list(), [])), new RegExp(`<span class="sub" title="${reason}">on line-b: copy damaged, fetch failed, retrying</span>`), "A's Images page tells of it");
  const problem = await b.server.services.images.fileProblem(row);
  assert.equal(problem?.checking, true);
  assert.match(problem!.reason, new RegExp(`^this station's copy is damaged \\(${reason}\\); fetching it again from line-a failed \\(station line-a answered 503`));
  assert.equal((await poll(b, MAC_B)).action, 'none', 'the deploy on line-b waits');
  assert.equal((await b.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'queued');
  const onA = (await a.admin('GET', '/api/images/os')).body;
  assert.equal(onA.broken, null, 'the image is not broken');
  assert.deepEqual(onA.copies.map((copy: { station: string; broken: string | null }) => [copy.station, copy.broken]), [['line-a', null], ['line-b', reason]]);

  // line-a deploys it meanwhile.
  await registerDevice(a, MAC_A);
  assert.equal((await a.admin('POST', `/api/devices/${MAC_A}/deploy`, { image: 'os' })).status, 201);
  const onLineA = await poll(a, MAC_A);
  assert.equal(onLineA.action, 'deploy');
  assert.equal(sha256(Buffer.from(await (await fetch(onLineA.url)).arrayBuffer())), sha256(image));
  assert.equal((await a.device('POST', pathOf(onLineA.result_url), { status: 'ok', sha256: sha256(image) })).status, 200);

  // Let A's chunks through: line-b's copy is fetched again, replaced once checked, and deployed.
  faults.push('forward');
  await waitFor("line-b's copy, complete and intact again", async () => {
    const copy = (await copiesOf(a, 'os')).find((one) => one.station === 'line-b');
    return copy?.state === 'complete' && copy.broken === null;
  }, 90_000);
  assert.ok(readFileSync(path).equals(image), "line-b's file is the image again");
  assert.deepEqual(readdirSync(join(b.dataDir, 'tmp')), []);
  const onLineB = await poll(b, MAC_B);
  assert.equal(onLineB.action, 'deploy', 'the waiting deploy is handed out');
  assert.equal(sha256(Buffer.from(await (await fetch(onLineB.url)).arrayBuffer())), sha256(image));
  assert.equal((await b.device('POST', pathOf(onLineB.result_url), { status: 'ok', sha256: sha256(image) })).status, 200);
  // Closed before their PostgreSQL stops (its after-hook runs first): a retry of B's fetcher
  // holding a connection when the server is stopped fails the test with an unhandled pg error.
  await Promise.all([a.close(), b.close()]);
});

test('a station on PostgreSQL whose copy is damaged and that no other station holds intact refuses deploys of it, as a station alone does, until its file is put back', async (t) => {
  const postgres = startTestPostgres(t);
  const a = await station(t, 'line-a', postgres.url);
  const image = randomBytes(2 * MiB);
  const added = await fetch(`${a.url}/api/images?name=os`, { method: 'POST', headers: { authorization: `Bearer ${a.token}` }, body: image });
  assert.equal(added.status, 201);
  const path = join(a.dataDir, (await a.server.services.images.requireImage('os')).file);
  writeFileSync(path, image.subarray(0, MiB)); // truncated
  await registerDevice(a, MAC_A);
  const reason = `its file has ${MiB} bytes, not the ${2 * MiB} it was imported with (truncated or overwritten)`;
  for (const attempt of ['found now', 'marked before']) {
    const refused = await a.admin('POST', `/api/devices/${MAC_A}/deploy`, { image: 'os' });
    assert.equal(refused.status, 409, attempt);
    assert.equal(refused.body.message, `image 'os' cannot be deployed: ${reason}; put its file back, or remove it and add it again`, attempt);
  }
  assert.deepEqual((await copiesOf(a, 'os')).map((copy) => [copy.station, copy.state, copy.broken]), [['line-a', 'complete', reason]]);
  assert.equal((await a.admin('GET', '/api/images/os')).body.broken, null, "the image's own mark is a station alone's");

  writeFileSync(path, image); // put back (a new mtime: re-hashed before it counts)
  await waitFor('the copy intact again', async () => (await a.admin('POST', `/api/devices/${MAC_A}/deploy`, { image: 'os' })).status === 201);
  assert.deepEqual((await copiesOf(a, 'os')).map((copy) => copy.broken), [null]);
  await a.server.services.caches.idle();
});
