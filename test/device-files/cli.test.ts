import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';

test('cm4prov profiles add/list/show/rm and device-table import/show talk to the admin API', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  const dir = tempDir(t);
  writeFileSync(join(dir, 'user-data.tmpl'), '#cloud-config\nhostname: {{table.hostname}}\n');
  writeFileSync(join(dir, 'hostname.tmpl'), '{{table.hostname}}\n');
  writeFileSync(join(dir, 'table.csv'), 'serial,hostname,wifi_key\n10000000abcdef01,line-07,hunter2\n');

  const added = await runCli(['profiles', 'add', 'lab', '--file', `1:/user-data=${join(dir, 'user-data.tmpl')}`, '--file', `2:ext4:/etc/hostname=${join(dir, 'hostname.tmpl')}`], env);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /^Profile lab saved: 2 files\./);
  const stored = (await server.admin('GET', '/api/profiles/lab')).body;
  assert.deepEqual(stored.files.map((f: { partition: number; fs: string; path: string }) => [f.partition, f.fs, f.path]), [[1, 'vfat', '/user-data'], [2, 'ext4', '/etc/hostname']]);

  const list = await runCli(['profiles', 'list'], env);
  assert.match(list.stdout, /lab\s+1:\/user-data 2:\/etc\/hostname\s+1/);
  const shown = await runCli(['profiles', 'show', 'lab'], env);
  assert.match(shown.stdout, /partition 1 \(vfat\) \/user-data mode 0644\n#cloud-config\nhostname: \{\{table\.hostname\}\}/);

  // `+` before the path: the text is appended to the image's file.
  writeFileSync(join(dir, 'extra.tmpl'), 'systemd.hostname={{table.hostname}}\n');
  const appended = await runCli(['profiles', 'add', 'boot', '--file', `1:+/cmdline.txt=${join(dir, 'extra.tmpl')}`, '--file', `2:ext4:/etc/hostname=${join(dir, 'hostname.tmpl')}`], env);
  assert.equal(appended.code, 0, appended.stderr);
  const boot = (await server.admin('GET', '/api/profiles/boot')).body;
  assert.deepEqual(boot.files.map((f: { path: string; append: boolean }) => [f.path, f.append]), [['/cmdline.txt', true], ['/etc/hostname', false]]);
  assert.match((await runCli(['profiles', 'list'], env)).stdout, /boot\s+1:\+\/cmdline\.txt 2:\/etc\/hostname\s+1/);
  assert.match((await runCli(['profiles', 'show', 'boot'], env)).stdout, /partition 1 \(vfat\) \/cmdline\.txt mode 0644, appended to the image's file\nsystemd\.hostname=/);

  const bad = await runCli(['profiles', 'add', 'x', '--file', '/user-data'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--file takes PART:PATH=TEMPLATE_FILE/);
  writeFileSync(join(dir, 'bad.tmpl'), '{{hostname}}');
  const refused = await runCli(['profiles', 'add', 'x', '--file', `1:/h=${join(dir, 'bad.tmpl')}`], env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /\{\{hostname\}\} is not a variable/);

  const imported = await runCli(['device-table', 'import', join(dir, 'table.csv')], env);
  assert.equal(imported.code, 0, imported.stderr);
  assert.equal(imported.stdout, 'Device table imported: 1 rows keyed by serial; columns serial, hostname, wifi_key.\n');
  const table = await runCli(['device-table', 'show'], env);
  assert.match(table.stdout, /^1 rows keyed by serial; columns serial, hostname, wifi_key; imported /);
  assert.ok(!table.stdout.includes('hunter2'));

  assert.equal((await runCli(['profiles', 'rm', 'lab'], env)).code, 0);
  assert.equal((await server.admin('GET', '/api/profiles/lab')).status, 404);
});
