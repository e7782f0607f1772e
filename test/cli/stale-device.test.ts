import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queuedLine, silenceWarning } from '../../src/cli/device-silence.js';
import type { DeviceView } from '../../src/devices/service.js';
import type { JobView } from '../../src/jobs/view.js';
import { runCli, startCli } from '../helpers/cli.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

/**
 * The server's clock runs `behind` ms behind the real one. A device registered while it is
 * behind, once it is set right, was heard from that long ago by both the server's clock (its
 * stale flag) and the real one (its HTTP Date, which the CLI measures silence with).
 */
function laggingClock(behindMs: number) {
  const clock = { behind: behindMs, now: () => Date.now() - clock.behind };
  return clock;
}

const HINT = 'netboot it, or start device/provisioning-client.sh';

test('ordering work for a device silent for 12 minutes warns on stderr; for one that polls, nothing', async (t) => {
  const clock = laggingClock(12.5 * 60_000);
  const server = await startTestServer(t, {}, { clock });
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  await registerDevice(server);
  await addImage(t, server, 'x', 4096, { makeDefault: true });

  const fresh = await runCli(['backup', MAC], env);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.equal(fresh.stderr, '', 'the device has just been heard from');
  assert.equal((await server.admin('POST', `/api/devices/${MAC}/cancel`)).status, 200);

  clock.behind = 0;
  const stale = await runCli(['deploy', MAC], env);
  assert.equal(stale.code, 0, 'the job is queued all the same');
  assert.match(stale.stdout, /^Queued job \d+: deploy x \(4\.00 KiB\) on dc:a6:32:00:00:01\./);
  assert.equal(stale.stderr, `warning: ${MAC} was last heard from 12 min ago; it starts this job only when its client polls again (${HINT})\n`);
});

test('deploy --wait says once when the device goes silent, and its status line says for how long', async (t) => {
  const clock = laggingClock(150_000);
  const server = await startTestServer(t, {}, { clock });
  const env = { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token };
  await registerDevice(server);
  await addImage(t, server, 'x', 4096, { makeDefault: true });

  const waiting = startCli(t, ['deploy', MAC, '--wait'], env, { tty: true });
  await waiting.waitForOutput(/job \d+: waiting for dc:a6:32:00:00:01 to poll…/);
  assert.doesNotMatch(waiting.output(), /warning/, 'heard from just now');
  clock.behind = 0; // 150 s of silence: stale (90 s)
  const warning = `warning: ${MAC} was last heard from 2 min ago; it starts this job only when its client polls again (${HINT})`;
  // Two status frames after the warning: the CLI polled again and did not repeat it.
  const silent = /job \d+: queued; dc:a6:32:00:00:01 silent for 2 min, waiting for its client to poll…/;
  await waiting.waitForOutput(new RegExp(`${escape(warning)}\\r?\\n[^]*${silent.source}[^]*${silent.source}`));
  assert.equal(waiting.output().split(warning).length - 1, 1, 'said once');

  const job = (await server.admin('GET', '/api/jobs')).body.jobs[0];
  await server.admin('POST', `/api/jobs/${job.id}/cancel`);
  assert.equal(await waiting.exited, 1);
  assert.match(waiting.output(), new RegExp(`cm4prov: job ${job.id} \\(deploy on dc:a6:32:00:00:01\\) cancelled: cancelled by the operator`));
});

test('a device that netbooted but never ran its client is named as such', () => {
  const device = {
    mac: MAC, registered: false, stale: false, last_seen_at: '2026-11-25T10:00:00.000Z',
    netboot: { enabled: true, stage: 'loaded kernel8.img', stage_at: '2026-11-25T10:00:00.000Z' },
  } as DeviceView;
  const now = Date.parse('2026-11-25T10:00:05.000Z');
  assert.equal(
    silenceWarning(device, now),
    `warning: ${MAC} has not run its provisioning client yet (it netbooted: loaded kernel8.img); it starts this job only when its client polls (${HINT})`,
  );
  const job = { id: 7, device_mac: MAC } as JobView;
  assert.equal(queuedLine(job, device, now), `job 7: queued; ${MAC} has not run its client yet, waiting for it to poll…`);
  const polling = { ...device, registered: true };
  assert.equal(silenceWarning(polling, now), undefined);
  assert.equal(queuedLine(job, polling, now), `job 7: waiting for ${MAC} to poll…`);
  assert.equal(queuedLine(job, { ...polling, stale: true }, now + 3 * 3600_000), `job 7: queued; ${MAC} silent for 3 h, waiting for its client to poll…`);
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
