import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { CLI, runCli, runCliWithInput, startCli } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, tempDir } from '../helpers/server.js';

function settingsFile(t: TestContext, settings: Record<string, unknown>): string {
  const file = join(tempDir(t), 'config.json');
  writeFileSync(file, JSON.stringify(settings));
  return file;
}

const PASSWORD = 'bench password 42\n';

test('admin password finds the data folder as serve does: flag > env > settings file, and says which it wrote', async (t) => {
  const server = await startTestServer(t);
  const database = join(server.dataDir, 'cm4prov.sqlite');
  const file = settingsFile(t, { 'data-dir': server.dataDir });

  const fromEnvFile = await runCliWithInput(['admin', 'password'], { CM4PROV_CONFIG: file }, PASSWORD);
  assert.equal(fromEnvFile.code, 0, fromEnvFile.stderr);
  assert.ok(fromEnvFile.stdout.startsWith(`Admin password set in ${database} (data folder ${server.dataDir}, from CM4PROV_CONFIG=${file}).`), fromEnvFile.stdout);
  assert.equal(await server.server.services.passwords.check(PASSWORD.trim()), true);

  const fromFlagFile = await runCliWithInput(['admin', 'password', '--config', file], {}, PASSWORD);
  assert.ok(fromFlagFile.stdout.startsWith(`Admin password set in ${database} (data folder ${server.dataDir}, from --config ${file}).`), fromFlagFile.stdout);

  // The settings file names an empty folder; the flag, then the environment, win over it.
  const empty = join(tempDir(t), 'empty');
  mkdirSync(empty);
  const elsewhere = settingsFile(t, { 'data-dir': empty });
  const flag = await runCliWithInput(['admin', 'password', '--config', elsewhere, '--data-dir', server.dataDir], {}, PASSWORD);
  assert.ok(flag.stdout.startsWith(`Admin password set in ${database} (data folder ${server.dataDir}, from --data-dir).`), flag.stdout);
  const env = await runCliWithInput(['admin', 'password'], { CM4PROV_CONFIG: elsewhere, CM4PROV_DATA_DIR: server.dataDir }, PASSWORD);
  assert.ok(env.stdout.startsWith(`Admin password set in ${database} (data folder ${server.dataDir}, from CM4PROV_DATA_DIR).`), env.stdout);

  const none = await runCliWithInput(['admin', 'password', '--config', elsewhere], {}, PASSWORD);
  assert.equal(none.code, 2);
  assert.equal(
    none.stderr,
    `cm4prov: no server database in ${empty} (from --config ${elsewhere}): start the server once on that folder, or name the server's own with --data-dir or --config\n`,
  );
  const broken = settingsFile(t, { 'data-dir': server.dataDir, prot: 5000 });
  const bad = await runCliWithInput(['admin', 'password', '--config', broken], {}, PASSWORD);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^cm4prov: Config file .* has an unknown setting 'prot'/);
});

test("admin password on a database it may not write says so before asking for a password", { skip: process.getuid?.() !== 0 && 'needs root to run as nobody' }, async (t) => {
  const server = await startTestServer(t);
  chmodSync(server.dataDir, 0o755); // nobody may look in, not write
  chmodSync(join(server.dataDir, '..'), 0o755);
  const asNobody = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', 'HOME=/tmp', `PATH=${process.env.PATH}`, process.execPath, CLI, 'admin', 'password', '--data-dir', server.dataDir],
    { input: PASSWORD, encoding: 'utf8' },
  );
  assert.equal(asNobody.status, 2, asNobody.stderr);
  assert.equal(asNobody.stderr, `cm4prov: cannot write ${join(server.dataDir, 'cm4prov.sqlite')} (from --data-dir): run this as the server's user or root\n`);
  assert.equal(await server.server.services.passwords.isSet(), false);
});

test("admin commands find the token in the settings file's data folder and the URL from its port (0.0.0.0 → 127.0.0.1)", async (t) => {
  const server = await startTestServer(t);
  const file = settingsFile(t, { 'data-dir': server.dataDir, host: '0.0.0.0', port: server.server.port });
  const devices = await runCli(['devices'], { CM4PROV_CONFIG: file });
  assert.equal(devices.code, 0, devices.stderr);
  assert.match(devices.stdout, /^No device has registered yet/);

  const port = await freePort();
  const gone = settingsFile(t, { 'data-dir': server.dataDir, port });
  const unreachable = await runCli(['devices', '--config', gone], {});
  assert.equal(unreachable.code, 3);
  assert.equal(
    unreachable.stderr,
    `cm4prov: cannot reach the server at http://127.0.0.1:${port} (ECONNREFUSED); is \`cm4prov serve\` running there (URL from --config ${gone})?\n`,
  );
  const noToken = await runCli(['devices', '--server', server.url, '--config', settingsFile(t, { 'data-dir': tempDir(t) })], {});
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /^cm4prov: no admin token: .*\(\/.*\/admin-token is missing or empty; data folder \/.*, from --config \/.*config\.json\)\n$/);
});

test('serve, the admin commands and admin password agree on one settings file; serve logs JSON lines into a pipe', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  const port = await freePort();
  const file = settingsFile(t, { 'data-dir': dataDir, host: '127.0.0.1', port });
  const env = { CM4PROV_CONFIG: file };
  const serve = startCli(t, ['serve'], env);
  await serve.waitForOutput(/cm4-provisioning server ready/);
  const lines = serve.output().trim().split('\n').map((line) => JSON.parse(line));
  assert.ok(lines.every((line) => line.level === 30 && typeof line.msg === 'string'), 'JSON lines only');
  assert.equal(lines[0].msg, `settings read from CM4PROV_CONFIG=${file}`);
  assert.equal(lines.find((line) => line.msg === 'cm4-provisioning server ready').dataDir, dataDir);

  const devices = await runCli(['devices', '--json'], env);
  assert.equal(devices.code, 0, devices.stderr);
  assert.deepEqual(JSON.parse(devices.stdout), []);
  const password = await runCliWithInput(['admin', 'password'], env, PASSWORD);
  assert.ok(password.stdout.startsWith(`Admin password set in ${join(dataDir, 'cm4prov.sqlite')} (data folder ${dataDir}, from CM4PROV_CONFIG=${file}).`), password.stdout);
  serve.kill('SIGTERM');
  assert.equal(await serve.exited, 0);
});

test('on a terminal, serve logs readable lines through pino-pretty', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  const port = await freePort();
  const serve = startCli(t, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir], {}, { tty: true });
  await serve.waitForOutput(/cm4-provisioning server ready/);
  // eslint-disable-next-line no-control-regex
  const text = serve.output().replace(/\x1b\[[0-9;]*m/g, '');
  assert.match(text, /^\[\d\d:\d\d:\d\d\] INFO: cm4-provisioning server ready\r?\n\s+url: "http:\/\/127\.0\.0\.1:\d+"/m);
  assert.doesNotMatch(text, /^\{"level"/m, 'no JSON line');
  assert.match(serve.output(), /\x1b\[3\dm/, 'coloured');
});
