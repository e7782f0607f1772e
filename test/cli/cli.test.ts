import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, runCli, runCliOnTty, runCliWithInput } from '../helpers/cli.js';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

test('cm4prov serve starts on the given data dir and port, creates the admin token, and stops on SIGTERM', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  const port = await freePort();
  const server = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir], { stdio: 'pipe' });
  t.after(() => server.kill('SIGKILL'));
  let output = '';
  server.stdout.on('data', (chunk) => (output += chunk));
  await waitFor('the server to answer', () => fetch(`http://127.0.0.1:${port}/api/device-action-poll?mac=${MAC}`).then((r) => r.ok, () => false), 20_000);
  const tokenFile = join(dataDir, 'admin-token');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600, 'only its owner may read the token');
  const token = readFileSync(tokenFile, 'utf8').trim();
  assert.equal((await fetch(`http://127.0.0.1:${port}/api/devices`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  assert.ok(existsSync(join(dataDir, 'cm4prov.sqlite')));
  assert.match(output, /cm4-provisioning server ready/);
  const exited = new Promise((resolve) => server.on('exit', resolve));
  server.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('cm4prov serve with a bad option stops with one sentence and exit code 2', async () => {
  const bad = await runCli(['serve', '--port', 'http']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), "cm4prov: Invalid --port: 'http' is not a port: expected a whole number from 1 to 65535 (0 picks a free one).");
  const env = await runCli(['serve'], { CM4PROV_DEVICE_NETWORK: '10.20.50.0/99' });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /^cm4prov: Invalid CM4PROV_DEVICE_NETWORK: .*bad prefix length/);
});

test('without a token, or without a server, commands say so and exit 2 or 3', async (t) => {
  const noToken = await runCli(['devices'], { CM4PROV_DATA_DIR: tempDir(t) });
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /^cm4prov: no admin token: set CM4PROV_TOKEN, pass --token, or point --data-dir/);
  const port = await freePort();
  const noServer = await runCli(['devices', '--server', `http://127.0.0.1:${port}`, '--token', 'x']);
  assert.equal(noServer.code, 3);
  assert.match(noServer.stderr, /cannot reach the server at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  const server = await startTestServer(t);
  const wrongToken = await runCli(['devices', '--server', server.url, '--token', 'wrong']);
  assert.equal(wrongToken.code, 3);
  assert.match(wrongToken.stderr, /the bearer token is not valid/);
});

test('image add/list/default/rm, devices, deploy --wait, backup --wait, jobs, backups and backup rm work end to end', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_DATA_DIR: server.dataDir };
  const dir = tempDir(t);
  const imageFile = join(dir, 'reterminal-bookworm.img');
  const imageSha = writeImageFile(imageFile, 3 * 1024 * 1024);

  const added = await runCli(['image', 'add', imageFile, '--default'], env);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, new RegExp(`Added image reterminal-bookworm: 3.00 MiB, [\\d.]+ MiB mapped in \\d+ chunks \\(empty blocks skipped\\), sha256 ${imageSha} \\(default\\)`));
  const listed = JSON.parse((await runCli(['image', 'list', '--json'], env)).stdout);
  assert.deepEqual(listed.map((i: any) => [i.name, i.sha256, i.default]), [['reterminal-bookworm', imageSha, true]]);
  const table = await runCli(['image', 'list'], env);
  assert.match(table.stdout, /^NAME\s+SIZE\s+MAPPED\s+ZSTD\s+SHA256/);

  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 16 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await waitFor('the device', async () => JSON.parse((await runCli(['devices', '--json'], env)).stdout).length === 1);

  const deploy = await runCli(['deploy', 'DC-A6-32-00-00-01', '--wait'], env);
  assert.equal(deploy.code, 0, deploy.stderr);
  assert.match(deploy.stdout, /^job \d+ ok: deployed reterminal-bookworm to dc:a6:32:00:00:01 in .*; [\d.]+ MiB in \d+ mapped ranges verified$/m);
  assert.equal(await client.exited, 0);
  assert.equal(await sha256OfFile(emmc, 3 * 1024 * 1024), imageSha);

  const inUse = await runCli(['image', 'rm', 'reterminal-bookworm'], env);
  assert.equal(inUse.code, 0, 'no job uses it any more');

  const backupClient = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await backupClient.waitForOutput(/waiting for the operator/);
  const backup = await runCli(['backup', MAC, '--wait', '--json'], env);
  assert.equal(backup.code, 0, backup.stderr);
  const backupJob = JSON.parse(backup.stdout);
  assert.equal(backupJob.state, 'ok');
  assert.equal(backupJob.sha256, await sha256OfFile(emmc));

  const backups = JSON.parse((await runCli(['backups', '--json', '--device', MAC], env)).stdout);
  assert.equal(backups.length, 1);
  assert.equal(backups[0].id, backupJob.backup_id);
  const jobs = JSON.parse((await runCli(['jobs', '--json'], env)).stdout);
  assert.deepEqual(jobs.map((j: any) => [j.kind, j.state]), [['backup', 'ok'], ['deploy', 'ok']]);
  const jobsTable = (await runCli(['jobs'], env)).stdout;
  assert.match(jobsTable, /deploy\s+ok\s+reterminal-bookworm/);

  // An option after the subcommand is the subcommand's own, not `backup`'s.
  const removed = await runCli(['backup', 'rm', String(backupJob.backup_id), '--json'], env);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(JSON.parse(removed.stdout), { deleted: backupJob.backup_id });
  assert.equal(JSON.parse((await runCli(['backups', '--json'], env)).stdout).length, 0);
  const again = await runCli(['backup', 'rm', String(backupJob.backup_id)], env);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /the server refused: there is no backup/);
});

