import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { renderDnsmasqConfig } from '../../src/netboot/dnsmasq-config.js';
import { resolveNetbootSettings, type InterfaceProbe } from '../../src/netboot/settings.js';

const fakeInterfaces: InterfaceProbe = { exists: (name) => ['lo', 'eth0', 'eth1'].includes(name), names: () => ['eth0', 'eth1', 'lo'] };
const settingsFor = (flags: Record<string, unknown>) =>
  resolveNetbootSettings(loadConfig({ flags: { dataDir: '/srv/cm4', ...flags }, env: {} }), fakeInterfaces);

test('netboot is off without --netboot-interface, and its other options alone are refused', () => {
  assert.equal(settingsFor({}), undefined);
  assert.throws(() => settingsFor({ dhcpRange: '10.20.50.100,10.20.50.200' }), /--dhcp-range needs --netboot-interface/);
});

test('netboot settings are checked as a whole, each problem in one sentence', () => {
  const base = { netbootInterface: 'eth1', netbootAddress: '10.20.50.1/24', dhcpRange: '10.20.50.100,10.20.50.200' };
  const settings = settingsFor(base)!;
  assert.deepEqual(
    { network: settings.network, netmask: settings.netmask, range: settings.range, tftp: settings.tftpRoot, state: settings.stateDir },
    { network: '10.20.50.0', netmask: '255.255.255.0', range: { first: '10.20.50.100', last: '10.20.50.200' }, tftp: '/srv/cm4/tftp', state: '/srv/cm4/netboot' },
  );
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ netbootInterface: 'eth9' }, /There is no network interface 'eth9' here \(have: eth0, eth1, lo\)/],
    [{ netbootAddress: undefined }, /needs --netboot-address/],
    [{ netbootAddress: '10.20.50.0/24' }, /network or broadcast address/],
    [{ dhcpRange: '10.20.51.100,10.20.51.200' }, /is not inside 10\.20\.50\.0\/24/],
    [{ dhcpRange: '10.20.50.200,10.20.50.100' }, /starts after it ends/],
    [{ dhcpRange: '10.20.50.1,10.20.50.20' }, /holds this server's own address 10\.20\.50\.1/],
    [{ dhcpRange: undefined }, /needs --dhcp-range FIRST,LAST inside 10\.20\.50\.0\/24 \(or --dhcp-proxy/],
    [{ dhcpProxy: true }, /--dhcp-range or --dhcp-proxy, not both/],
  ];
  for (const [change, pattern] of cases) {
    assert.throws(() => settingsFor({ ...base, ...change }), (error: unknown) => error instanceof ConfigError && pattern.test(error.message), JSON.stringify(change));
  }
});

test('the dnsmasq config: DNS off, Pi match in both byte orders, PXE offer unless held back; proxy and ignore modes', () => {
  const plain = renderDnsmasqConfig(settingsFor({ netbootInterface: 'eth1', netbootAddress: '10.20.50.1/24', dhcpRange: '10.20.50.100,10.20.50.200' })!);
  for (const line of [
    'port=0', 'interface=eth1', 'bind-interfaces', 'dhcp-range=10.20.50.100,10.20.50.200,255.255.255.0,1h', 'no-ping', 'log-facility=-',
    'tftp-root=/srv/cm4/tftp', 'dhcp-match=set:rpi,97,0:52:50:69:34', 'dhcp-match=set:rpi,97,0:34:69:50:52',
    'pxe-service=tag:rpi,tag:!cm4prov-emmc-next,0,"Raspberry Pi Boot"', 'dhcp-hostsdir=/srv/cm4/netboot/hosts',
  ]) {
    assert.ok(plain.split('\n').includes(line), line);
  }
  assert.ok(!plain.includes('dhcp-ignore'));
  const proxy = renderDnsmasqConfig(settingsFor({ netbootInterface: 'eth1', netbootAddress: '10.20.50.1/24', dhcpProxy: true, nonPiClients: 'ignore', dnsmasq: 'external' })!);
  assert.ok(proxy.includes('dhcp-range=10.20.50.0,proxy,255.255.255.0\n'));
  assert.ok(proxy.includes('dhcp-ignore=tag:!rpi\n'));
  assert.ok(proxy.includes('log-facility=/srv/cm4/netboot/dnsmasq.log\n'), 'external mode logs to a file the server follows');
});
