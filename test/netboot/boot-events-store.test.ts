import assert from 'node:assert/strict';
import { createBootEventStore } from '../../src/netboot/boot-events.js';
import type { BootEvent } from '../../src/netboot/log-parser.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The boot events dnsmasq's log becomes, on both databases (issue 15).

const PI = 'dc:a6:32:00:00:01';
const OTHER = 'dc:a6:32:00:00:02';

const sent = (mac: string, file: string): BootEvent => ({ kind: 'tftp-sent', mac, ip: '10.20.50.101', file, raspberryPi: true });

testOnBothDatabases("a device's boot events come back newest first, its own only, as many as asked", async (_t, { db }) => {
  const events = createBootEventStore(db);
  await events.add({ kind: 'dhcp-discover', mac: PI, ip: null, file: null, raspberryPi: true }, 1000);
  await events.add({ kind: 'dhcp-ack', mac: PI, ip: '10.20.50.101', file: null, raspberryPi: true }, 1000);
  await events.add(sent(OTHER, 'start4.elf'), 1500);
  await events.add(sent(PI, '1234abcd/start4.elf'), 2000);

  const recent = await events.recent(PI);
  assert.deepEqual(
    recent.map(({ mac, at, kind, ip, file }) => ({ mac, at, kind, ip, file })),
    [
      { mac: PI, at: 2000, kind: 'tftp-sent', ip: '10.20.50.101', file: '1234abcd/start4.elf' },
      { mac: PI, at: 1000, kind: 'dhcp-ack', ip: '10.20.50.101', file: null },
      { mac: PI, at: 1000, kind: 'dhcp-discover', ip: null, file: null },
    ],
    'events of the same millisecond in the order they were added',
  );
  assert.ok(recent.every((event) => typeof event.id === 'number'));
  assert.deepEqual((await events.recent(PI, 2)).map((event) => event.kind), ['tftp-sent', 'dhcp-ack']);
  assert.deepEqual(await events.recent('dc:a6:32:00:00:99'), []);
});

testOnBothDatabases("a device keeps its newest 200 events; other devices' events stay", async (_t, { db }) => {
  const events = createBootEventStore(db);
  for (let i = 0; i < 3; i++) await events.add(sent(OTHER, `other-${i}`), i);
  for (let i = 0; i < 205; i++) await events.add(sent(PI, `file-${i}`), 100 + i);

  const kept = await events.recent(PI, 1000);
  assert.equal(kept.length, 200);
  assert.equal(kept[0]!.file, 'file-204');
  assert.equal(kept.at(-1)!.file, 'file-5', 'the five oldest were dropped');
  assert.deepEqual((await events.recent(OTHER)).map((event) => event.file), ['other-2', 'other-1', 'other-0']);
  const { n } = await db.selectFrom('boot_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  assert.equal(n, 203);
});