test('deploy --wait exits 1 with the reason when the job fails; cancel ends a queued job', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  await registerDevice(server);
  const noImage = await runCli(['deploy', MAC], env);
  assert.equal(noImage.code, 1);
  assert.match(noImage.stderr, /the server refused: there is no image to deploy/);

  const imageFile = join(tempDir(t), 'x.img');
  writeImageFile(imageFile, 1000);
  await runCli(['image', 'add', imageFile, '--name', 'x', '--default'], env);
  const waiting = runCli(['deploy', MAC, '--wait'], env);
  const job = await waitFor('the job', async () => (await server.admin('GET', '/api/jobs')).body.jobs[0]);
  await server.admin('POST', `/api/jobs/${job.id}/cancel`);
  const result = await waiting;
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`job ${job.id} \\(deploy on dc:a6:32:00:00:01\\) cancelled: cancelled by the operator`));

  const queued = await runCli(['backup', MAC], env);
  assert.match(queued.stdout, /Queued job \d+: backup on dc:a6:32:00:00:01/);
  const cancelled = await runCli(['cancel', MAC], env);
  assert.equal(cancelled.code, 0);
  assert.match(cancelled.stdout, /Cancelled job \d+ \(backup on dc:a6:32:00:00:01\)/);
});

test('on a terminal, deploy --wait draws a progress bar with bytes, rate and ETA', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const dir = tempDir(t);
  const imageFile = join(dir, 'big.img');
  writeImageFile(imageFile, 48 * 1024 * 1024);
  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const add = await runCliOnTty(['image', 'add', imageFile, '--default'], env);
  assert.match(add.stdout, /\[#+-*\]\s+\d+%\s+[\d.]+ MiB \/ 48\.0 MiB .*uploading big/);
  // 16 MB/s (curl --limit-rate) keeps the 48 MiB deploy on screen for about three seconds.
  runClient(t, { server: server.url, target: emmc, mac: MAC, env: { RATE_LIMIT: '16M' } });
  await waitFor('the device', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const deploy = await runCliOnTty(['deploy', MAC, '--wait'], env);
  assert.equal(deploy.code, 0, deploy.stdout);
  const frames = deploy.stdout.split('\r\x1b[K').filter((frame) => frame.includes('writing'));
  // The bar counts the image's mapped bytes (its zero run is not sent).
  const midway = frames.find((frame) => /\[#+-+\]\s+[1-9]\d?%\s+[\d.]+ MiB \/ [\d.]+ MiB\s+[\d.]+ MB\/s\s+ETA \d+:\d\d\s+writing/.test(frame));
  assert.ok(midway, `a frame part-way through with rate and ETA; frames: ${JSON.stringify(frames)}`);
  assert.match(deploy.stdout, /job \d+ ok: deployed big/);
});

test('cm4prov admin password reads the password from stdin and stores only a scrypt hash', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_DATA_DIR: server.dataDir };
  const short = await runCliWithInput(['admin', 'password'], env, 'short\n');
  assert.equal(short.code, 2);
  assert.match(short.stderr, /at least 8 characters; nothing changed/);
  assert.equal(await server.server.services.passwords.isSet(), false);

  const set = await runCliWithInput(['admin', 'password'], env, 'line-3 bench password\n');
  assert.equal(set.code, 0, set.stderr);
  const database = join(server.dataDir, 'cm4prov.sqlite');
  assert.ok(set.stdout.startsWith(`Admin password set in ${database} (data folder ${server.dataDir}, from CM4PROV_DATA_DIR).`), set.stdout);
  const stored = (await server.server.services.passwords.hash())!;
  assert.match(stored, /^scrypt\$32768\$8\$1\$/);
  assert.ok(!stored.includes('bench'), 'not stored in clear');
  assert.equal(await server.server.services.passwords.check('line-3 bench password'), true);
  assert.equal(await server.server.services.passwords.check('line-3 bench passworD'), false);

  const none = join(tempDir(t), 'none');
  const nowhere = await runCliWithInput(['admin', 'password', '--data-dir', none], {}, 'whatever-long\n');
  assert.equal(nowhere.code, 2);
  assert.equal(
    nowhere.stderr,
    `cm4prov: no server database in ${none} (from --data-dir): start the server once on that folder, or name the server's own with --data-dir or --config\n`,
  );
});

test('image add takes .img.zst, names it without the suffixes, and uses the .bmap beside it', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const dir = tempDir(t);
  const { image, bmap } = makeExt4Image(dir, 32, { bmap: true });
  execFileSync('zstd', ['-q', image]);
  const added = await runCli(['image', 'add', `${image}.zst`, '--json'], env);
  assert.equal(added.code, 0, added.stderr);
  const view = JSON.parse(added.stdout);
  assert.equal(view.name, 'rootfs');
  assert.equal(view.sha256, await sha256OfFile(image));
  assert.equal(view.block_map.source, 'bmap', `used ${bmap}`);
  const plain = await runCli(['image', 'add', image, '--name', 'rootfs-zeros', '--no-bmap'], env);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /Added image rootfs-zeros: 32\.0 MiB, [\d.]+ MiB mapped in \d+ chunks \(empty blocks skipped\), sha256 [0-9a-f]{64}\./);
  const missing = await runCli(['image', 'add', image, '--name', 'x', '--bmap', join(dir, 'nope.bmap')], env);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read bmap file/);
});
