import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { addImage, MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const lan = { exists: (name: string) => name === 'eth1', names: () => ['eth1'] };
const external = { netbootInterface: 'eth1', netbootAddress: '10.20.50.1/24', dhcpRange: '10.20.50.100,10.20.50.200', dnsmasq: 'external' };

async function finishDeploy(server: Awaited<ReturnType<typeof startTestServer>>, sha256: string, after?: string) {
  await server.admin('POST', `/api/devices/${MAC}/deploy`, after ? { after } : {});
  const order = await poll(server);
  return server.device('POST', pathOf(order.result_url), { status: 'ok', sha256 });
}

test('work done means eMMC next (no re-provisioning loop); ordering work or "netboot again" turns netboot back on', async (t) => {
  const server = await startTestServer(t, external, { interfaces: lan });
  await registerDevice(server);
  const image = await addImage(t, server, 'raspios', 1000, { makeDefault: true });
  const hostFile = join(server.dataDir, 'netboot', 'hosts', 'dca632000001.conf');
  const nextBoot = async () => (await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled;

  assert.equal(await nextBoot(), true);
  await finishDeploy(server, image.sha256);
  assert.equal(await nextBoot(), false, 'after a good deploy the device boots from eMMC');
  assert.equal(readFileSync(hostFile, 'utf8').trim().split('\n').at(-1), 'dc:a6:32:00:00:01,set:cm4prov-emmc-next');

  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await nextBoot(), true, 'new work: it must netboot to do it');
  assert.equal(readFileSync(hostFile, 'utf8').trim().split('\n').at(-1), 'dc:a6:32:00:00:01,set:cm4prov-netboot');
  await server.admin('POST', `/api/devices/${MAC}/cancel`);

  await finishDeploy(server, image.sha256, 'netboot');
  assert.equal(await nextBoot(), true, "the operator's choice: netboot again");
  await finishDeploy(server, 'f'.repeat(64));
  assert.equal(await nextBoot(), true, 'a failed deploy keeps netbooting');

  const off = await server.admin('POST', `/api/devices/${MAC}/netboot`, { enabled: false });
  assert.equal(off.body.netboot.enabled, false);
  await server.restart();
  assert.deepEqual(readdirSync(join(server.dataDir, 'netboot', 'hosts')), ['dca632000001.conf'], 'files match the database after a restart');
  assert.equal(await nextBoot(), false);
  assert.equal((await server.admin('POST', '/api/devices/dc:a6:32:99:99:99/netboot', { enabled: true })).status, 404);
});

test('external mode writes the config for a system dnsmasq and follows its log file for boot stages', async (t) => {
  const server = await startTestServer(t, external, { interfaces: lan });
  const status = (await server.admin('GET', '/api/netboot')).body;
  assert.equal(status.mode, 'external');
  assert.equal(status.dnsmasq, null, 'no dnsmasq child in external mode');
  const config = readFileSync(status.config_file, 'utf8');
  assert.match(config, /^interface=eth1$/m);
  const log = join(server.dataDir, 'netboot', 'dnsmasq.log');
  mkdirSync(join(server.dataDir, 'netboot'), { recursive: true });
  appendFileSync(log, [
    'Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 DHCPDISCOVER(eth1) dc:a6:32:00:00:07',
    'Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 tags: rpi, eth1',
    'Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 DHCPACK(eth1) 10.20.50.107 dc:a6:32:00:00:07',
    `Nov 25 20:29:40 dnsmasq-tftp[1]: sent ${server.dataDir}/tftp/kernel8.img to 10.20.50.107`,
    '',
  ].join('\n'));
  const device = await waitFor('the boot stage', async () => {
    const found = await server.admin('GET', '/api/devices/dc:a6:32:00:00:07');
    return found.status === 200 && found.body.netboot.stage === 'loaded kernel8.img' ? found.body : undefined;
  }, 10_000);
  assert.equal(device.registered, false);
  assert.equal(device.ip, '10.20.50.107');
});
