import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import type { Fault } from '../helpers/fault-proxy.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { serverWithChunkedImage } from '../helpers/chunk-stream-server.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// The client's two data paths: cm4prov-io (the initramfs has it) and dd + sha256sum (IO_HELPER=none,
// or an initramfs built without the cross compiler). Both must deploy, resume and back up alike.

const EMMC_BYTES = 96 * 1024 * 1024;

for (const path of ['cm4prov-io', 'dd and sha256sum'] as const) {
  const env: Record<string, string> = path === 'cm4prov-io' ? {} : { IO_HELPER: 'none' };

  test(`${path}: a zstd chunk stream that stalls halfway resumes at the first unverified chunk; the job ends ok with its phases`, async (t) => {
    const faults: Fault[] = []; // read by the proxy per request: the stall point is known once the image is in
    const { proxy, server, view, cacheBytes } = await serverWithChunkedImage(t, faults);
    faults.push({ stallAfter: Math.floor(cacheBytes / 2) });
    const emmc = join(tempDir(t), 'emmc.img');
    await makeFakeEmmc(emmc, EMMC_BYTES);
    // No stall timeout runs out here: the test cuts the stalled stream once it has seen what it looks for.
    const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { ...env, STALL_TIMEOUT: '600' } });
    await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
    const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
    assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
    const during = await waitFor('the first half written', async () => {
      const running = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
      // With cm4prov-io, verification overlaps writing: chunks that arrived are read back and
      // checked while the stream is still open (here: stalled), in phase writing.
      const seen = path === 'cm4prov-io' ? running.phase === 'writing' && running.bytes_verified > 0 : running.bytes_written > 0;
      return seen && running;
    });
    assert.ok(during.bytes_written < view.block_map.mapped_bytes, 'seen before the stream ended');
    if (path === 'cm4prov-io') assert.ok(during.bytes_verified <= during.bytes_written, JSON.stringify(during));
    proxy.endStalls();
    assert.equal(await client.exited, 0, client.output());
    const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
    assert.equal(job.state, 'ok', job.error);
    assert.match(client.output(), path === 'cm4prov-io' ? /data path: cm4prov-io \d+/ : /data path: dd and sha256sum \(no cm4prov-io\)/);
    assert.match(client.output(), /chunk stream cut at range [1-9]\d* of \d+ .*resuming from it/);
    assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'zstd', full_match: false });
    assert.equal(job.bytes_verified, view.block_map.mapped_bytes);
    assert.equal(proxy.faulted.length, 2, 'one stalled request, one resumed');
    assert.match(proxy.faulted[1]!, /^bytes=[1-9]\d*-$/, 'the second request starts after the chunks already verified');
    assert.ok(job.phase_seconds.writing > 0 && job.phase_seconds.verifying >= 0, JSON.stringify(job.phase_seconds));
    assert.equal(await sha256OfFile(emmc, view.size), view.sha256, 'the target holds the image');
  });

  test(`${path}: a zstd backup of an eMMC holding an OS is stored with the eMMC's own sha256`, async (t) => {
    const { server, image } = await serverWithChunkedImage(t);
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
    assert.equal((await server.server.services.backups.get(job.backup_id)).sha256, sha, 'the server stored what the device read');
  });
}

test('IO_HELPER takes auto or none: anything else is exit 2 with a sentence', async (t) => {
  const server = await startTestServer(t);
  const client = runClient(t, { server: server.url, target: join(tempDir(t), 'x'), mac: MAC, env: { IO_HELPER: 'fast' } });
  assert.equal(await client.exited, 2);
  assert.match(client.output(), /IO_HELPER must be auto or none, not 'fast'/);
});
