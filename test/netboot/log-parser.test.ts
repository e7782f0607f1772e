import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogParser, describeBootEvent } from '../../src/netboot/log-parser.js';

test("dnsmasq's log becomes boot events: DHCP by MAC, TFTP mapped back from the IP, Pi tag by transaction", () => {
  const parser = createLogParser('/srv/tftp/');
  const lines = [
    'Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 DHCPDISCOVER(eth1) DC:A6:32:01:02:03 ',
    'Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 tags: rpi, eth1',
    'Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 DHCPOFFER(eth1) 10.20.50.126 dc:a6:32:01:02:03 ',
    'Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883337 DHCPACK(eth1) 10.20.50.126 dc:a6:32:01:02:03 ',
    'Nov 25 20:29:40 dnsmasq-tftp[7753]: sent /srv/tftp/1234abcd/start4.elf to 10.20.50.126',
    'Nov 25 20:29:40 dnsmasq-tftp[7753]: file /srv/tftp/pieeprom.sig not found for 10.20.50.126',
    'Nov 25 20:29:41 dnsmasq-tftp[7753]: sent /srv/tftp/kernel8.img to 10.20.50.99',
    'Nov 25 20:29:41 dnsmasq-dhcp[7753]: 55 DHCPACK(eth1) 10.20.50.130 52:54:00:12:34:56 laptop',
  ];
  const events = lines.map((line) => parser.parse(line));
  assert.deepEqual(events.map((e) => e && [e.kind, e.mac, e.ip, e.file, e.raspberryPi]), [
    ['dhcp-discover', 'dc:a6:32:01:02:03', null, null, true], // a Raspberry Pi OUI
    undefined,
    ['dhcp-offer', 'dc:a6:32:01:02:03', '10.20.50.126', null, true],
    ['dhcp-ack', 'dc:a6:32:01:02:03', '10.20.50.126', null, true],
    ['tftp-sent', 'dc:a6:32:01:02:03', '10.20.50.126', '1234abcd/start4.elf', true],
    ['tftp-not-found', 'dc:a6:32:01:02:03', '10.20.50.126', 'pieeprom.sig', true],
    undefined, // an address never leased here: not a device we know
    ['dhcp-ack', '52:54:00:12:34:56', '10.20.50.130', null, false],
  ]);
  assert.equal(describeBootEvent(events[4]!), 'loaded 1234abcd/start4.elf');
  assert.equal(describeBootEvent(events[5]!), 'asked for pieeprom.sig: not found');
  parser.learn('10.20.50.99', 'DC:A6:32:0A:0B:0C', true);
  assert.equal(parser.parse(lines[6]!)?.mac, 'dc:a6:32:0a:0b:0c', 'addresses from the lease file are learned');
  const other = createLogParser('/srv/tftp');
  assert.equal(other.parse('Nov 25 20:29:39 dnsmasq-dhcp[1]: 9 DHCPDISCOVER(eth1) 52:54:00:aa:bb:cc')?.raspberryPi, false);
  other.parse('Nov 25 20:29:39 dnsmasq-dhcp[1]: 9 tags: rpi, eth1');
  assert.equal(other.parse('Nov 25 20:29:39 dnsmasq-dhcp[1]: 9 DHCPOFFER(eth1) 10.20.50.140 52:54:00:aa:bb:cc')?.raspberryPi, true, 'the rpi tag counts for any MAC');
});
