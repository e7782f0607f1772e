import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { createCacheBuilder } from '../../src/blockmap/cache-builder.js';
import { createBlockMapStore } from '../../src/blockmap/store.js';
import type { StationDatabase } from '../../src/db/database.js';
import { createImageLibrary } from '../../src/images/library.js';
import { createImageStore } from '../../src/images/store.js';
import { systemClock } from '../../src/shared/clock.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** Every image file in a data folder, content-addressed (images/sha256/) or older (images/). */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img'));

// What two requests (or two stations) doing the same at once get from the library, on both databases.

function library(t: TestContext, { db }: StationDatabase) {
  const dataDir = tempDir(t);
  for (const dir of ['images', 'tmp']) mkdirSync(join(dataDir, dir));
  const log = pino({ level: 'silent' });
  const blockMaps = createBlockMapStore(db);
  const caches = createCacheBuilder({ store: blockMaps, dataDir, log });
  // The jobs' answer to "is this image in use?": never, once `beforeInUse` has let it through.
  const hooks = { beforeInUse: async () => {} };
  const imageInUse = async () => (await hooks.beforeInUse(), false);
  const images = createImageLibrary({ store: createImageStore(db), blockMaps, caches, dataDir, clock: systemClock, bus: createEventBus(), log, imageInUse });
  return { images, caches, dataDir, hooks };
}

/** A hook both callers must reach before either goes on. */
function meetingPoint(): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const both = new Promise<void>((resolve) => (release = resolve));
  return async () => {
    if (++arrived === 2) release();
    await both;
  };
}

const rejected = (results: PromiseSettledResult<unknown>[]) =>
  results.flatMap((result) => (result.status === 'rejected' ? [result.reason as { statusCode: number; message: string }] : []));

testOnBothDatabases('two uploads of one name at once: one is added, the other gets the 409 sentence and leaves no file', async (t, database) => {
  const { images, caches, dataDir } = library(t, database);
  const bothChecked = meetingPoint();
  const upload = (byte: number) => images.addFromStream(Readable.from([Buffer.alloc(5000, byte)]), { name: 'race', origin: null, beforePublish: bothChecked });
  const results = await Promise.allSettled([upload(1), upload(2)]);
  assert.deepEqual(
    rejected(results).map((error) => [error.statusCode, error.message]),
    [[409, "an image named 'race' already exists"]],
  );
  assert.equal((await images.list()).length, 1);
  assert.equal(imageFiles(dataDir).length, 1, "the loser's file is removed");
  assert.deepEqual(readdirSync(join(dataDir, 'tmp')), []);
  await caches.idle();
});

testOnBothDatabases('two removals of one image at once: one removes it, the other says it is not there; the default goes with it', async (t, database) => {
  const { images, caches, hooks } = library(t, database);
  await images.addFromStream(Readable.from([Buffer.alloc(3000, 7)]), { name: 'base', origin: null, makeDefault: true });
  assert.equal((await images.list())[0]!.default, true);
  hooks.beforeInUse = meetingPoint(); // both removals found the image and ask whether it is in use
  const results = await Promise.allSettled([images.remove('base'), images.remove('base')]);
  assert.deepEqual(
    rejected(results).map((error) => [error.statusCode, error.message]),
    [[404, "there is no image named 'base' (see: cm4prov image list)"]],
  );
  await assert.rejects(images.setDefault('base'), { statusCode: 404 });
  await images.addFromStream(Readable.from([Buffer.alloc(3000, 8)]), { name: 'base', origin: null });
  assert.equal((await images.list())[0]!.default, false, 'a new image of the removed name is not the default');
  await caches.idle();
});

testOnBothDatabases('an image removed while another with the same bytes is added: their one file stays, for the one added', async (t, database) => {
  const { images, caches, dataDir, hooks } = library(t, database);
  const bytes = Buffer.alloc(6000, 5);
  const first = await images.addFromStream(Readable.from([bytes]), { name: 'a', origin: null });
  const together = meetingPoint();
  hooks.beforeInUse = together; // the removal has found the image; the upload is hashed and about to be placed
  const results = await Promise.allSettled([
    images.remove('a'),
    images.addFromStream(Readable.from([bytes]), { name: 'b', origin: null, beforePublish: together }),
  ]);
  assert.deepEqual(rejected(results), []);
  await waitFor("a's claim on the file swept", async () => (await images.get(first.id))!.file_removed === 1);
  const added = await images.requireImage('b');
  assert.equal(added.file, first.file, 'the same file');
  assert.deepEqual(imageFiles(dataDir), [first.file.slice('images/'.length)]);
  assert.equal(await images.fileProblem(added), null, 'b deploys');
  await caches.idle();
});
