import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jobStatus } from '../../src/dashboard/views/jobs.js';
import { addImage, MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { runCli } from '../helpers/cli.js';
import { startTestServer } from '../helpers/server.js';
import { manualClock } from '../first-boot/helpers.js';

test('a job shows the seconds in each phase the device reported, the running one counted up to now, the last closed at its end', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await registerDevice(server);
  const image = await addImage(t, server, 'raspios', 4096, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const order = await poll(server);
  const report = async (phase: string, bytes: number) => {
    const sent = await server.device('POST', pathOf(order.progress_url), { bytes_done: bytes, phase, mac: MAC });
    assert.equal(sent.status, 200, sent.text);
  };
  const phases = async () => (await server.admin('GET', `/api/jobs/${order.job}`)).body.phase_seconds;

  assert.deepEqual(await phases(), {}, 'nothing reported yet');
  await report('writing', 0);
  clock.advance(5_000);
  await report('writing', 2048);
  clock.advance(2_500);
  assert.deepEqual(await phases(), { writing: 7.5 }, 'the running phase counts up to now');
  await report('verifying', 0);
  clock.advance(3_000);
  // A name that is not a plain word is shown while it runs, but never becomes a JSON path.
  await report('odd"phase', 0);
  clock.advance(1_000);
  await report('verifying', 4096);
  clock.advance(1_200);
  const ended = await server.device('POST', pathOf(order.result_url), { status: 'ok', sha256: image.sha256, bytes: image.bytes });
  assert.equal(ended.body.state, 'ok', ended.text);
  clock.advance(60_000);
  assert.deepEqual(await phases(), { writing: 7.5, verifying: 4.2 }, 'the last phase closed at the end; the odd one not counted');
  const shown = await runCli(['jobs', 'show', String(order.job)], { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token });
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^Phases: writing 7\.5 s, verifying 4\.2 s$/m);
});

test('the dashboard row names each phase a client reports, and how much of the written part is verified already', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'raspios', 8 * 1024 * 1024, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const order = await poll(server);
  const rowAfter = async (fields: Record<string, string | number>) => {
    const sent = await server.device('POST', pathOf(order.progress_url), { mac: MAC, ...fields });
    assert.equal(sent.status, 200, sent.text);
    return jobStatus((await server.admin('GET', `/api/jobs/${order.job}`)).body).text;
  };
  const mib = 1024 * 1024;
  assert.match(await rowAfter({ phase: 'writing', bytes_done: 4 * mib, bytes_written: 4 * mib, bytes_verified: 3 * mib }), /Writing 4\.00 MiB \/ 8\.00 MiB, 3\.00 MiB of it verified · /);
  assert.match(await rowAfter({ phase: 'syncing', bytes_done: 8 * mib }), /Syncing 8\.00 MiB \/ 8\.00 MiB/);
  assert.match(await rowAfter({ phase: 'verifying-full', bytes_done: mib }), /Verifying the whole eMMC 1\.00 MiB/);
});
