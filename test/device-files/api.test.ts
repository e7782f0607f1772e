import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from '../helpers/server.js';

const file = (template: string, path = '/user-data') => ({ partition: 1, fs: 'vfat', path, template });

test('profiles: saved, listed, shown, removed; an unknown variable or a bad path is refused at save with a sentence naming it', async (t) => {
  const server = await startTestServer(t);
  const unknown = await server.admin('POST', '/api/profiles', { name: 'lab', files: [file('hostname: {{hostname}}\n')] });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.message, /^file \/user-data \(partition 1, vfat\): \{\{hostname\}\} is not a variable; use \{\{serial\}\}, .* or \{\{table\.COLUMN\}\}$/);
  const spaced = await server.admin('POST', '/api/profiles', { name: 'lab', files: [file('x', '/my file')] });
  assert.equal(spaced.status, 400);
  assert.match(spaced.body.message, /without spaces/);
  const twice = await server.admin('POST', '/api/profiles', { name: 'lab', files: [file('a'), file('b')] });
  assert.equal(twice.body.message, 'file /user-data (partition 1, vfat) is listed twice');
  assert.equal((await server.admin('GET', '/api/profiles')).body.profiles.length, 0, 'nothing refused was stored');

  const saved = await server.admin('POST', '/api/profiles', { name: 'lab', files: [file('{{serial}} {{table.asset_tag}}')] });
  assert.equal(saved.status, 201);
  assert.equal(saved.body.files[0].mode, '0644');
  assert.deepEqual((await server.admin('GET', '/api/profiles')).body.profiles.map((p: { name: string }) => p.name), ['lab']);
  assert.equal((await server.admin('DELETE', '/api/profiles/lab')).status, 200);
  assert.equal((await server.admin('GET', '/api/profiles/lab')).status, 404);
});

test('device table: a CSV replaces it; the API shows columns and row count, never values; bad CSVs get one sentence', async (t) => {
  const server = await startTestServer(t);
  const csv = 'mac,hostname,wifi_key\r\nDC-A6-32-01-02-03,"line, 7",hunter2\r\n';
  const response = await fetch(`${server.url}/api/device-table`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'text/csv' },
    body: csv,
  });
  const imported = (await response.json()) as { table: { key_column: string; columns: string[]; rows: number } };
  assert.equal(response.status, 200);
  assert.deepEqual([imported.table.key_column, imported.table.columns, imported.table.rows], ['mac', ['mac', 'hostname', 'wifi_key'], 1]);
  const shown = await server.admin('GET', '/api/device-table');
  assert.ok(!JSON.stringify(shown.body).includes('hunter2'));

  const noKey = await server.admin('POST', '/api/device-table', { csv: 'hostname\nx\n' });
  assert.equal(noKey.status, 400);
  assert.equal(noKey.body.message, 'the device table needs a column named serial or mac, which says which device each row is for');
  const short = await server.admin('POST', '/api/device-table', { csv: 'serial,hostname\nabc\n' });
  assert.equal(short.body.message, 'device table row 2 has 1 fields; the header has 2');
  const badMac = await server.admin('POST', '/api/device-table', { csv: 'mac,wifi_key\nnot-a-mac,hunter2\n' });
  assert.equal(badMac.body.message, 'device table row 2: its mac is not a MAC address');
  assert.ok(!JSON.stringify(badMac.body).includes('hunter2'));
  assert.equal((await server.admin('GET', '/api/device-table')).body.table.rows, 1, 'a refused import leaves the table as it was');
});

test('ordering with a profile that does not exist, or a device with no serial for {{serial}}, is refused before anything is queued', async (t) => {
  const server = await startTestServer(t);
  await server.device('POST', '/api/register-device', { mac: 'dc:a6:32:00:00:09', storage_bytes: 64 * 1024 * 1024 });
  const image = await fetch(`${server.url}/api/images?name=os&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body: Buffer.alloc(1024 * 1024, 1),
  });
  assert.equal(image.status, 201);
  const missing = await server.admin('POST', '/api/devices/dc:a6:32:00:00:09/deploy', { profile: 'nope' });
  assert.equal(missing.status, 400);
  assert.equal(missing.body.message, "there is no profile 'nope'; nothing was queued");
  await server.admin('POST', '/api/profiles', { name: 'ids', files: [file('{{serial}}', '/serial')] });
  const noSerial = await server.admin('POST', '/api/devices/dc:a6:32:00:00:09/deploy', { profile: 'ids' });
  assert.equal(noSerial.status, 400);
  assert.equal(
    noSerial.body.message,
    "file /serial (partition 1) of profile 'ids' needs {{serial}} for dc:a6:32:00:00:09, but device dc:a6:32:00:00:09 has no serial (its client did not report one); nothing was queued",
  );
  assert.equal((await server.admin('GET', '/api/jobs')).body.jobs.length, 0);
});
