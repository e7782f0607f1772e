import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { buildCid, CM4_CID } from './cid.js';

test('cm4prov records: a table, every record as JSON, and CSV with one row per job', async (t) => {
  const server = await startTestServer(t);
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  await registerDevice(server, MAC, { serial: '10000000c0ffee01', model: 'Raspberry Pi Compute Module 4 Rev 1.1', emmc_cid: buildCid(CM4_CID) });
  await registerDevice(server, 'dc:a6:32:00:00:02', { serial: '10000000c0ffee02' });
  const backup = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;

  const table = await runCli(['records', '--search', 'c0ffee01'], env);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^SERIAL\s+MACS\s+MODEL\s+EMMC\s+JOBS\s+LAST JOB\s+LAST SEEN/);
  assert.match(table.stdout, /10000000c0ffee01\s+dc:a6:32:00:00:01\s+Raspberry Pi Compute Module 4 Rev 1\.1\s+Samsung BJTD4R 64\.0 MiB\s+1\s+\d+ backup queued/);
  assert.doesNotMatch(table.stdout, /c0ffee02/);

  const json = await runCli(['records', '--json'], env);
  assert.equal(json.code, 0, json.stderr);
  const records = JSON.parse(json.stdout);
  assert.deepEqual(records.map((r: { key: string }) => r.key), ['10000000c0ffee01', '10000000c0ffee02']);
  assert.equal(records[0].emmc.manufacturer, 'Samsung');
  assert.equal(records[0].jobs[0].id, backup.id);

  const csv = await runCli(['records', '--csv', '--search', 'dc:a6:32:00:00:01'], env);
  assert.equal(csv.code, 0, csv.stderr);
  const lines = csv.stdout.trimEnd().split('\r\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^record,serial,device_mac,model,emmc_cid,/);
  assert.match(lines[1]!, new RegExp(`^10000000c0ffee01,10000000c0ffee01,${MAC},Raspberry Pi Compute Module 4 Rev 1\\.1,${buildCid(CM4_CID)},Samsung,BJTD4R,.*,${backup.id},backup,queued,`));

  const both = await runCli(['records', '--json', '--csv'], env);
  assert.equal(both.code, 2);
  assert.equal(both.stderr.trim(), 'cm4prov: --json and --csv cannot be given together');
});
