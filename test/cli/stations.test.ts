import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createImageCopyStore } from '../../src/images/copies-store.js';
import { createStationStore } from '../../src/stations/index.js';
import { runCli } from '../helpers/cli.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;
const SINGLE_STATION_HEADER = /^NAME\s+SIZE\s+MAPPED\s+ZSTD\s+SHA256\s+SOURCE\s+ADDED\s+DEFAULT\s+IN USE\s+BROKEN\n/;

test('cm4prov stations alone on SQLite: one station, up, and a line saying it is the only one; image list and show as before', async (t) => {
  const server = await startTestServer(t, { station: 'bench-1' });
  const env = { CM4PROV_SERVER: server.url, CM4PROV_DATA_DIR: server.dataDir };
  await addImage(t, server, 'os', MiB);

  const listed = await runCli(['stations'], env);
  assert.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^STATION\s+STATE\s+LAST HEARD\s+URL\s+STARTED$/);
  assert.match(lines[1]!, /^bench-1 \(this one\)\s+up\s+\d+ s ago\s+none: others cannot fetch from it\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.equal(lines[2], 'This station: bench-1, on SQLite: the only station; 0 parked polls.');
  assert.equal(lines.length, 3);

  const json = await runCli(['stations', '--json'], env);
  assert.equal(json.code, 0, json.stderr);
  const body = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(body), ['station', 'database', 'channel', 'parked_polls', 'stations']);
  assert.deepEqual([body.station, body.database, body.channel, body.stations.map((s: { name: string; up: boolean }) => [s.name, s.up])], ['bench-1', 'sqlite', 'single', [['bench-1', true]]]);

  const images = await runCli(['image', 'list'], env);
  assert.equal(images.code, 0, images.stderr);
  assert.match(images.stdout, SINGLE_STATION_HEADER, 'no COPIES column for one station');
  const shown = await runCli(['image', 'show', 'os'], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^Image:\s+os\nSize:\s+1\.00 MiB\n/);
  assert.doesNotMatch(shown.stdout, /Copies/);
  const missing = await runCli(['image', 'show', 'nope'], env);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "cm4prov: the server refused: there is no image named 'nope' (see: cm4prov image list)\n");
});

