import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// The client's two data paths: cm4prov-io (the initramfs has it) and dd + sha256sum (IO_HELPER=none,
// or an initramfs built without the cross compiler). Both must deploy, resume and back up alike.

const EMMC_BYTES = 96 * 1024 * 1024;
const CHUNKS = /^\/api\/device-jobs\/\d+\/chunks\?/;

async function serverWithImage(t: TestContext, faults: Fault[] = []) {
  const proxy = await startFaultProxy(t, faults, { path: CHUNKS });
  const server = await startTestServer(t, { publicUrl: proxy.url });
  proxy.forwardTo(server.url);
  const { image } = makeExt4Image(tempDir(t), 64);
  const added = await fetch(`${server.url}/api/images?name=os&default=true`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: readFileSync(image) });
  assert.equal(added.status, 201, await added.text());
  await server.server.services.caches.idle();
  const view = (await server.admin('GET', '/api/images/os')).body;
  const blockMap = server.server.services.blockMaps.get(server.server.services.images.requireImage('os').block_map_id!)!;
  return { proxy, server, image, view, cacheBytes: blockMap.cache_bytes! };
}

async function deployWith(t: TestContext, server: TestServer, env: Record<string, string>) {
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const code = await client.exited;
  return { emmc, client, code, job: (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body };
}

for (const path of ['cm4prov-io', 'dd and sha256sum'] as const) {
  const env: Record<string, string> = path === 'cm4prov-io' ? {} : { IO_HELPER: 'none' };

  test(`${path}: a zstd chunk stream that stalls halfway resumes at the first unverified chunk; the job ends ok with its phases`, async (t) => {
    const faults: Fault[] = []; // read by the proxy per request: the stall point is known once the image is in
    const { proxy, server, view, cacheBytes } = await serverWithImage(t, faults);
    faults.push({ stallAfter: Math.floor(cacheBytes / 2) });
    const { emmc, client, code, job } = await deployWith(t, server, { ...env, STALL_TIMEOUT: '3' });
    assert.equal(code, 0, client.output());
    assert.equal(job.state, 'ok', job.error);
    assert.match(client.output(), path === 'cm4prov-io' ? /data path: cm4prov-io \d+/ : /data path: dd and sha256sum \(no cm4prov-io\)/);
    assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'zstd', full_match: false });
    assert.equal(job.bytes_verified, view.block_map.mapped_bytes);
    assert.equal(proxy.faulted.length, 2, 'one stalled request, one resumed');
    assert.match(proxy.faulted[1]!, /^bytes=[1-9]\d*-$/, 'the second request starts after the chunks already verified');
    assert.ok(job.phase_seconds.writing > 0 && job.phase_seconds.verifying >= 0, JSON.stringify(job.phase_seconds));
    if (path === 'cm4prov-io') {
      // Verification overlaps writing: while the stream still stalls (phase writing), the chunks
      // that arrived have been read back and checked already.
      const overlapped = proxy.progress.find((p) => p.phase === 'writing' && (p.bytes_verified ?? 0) > 0 && p.bytes_verified! <= p.bytes_written!);
      assert.ok(overlapped, `a writing report with chunks verified: ${JSON.stringify(proxy.progress)}`);
    }
    assert.equal(await sha256OfFile(emmc, view.size), view.sha256, 'the target holds the image');
  });

  test(`${path}: a zstd backup of an eMMC holding an OS is stored with the eMMC's own sha256`, async (t) => {
    const { server, image } = await serverWithImage(t);
    const emmc = join(tempDir(t), 'emmc.img');
    await makeFakeEmmc(emmc, EMMC_BYTES);
    writeFileSync(emmc, readFileSync(image), { flag: 'r+' });
    const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
    await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
    const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
    assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
    assert.equal(await client.exited, 0, client.output());
    const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
    assert.equal(job.state, 'ok', job.error);
    assert.equal(job.transfer.encoding, 'zstd');
    const sha = await sha256OfFile(emmc);
    assert.equal(job.sha256, sha, 'the device read the whole eMMC');
    assert.equal(server.server.services.backups.get(job.backup_id).sha256, sha, 'the server stored what the device read');
  });
}

test('IO_HELPER takes auto or none: anything else is exit 2 with a sentence', async (t) => {
  const server = await startTestServer(t);
  const client = runClient(t, { server: server.url, target: join(tempDir(t), 'x'), mac: MAC, env: { IO_HELPER: 'fast' } });
  assert.equal(await client.exited, 2);
  assert.match(client.output(), /IO_HELPER must be auto or none, not 'fast'/);
});
