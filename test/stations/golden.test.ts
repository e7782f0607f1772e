import assert from 'node:assert/strict';
import { copyFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { writeImageFile } from '../helpers/files.js';
import { freePort } from '../helpers/ports.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

// Issue 15: stations sharing a database share one "golden" image, while each watches the
// golden.img in its own data folder. The same file on every station is one image; a new file on
// any station replaces it for all; and no two stations take turns replacing each other's.

async function station(t: TestContext, name: string, database: string): Promise<TestServer> {
  const port = await freePort();
  return startTestServer(t, { database, station: name, port, stationUrl: `http://127.0.0.1:${port}` });
}

/** Puts `source` in the station's data folder as golden.img, settled (old enough to be read), and has the station look. */
async function dropGolden(server: TestServer, source: string) {
  const golden = join(server.dataDir, 'golden.img');
  copyFileSync(source, golden);
  utimesSync(golden, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  await server.server.services.golden.check();
}

const golden = async (server: TestServer) => {
  const reply = await server.admin('GET', '/api/images/golden');
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return { id: reply.body.id as number, sha256: reply.body.sha256 as string };
};

test('the same golden.img on two stations is one golden image; a new one on either replaces it for both, and the other does not take it back', async (t) => {
  const postgres = startTestPostgres(t);
  const a = await station(t, 'line-a', postgres.url);
  const b = await station(t, 'line-b', postgres.url);
  const [v1, v2] = [join(tempDir(t), 'v1.img'), join(tempDir(t), 'v2.img')];
  const [sha1, sha2] = [writeImageFile(v1, 300_000), writeImageFile(v2, 250_000)];

  // The same file copied to both stations (two inodes, one content): one image.
  await dropGolden(a, v1);
  const first = await golden(a);
  assert.equal(first.sha256, sha1);
  await dropGolden(b, v1);
  for (const server of [a, b, a, b]) await server.server.services.golden.check();
  assert.deepEqual(await golden(b), first, 'B found its file to hold the golden image already: no new version');

  // A new golden.img on B replaces the golden image for every station, once.
  await dropGolden(b, v2);
  const second = await golden(a);
  assert.equal(second.sha256, sha2);
  assert.notEqual(second.id, first.id);
  for (const server of [a, b, a, b]) await server.server.services.golden.check();
  assert.deepEqual(await golden(a), second, "A's unchanged file does not bring back the old version");

  // And A's next new file wins in turn.
  await dropGolden(a, v1);
  const third = await golden(b);
  assert.equal(third.sha256, sha1);
  assert.notEqual(third.id, first.id, 'a new version, made of the bytes A now holds');
});
