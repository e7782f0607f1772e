import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir } from '../helpers/server.js';

test('backup promote makes a backup the real client took an image, default on request, and refuses what it cannot', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 8 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await client.waitForOutput(/waiting for the operator/);
  const backup = await runCli(['backup', MAC, '--wait', '--json'], env);
  assert.equal(backup.code, 0, backup.stderr);
  const backupId = JSON.parse(backup.stdout).backup_id as number;
  const emmcSha = await sha256OfFile(emmc);

  const promoted = await runCli(['backup', 'promote', String(backupId), '--name', 'golden-from-bench', '--default'], env);
  assert.equal(promoted.code, 0, promoted.stderr);
  assert.equal(promoted.stdout, `Made image golden-from-bench from backup ${backupId}: 8.00 MiB, sha256 ${emmcSha} (default).\n`);
  const images = JSON.parse((await runCli(['image', 'list', '--json'], env)).stdout);
  assert.deepEqual(
    images.map((i: any) => [i.name, i.sha256, i.size, i.default, i.source]),
    [['golden-from-bench', emmcSha, 8 * 1024 * 1024, true, 'backup']],
  );
  assert.match((await runCli(['image', 'list'], env)).stdout, /^golden-from-bench\s+8\.00 MiB/m);
  assert.deepEqual(images[0].copies.map((c: any) => [c.station, c.state, c.bytes_done]), [[server.server.services.config.station, 'complete', 8 * 1024 * 1024]], 'its copy on this station, complete');

  // Without --name: the dashboard's suggestion; not made default.
  const named = await runCli(['backup', 'promote', String(backupId), '--json'], env);
  assert.equal(named.code, 0, named.stderr);
  assert.deepEqual([JSON.parse(named.stdout).name, JSON.parse(named.stdout).default], [`backup-dca632000001-${backupId}`, false]);

  const taken = await runCli(['backup', 'promote', String(backupId), '--name', 'golden-from-bench'], env);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /^cm4prov: the server refused: an image named 'golden-from-bench' already exists/);
  const missing = await runCli(['backup', 'promote', '999', '--name', 'x'], env);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'cm4prov: the server refused: there is no backup 999\n');
  const notAnId = await runCli(['backup', 'promote', 'latest'], env);
  assert.equal(notAnId.code, 2);
  assert.equal(notAnId.stderr, "cm4prov: 'latest' is not a backup id: expected a number from the ID column of `cm4prov backups`\n");
  assert.equal(JSON.parse((await runCli(['image', 'list', '--json'], env)).stdout).length, 2, 'the refusals added nothing');
});
