import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15: a backup stays on the station that received it, and is handled from any station.
// Two stations in this process on loopback, sharing one PostgreSQL; the device is B's.

const MiB = 1024 * 1024;

/** A station on a port known before it starts, so that it can announce its --station-url. */
async function station(t: TestContext, name: string, database: string): Promise<TestServer> {
  const port = await freePort();
  return startTestServer(t, { database, station: name, port, stationUrl: `http://127.0.0.1:${port}` });
}

test("a backup on station B is promoted to an image from station A, and deleting it on A frees B's disk", async (t) => {
  const postgres = startTestPostgres(t);
  const a = await station(t, 'line-a', postgres.url);
  const b = await station(t, 'line-b', postgres.url);

  // The device's eMMC: data at both ends, so the image's bytes are seen whole.
  const emmc = join(tempDir(t), 'emmc.img');
  const bytes = Buffer.alloc(16 * MiB);
  randomBytes(3 * MiB).copy(bytes, 0);
  randomBytes(MiB).copy(bytes, 15 * MiB);
  writeFileSync(emmc, bytes);
  const client = runClient(t, { server: b.url, target: emmc, mac: MAC });
  await waitFor('the device, polling B, seen on A', async () => (await a.admin('GET', `/api/devices/${MAC}`)).status === 200);
  const ordered = await a.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  assert.equal(await client.exited, 0, client.output());
  const job = (await a.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.deepEqual([job.state, job.station], ['ok', 'line-b'], job.error);
  const backupId = job.backup_id as number;
  const backupFile = b.server.services.backups.pathOf(await b.server.services.backups.get(backupId));
  assert.equal(await sha256OfFile(backupFile), await sha256OfFile(emmc), "the backup is on B's disk");

  // A byte flipped in B's file: A's promotion finds it and makes no image.
  const good = readFileSync(backupFile);
  const flipped = Buffer.from(good);
  flipped[MiB + 7]! ^= 0xff;
  writeFileSync(backupFile, flipped);
  const damaged = await a.admin('POST', `/api/backups/${backupId}/promote`, { name: 'from-b' });
  assert.equal(damaged.status, 409, JSON.stringify(damaged.body));
  assert.match(damaged.body.message, /another sha256 than it was stored with: its file there is damaged, and no image was made/);
  assert.equal((await a.admin('GET', '/api/images/from-b')).status, 404);
  writeFileSync(backupFile, good);

  // Promoted on A: A streams it from B, checks its sha256, and holds the image itself.
  const promoted = await a.admin('POST', `/api/backups/${backupId}/promote`, { name: 'from-b' });
  assert.equal(promoted.status, 201, JSON.stringify(promoted.body));
  assert.equal(promoted.body.sha256, await sha256OfFile(emmc));
  assert.equal(await sha256OfFile(a.server.services.images.pathOf(await a.server.services.images.requireImage('from-b'))), promoted.body.sha256);
  // B fetches its own copy of the new image from A, as of any image added on A.
  await waitFor("B's copy of the promoted image", async () => {
    const copies = (await b.admin('GET', '/api/images/from-b')).body.copies as Array<{ station: string; state: string }>;
    return copies.find((copy) => copy.station === 'line-b')?.state === 'complete';
  });

  // A backup name taken: refused with a sentence, nothing made.
  const again = await a.admin('POST', `/api/backups/${backupId}/promote`, { name: 'from-b' });
  assert.equal(again.status, 409, JSON.stringify(again.body));

  // Deleted on A: gone from every list at once, and its file leaves B's disk when B hears of it.
  assert.equal((await a.admin('DELETE', `/api/backups/${backupId}`)).status, 204);
  assert.equal((await b.admin('GET', `/api/backups/${backupId}`)).status, 404);
  await waitFor("the backup's file gone from B", async () => !existsSync(backupFile));
  assert.equal((await b.admin('GET', '/api/images/from-b')).status, 200, 'the image made from it stays');
  assert.equal(await sha256OfFile(b.server.services.images.pathOf(await b.server.services.images.requireImage('from-b'))), promoted.body.sha256);
});
