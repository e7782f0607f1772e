import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/server.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { fatFile, scratch } from '../device-files/helpers.js';
import { startReceiver } from '../notify/listeners.js';
import { firstBootCall, manualClock, prepareLine } from './helpers.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';

const CONFIRMED = 'dc:a6:32:00:13:21';
const SILENT = 'dc:a6:32:00:13:22';

/** The token the deploy wrote into the hook script on the boot partition. */
const tokenIn = (emmc: string) => /^TOKEN='([^']+)'$/m.exec(fatFile(emmc, '/cm4prov-firstboot.sh'))![1]!;

test('webhooks get job.confirmed and job.not_confirmed with the first boot in the job; a confirming deploy is labelled when confirmed, not at ok', async (t) => {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await prepareLine(server, dir);
  const receiver = await startReceiver(t);
  const hook = await server.admin('POST', '/api/webhooks', { url: receiver.url, events: ['job.ok', 'job.confirmed', 'job.not_confirmed'] });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  const spool = tempDir(t);
  const labels = await server.admin('POST', '/api/labels', { template: '^XA^FD{{mac_plain}} {{image}}^FS^XZ', output: spool });
  assert.equal(labels.status, 200, JSON.stringify(labels.body));
  const { notify, firstBoot } = server.server.services;

  const deployed: Record<string, { job: number; emmc: string }> = {};
  for (const mac of [CONFIRMED, SILENT]) {
    await server.device('POST', '/api/register-device', { mac, storage_bytes: 64 * 1024 * 1024 });
    const ordered = await server.admin('POST', `/api/devices/${mac}/deploy`, { image: 'os', confirm_boot: true, confirm_timeout: 60 });
    assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
    const emmc = join(dir, `${mac.replaceAll(':', '')}.img`);
    await makeFakeEmmc(emmc, 64 * 1024 * 1024);
    const client = runClient(t, { server: server.url, target: emmc, mac, env: { WITH_FILE_TOOLS: '1' } });
    assert.equal(await client.exited, 0, client.output());
    deployed[mac] = { job: ordered.body.id, emmc };
  }
  await notify.deliverDue();
  await waitFor('two job.ok deliveries', () => receiver.accepted().length >= 2);
  assert.deepEqual(readdirSync(spool), [], 'no label while the first boot is awaited');

  const confirmed = await server.device('POST', '/api/first-boot', firstBootCall(tokenIn(deployed[CONFIRMED]!.emmc), CONFIRMED));
  assert.equal(confirmed.status, 200, confirmed.text);
  clock.advance(61_000);
  assert.deepEqual((await firstBoot.expireDue()).map((job) => job.id), [deployed[SILENT]!.job]);
  await notify.deliverDue();
  const events = await waitFor('four deliveries', () => (receiver.accepted().length >= 4 ? receiver.accepted() : undefined));
  assert.deepEqual(
    events.map((r) => [r.json.event, r.json.job.id]),
    [['job.ok', deployed[CONFIRMED]!.job], ['job.ok', deployed[SILENT]!.job], ['job.confirmed', deployed[CONFIRMED]!.job], ['job.not_confirmed', deployed[SILENT]!.job]],
  );
  assert.equal(events[0]!.json.job.first_boot.state, 'awaiting', 'job.ok carries the first boot as it was then');
  assert.deepEqual([events[2]!.json.job.first_boot.state, events[2]!.json.job.first_boot.os_release], ['confirmed', 'Debian GNU/Linux 13 (trixie)']);
  assert.equal(events[3]!.json.job.first_boot.summary, 'not confirmed: no first-boot call within 1 min');

  const files = await waitFor('the label of the confirmed deploy', () => (readdirSync(spool).length === 1 ? readdirSync(spool) : undefined));
  assert.match(files[0]!, new RegExp(`^cm4prov-job-${deployed[CONFIRMED]!.job}-\\d+\\.zpl$`), 'only the confirmed deploy is labelled');
  assert.equal(readFileSync(join(spool, files[0]!), 'utf8'), `^XA^FD${CONFIRMED.replaceAll(':', '')} os^FS^XZ`);
});