test('cm4prov stations on PostgreSQL: every station with up or down, the channel and parked polls; image list and show give each station\'s copy', async (t) => {
  const postgres = startTestPostgres(t);
  const port = await freePort();
  const server = await startTestServer(t, { database: postgres.url, station: 'line-a', port, stationUrl: `http://127.0.0.1:${port}` });
  const env = { CM4PROV_SERVER: server.url, CM4PROV_DATA_DIR: server.dataDir };
  const { db } = server.server.services.database;
  await addImage(t, server, 'os', MiB);
  const os = await server.server.services.images.requireImage('os');
  // line-b: last heard from 2½ minutes ago, 45% into its copy of os: "2 min" however the
  // server's Date header (whole seconds) and this test's own pace shift the CLI's clock.
  const heard = Date.now() - 150_000;
  await createStationStore(db).announce('line-b', null, heard);
  const copies = createImageCopyStore(db);
  await copies.startFetch(os.id, 'line-b', 'line-a', 4_000_000, heard);
  await copies.progress(os.id, 'line-b', 1_800_000, heard);

  // A device's long-poll parked on line-a.
  await registerDevice(server);
  const polling = new AbortController();
  t.after(() => polling.abort());
  fetch(`${server.url}/api/device-action-poll?mac=${MAC}&wait=60`, { signal: polling.signal }).catch(() => undefined);
  await waitFor('the poll parked', async () => (await server.admin('GET', '/api/stations')).body.parked_polls === 1);

  const listed = await runCli(['stations'], env);
  assert.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^STATION\s+STATE\s+LAST HEARD\s+URL\s+STARTED$/);
  assert.match(lines[1]!, new RegExp(`^line-a \\(this one\\)\\s+up\\s+\\d+ s ago\\s+http://127\\.0\\.0\\.1:${port}\\s+\\d{4}-`));
  assert.match(lines[2]!, /^line-b\s+down\s+2 min ago\s+none: others cannot fetch from it\s+\d{4}-/);
  assert.equal(lines[3], 'This station: line-a, on PostgreSQL; channel to the other stations: connected; 1 parked poll.');

  const json = JSON.parse((await runCli(['stations', '--json'], env)).stdout);
  assert.deepEqual(json.stations.map((s: { name: string; up: boolean; url: string | null }) => [s.name, s.up, s.url]), [['line-a', true, `http://127.0.0.1:${port}`], ['line-b', false, null]]);
  assert.equal(json.channel, 'connected');

  const images = await runCli(['image', 'list'], env);
  assert.equal(images.code, 0, images.stderr);
  const [header, row] = images.stdout.split('\n');
  assert.match(header!, /^NAME\s+SIZE\s+MAPPED\s+ZSTD\s+SHA256\s+SOURCE\s+ADDED\s+DEFAULT\s+IN USE\s+COPIES\s+BROKEN$/);
  assert.match(row!, /^os\s.*\sline-a ✓, line-b 45% \(down\)\s+-$/);

  const shown = await runCli(['image', 'show', 'os'], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /\nCopies:\s+line-a {2}✓ complete\n\s+line-b {2}fetching from line-a 45% \(1\.72 MiB of 3\.81 MiB\) when last heard from; line-b is down\n$/);

  // Heard from again, its fetch going on (stamped an hour ahead: up however slow this machine is).
  await createStationStore(db).heartbeat('line-b', Date.now() + 3_600_000);
  assert.match((await runCli(['image', 'list'], env)).stdout, /\sline-a ✓, line-b 45%\s+-\n/);
  assert.match((await runCli(['image', 'show', 'os'], env)).stdout, /\n\s+line-b {2}fetching from line-a 45% \(1\.72 MiB of 3\.81 MiB\)\n$/);

  await copies.fail(os.id, 'line-b', 'station line-a (http://127.0.0.1:1) cannot be reached: ECONNREFUSED', Date.now());
  assert.match((await runCli(['image', 'list'], env)).stdout, /\sline-a ✓, line-b failed\s/);
  assert.match((await runCli(['image', 'show', 'os'], env)).stdout, /\n\s+line-b {2}fetch from line-a failed: station line-a \(http:\/\/127\.0\.0\.1:1\) cannot be reached: ECONNREFUSED\n$/);

  // A copy found damaged there: said before what is being done about it.
  await copies.setBroken(os.id, 'line-b', 'its file was changed: its first or last MiB differ from what was imported');
  assert.match((await runCli(['image', 'list'], env)).stdout, /\sline-a ✓, line-b damaged, failed\s/);
  assert.match((await runCli(['image', 'show', 'os'], env)).stdout, /\n\s+line-b {2}damaged: its file was changed: its first or last MiB differ from what was imported; fetch from line-a failed: station line-a/);
});

test('cm4prov stations with no server to reach, or a wrong token, exits 3 with the sentence every command gives', async (t) => {
  const port = await freePort();
  const unreachable = await runCli(['stations', '--server', `http://127.0.0.1:${port}`, '--token', 'x']);
  assert.equal(unreachable.code, 3);
  assert.equal(unreachable.stdout, '');
  assert.equal(unreachable.stderr, `cm4prov: cannot reach the server at http://127.0.0.1:${port} (ECONNREFUSED); is \`cm4prov serve\` running there (URL from --server)?\n`);
  const server = await startTestServer(t);
  const refused = await runCli(['stations', '--server', server.url, '--token', 'wrong']);
  assert.equal(refused.code, 3);
  assert.match(refused.stderr, /^cm4prov: the server refused the admin token \(from --token\): /);
});
