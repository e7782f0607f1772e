import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAllowList, parseCidr, plainAddress } from '../../src/shared/network.js';

test('an allow-list admits addresses inside its CIDRs only, IPv4-mapped ones included', () => {
  const list = createAllowList(['10.20.50.0/24', 'fd00::/64']);
  assert.equal(list.allows('10.20.50.7'), true);
  assert.equal(list.allows('::ffff:10.20.50.200'), true);
  assert.equal(list.allows('10.20.51.1'), false);
  assert.equal(list.allows('fd00::1'), true);
  assert.equal(list.allows('fd01::1'), false);
  assert.equal(list.allows('not-an-ip'), false);
  assert.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1');
});

test('bad CIDRs are explained', () => {
  assert.match(parseCidr('10.20.50.0/33') as string, /prefix length/);
  assert.match(parseCidr('10.20.500.0/24') as string, /not an address/);
  assert.deepEqual(parseCidr('10.20.50.1'), { address: '10.20.50.1', prefix: 32, family: 'ipv4' });
});
