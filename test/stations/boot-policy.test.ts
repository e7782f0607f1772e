import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { testDatabaseUrl } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// A device boots from the dnsmasq of the station it is on: a boot policy set on another station
// (a click there, an order there) must reach that station's hosts file.

const lan = { exists: (name: string) => name === 'eth1', names: () => ['eth1'] };
const external = { netbootInterface: 'eth1', netbootAddress: '10.20.50.1/24', dhcpRange: '10.20.50.100,10.20.50.200', dnsmasq: 'external' };

test("boot policy set on station A for a device on station B is written to B's dnsmasq hosts file", async (t) => {
  const database = await testDatabaseUrl(t);
  const a = await startTestServer(t, { ...external, database, station: 'line-a' }, { interfaces: lan });
  const b = await startTestServer(t, { ...external, database, station: 'line-b' }, { interfaces: lan });
  await registerDevice(b);
  const hostFile = join(b.dataDir, 'netboot', 'hosts', 'dca632000001.conf');
  const policyOnB = () => (existsSync(hostFile) ? readFileSync(hostFile, 'utf8').trim().split('\n').at(-1) : undefined);

  assert.equal((await a.admin('POST', `/api/devices/${MAC}/netboot`, { enabled: false })).status, 200);
  await waitFor("B's file to say eMMC next", () => policyOnB() === 'dc:a6:32:00:00:01,set:cm4prov-emmc-next', 20_000, 20);
  // An order placed on A means the device must netboot to do it, on B.
  assert.equal((await a.admin('POST', `/api/devices/${MAC}/backup`)).status, 201);
  await waitFor("B's file to say netboot", () => policyOnB() === 'dc:a6:32:00:00:01,set:cm4prov-netboot', 20_000, 20);
});
