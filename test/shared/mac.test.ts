import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppError } from '../../src/shared/errors.js';
import { normalizeMac } from '../../src/shared/mac.js';

test('MACs in every common spelling normalise to lower-case colon form', () => {
  for (const spelling of ['DC-A6-32-01-02-03', 'dc:a6:32:01:02:03', 'DC:A6:32:01:02:03', 'dca6.3201.0203', 'DCA632010203', ' dc:a6:32:01:02:03 ']) {
    assert.equal(normalizeMac(spelling), 'dc:a6:32:01:02:03', spelling);
  }
});

test('invalid MACs are refused with a 400 that says what a MAC looks like', () => {
  for (const bad of ['', 'dc:a6:32:01:02', 'dc:a6:32:01:02:03:04', 'zz:a6:32:01:02:03', 'dc:a6-32:01:02:0', 'hello', 42, undefined]) {
    assert.throws(
      () => normalizeMac(bad),
      (error: unknown) => error instanceof AppError && error.statusCode === 400 && /MAC address/.test(error.message),
      String(bad),
    );
  }
});

test('group and all-zero addresses are not device addresses', () => {
  assert.throws(() => normalizeMac('ff:ff:ff:ff:ff:ff'), /broadcast/);
  assert.throws(() => normalizeMac('01:00:5e:00:00:01'), /multicast/);
  assert.throws(() => normalizeMac('00:00:00:00:00:00'), /all zeros/);
});
