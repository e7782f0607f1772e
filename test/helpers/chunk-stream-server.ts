import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { Config } from '../../src/config.js';
import { makeExt4Image } from './ext4.js';
import { startFaultProxy, type Fault } from './fault-proxy.js';
import { startTestServer, tempDir } from './server.js';

const CHUNKS = /^\/api\/device-jobs\/\d+\/chunks\?/;

/**
 * A server whose default image `os` is a 64 MiB ext4 image with its zstd chunk cache built, behind
 * a fault proxy on the chunk stream (`faults`, read per request: push to it once `cacheBytes` is known).
 */
export async function serverWithChunkedImage(t: TestContext, faults: Fault[] = [], overrides: Partial<Record<keyof Config, unknown>> = {}) {
  const proxy = await startFaultProxy(t, faults, { path: CHUNKS });
  const server = await startTestServer(t, { publicUrl: proxy.url, ...overrides });
  proxy.forwardTo(server.url);
  const { image } = makeExt4Image(tempDir(t), 64);
  const added = await fetch(`${server.url}/api/images?name=os&default=true`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: readFileSync(image) });
  assert.equal(added.status, 201, await added.text());
  await server.server.services.caches.idle();
  const view = (await server.admin('GET', '/api/images/os')).body;
  const { services } = server.server;
  const blockMap = (await services.blockMaps.get((await services.images.requireImage('os')).block_map_id!))!;
  return { proxy, server, image, view, cacheBytes: blockMap.cache_bytes! };
}
