import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { Queries } from '../../src/db/database.js';
import type { DeviceRow, DeviceStore } from '../../src/devices/store.js';
import { dnsmasqPaths } from '../../src/netboot/dnsmasq-config.js';
import { createNetbootService } from '../../src/netboot/service.js';
import type { NetbootSettings } from '../../src/netboot/settings.js';
import { systemClock } from '../../src/shared/clock.js';
import { createEventBus } from '../../src/shared/events.js';
import { openTestDatabase, testOnBothDatabases } from '../helpers/databases.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// The netboot service's database writes are async; what it writes must still follow the order
// in which things happened: dnsmasq's log lines, and boot-policy changes.

const PI = 'dc:a6:32:00:00:01';

/**
 * The device store calls the service makes, in memory. `slow` delays chosen calls (by name and
 * count): an earlier call that answers later is what async writes can meet.
 */
function fakeDevices(slow: Record<string, number[]> = {}) {
  const rows = new Map<string, DeviceRow>();
  const stages: string[] = [];
  const calls = new Map<string, number>();
  const pause = async (name: string) => {
    const count = (calls.get(name) ?? 0) + 1;
    calls.set(name, count);
    await sleep(slow[name]?.[count - 1] ?? 0);
  };
  const store = {
    async get(mac: string) {
      const row = rows.get(mac);
      await pause('get');
      return row;
    },
    async save(facts: { mac: string; ip?: string | null }) {
      rows.set(facts.mac, { ...rows.get(facts.mac), mac: facts.mac, ip: facts.ip ?? null, netboot_enabled: 1 } as DeviceRow);
      await pause('save');
      return rows.get(facts.mac)!;
    },
    async setBootStage(_mac: string, text: string) {
      stages.push(text);
      await pause('setBootStage');
    },
    async setNetboot(mac: string, enabled: boolean) {
      const row = rows.get(mac);
      if (row) row.netboot_enabled = enabled ? 1 : 0;
      await pause('setNetboot');
      return row !== undefined;
    },
    async netbootDisabled() {
      const macs = [...rows.values()].filter((row) => row.netboot_enabled === 0).map((row) => row.mac);
      await pause('netbootDisabled');
      return macs;
    },
  };
  return { store: store as unknown as DeviceStore, rows, stages };
}

function externalNetboot(t: TestContext, db: Queries, devices: DeviceStore) {
  const dir = tempDir(t);
  const settings: NetbootSettings = {
    mode: 'external',
    interface: 'eth1',
    address: '10.20.50.1',
    prefix: 24,
    network: '10.20.50.0',
    netmask: '255.255.255.0',
    range: { first: '10.20.50.100', last: '10.20.50.200' },
    proxy: false,
    tftpRoot: join(dir, 'tftp'),
    stateDir: join(dir, 'netboot'),
    dnsmasqPath: 'dnsmasq',
    nonPiClients: 'dhcp',
  };
  const netboot = createNetbootService({ settings, db, devices, bus: createEventBus(), clock: systemClock, log: pino({ level: 'silent' }) });
  return { netboot, paths: dnsmasqPaths(settings), settings };
}

testOnBothDatabases("boot events and the boot stage follow dnsmasq's log order, though the first line's lookup answers last", async (t, { db }) => {
  const devices = fakeDevices({ get: [80] });
  const { netboot, paths, settings } = externalNetboot(t, db, devices.store);
  await netboot.start();
  appendFileSync(paths.log, [
    `Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 DHCPDISCOVER(eth1) ${PI}`,
    'Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 tags: rpi, eth1',
    `Nov 25 20:29:39 dnsmasq-dhcp[1]: 7 DHCPOFFER(eth1) 10.20.50.107 ${PI}`,
    `Nov 25 20:29:39 dnsmasq-dhcp[1]: 8 DHCPACK(eth1) 10.20.50.107 ${PI}`,
    `Nov 25 20:29:40 dnsmasq-tftp[1]: sent ${settings.tftpRoot}/start4.elf to 10.20.50.107`,
    `Nov 25 20:29:40 dnsmasq-tftp[1]: sent ${settings.tftpRoot}/kernel8.img to 10.20.50.107`,
    '',
  ].join('\n'));
  const events = await waitFor('five boot events', async () => {
    const found = await netboot.bootEvents(PI);
    return found.length === 5 ? found : undefined;
  }, 10_000, 50);
  await netboot.stop();
  assert.deepEqual(events.map((event) => event.file ?? event.kind).reverse(), ['dhcp-discover', 'dhcp-offer', 'dhcp-ack', 'start4.elf', 'kernel8.img']);
  assert.equal(devices.stages.at(-1), 'loaded kernel8.img', 'the stage shown is the last one logged');
  assert.equal(devices.rows.get(PI)?.ip, '10.20.50.107');
});

test("a policy change made while start-up syncs the policy files is not undone by the sync", async (t) => {
  const { db } = await openTestDatabase(t, 'sqlite');
  const devices = fakeDevices({ netbootDisabled: [80] });
  devices.rows.set(PI, { mac: PI, netboot_enabled: 1 } as DeviceRow);
  const { netboot, paths } = externalNetboot(t, db, devices.store);
  const starting = netboot.start();
  const changed = netboot.setNetboot(PI, false);
  await starting;
  assert.equal(await changed, true);
  await netboot.stop();
  assert.match(readFileSync(join(paths.hostsDir, 'dca632000001.conf'), 'utf8'), /^dc:a6:32:00:00:01,set:cm4prov-emmc-next$/m);
});

test('policy changes reach the file in the order they reached the database; an unknown device gets none', async (t) => {
  const { db } = await openTestDatabase(t, 'sqlite');
  const devices = fakeDevices({ setNetboot: [80, 0] });
  devices.rows.set(PI, { mac: PI, netboot_enabled: 0 } as DeviceRow);
  const { netboot, paths } = externalNetboot(t, db, devices.store);
  const results = await Promise.all([netboot.setNetboot(PI, true), netboot.setNetboot(PI, false), netboot.setNetboot('dc:a6:32:00:00:99', true)]);
  assert.deepEqual(results, [true, true, false]);
  assert.equal(devices.rows.get(PI)?.netboot_enabled, 0);
  const file = readFileSync(join(paths.hostsDir, 'dca632000001.conf'), 'utf8');
  assert.match(file, /^dc:a6:32:00:00:01,set:cm4prov-emmc-next$/m, 'as the database says: eMMC next');
  assert.throws(() => readFileSync(join(paths.hostsDir, 'dca632000099.conf')), { code: 'ENOENT' });
});
