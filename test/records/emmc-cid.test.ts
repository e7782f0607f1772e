import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc7, decodeEmmcCid, normalizeEmmcCid } from '../../src/records/emmc-cid.js';
import { buildCid, CM4_CID } from './cid.js';

test('CRC7 gives the values every SD/MMC host sends with CMD0 and CMD8', () => {
  // CMD0 (0x40 00000000) ends 0x95 and CMD8 (0x48 000001AA) ends 0x87 on the wire: CRC7 << 1 | 1.
  assert.equal(crc7(Uint8Array.from([0x40, 0, 0, 0, 0])), 0x4a);
  assert.equal(crc7(Uint8Array.from([0x48, 0, 0, 0x01, 0xaa])), 0x43);
});

test('a CID decodes field by field: maker, type, OEM, name, revision, serial, both readings of the date, CRC', () => {
  const cid = buildCid(CM4_CID);
  const emmc = decodeEmmcCid(cid);
  assert.equal(emmc.cid, cid);
  assert.equal(emmc.manufacturer_id, '0x15');
  assert.equal(emmc.manufacturer, 'Samsung');
  assert.equal(emmc.type, 'BGA (discrete embedded)');
  assert.equal(emmc.oem_id, '0x01');
  assert.equal(emmc.name, 'BJTD4R');
  assert.equal(emmc.revision, '1.2');
  assert.equal(emmc.serial, '0xa1b2c3d4');
  assert.deepEqual(emmc.manufactured, { month: 3, year: 2021, year_if_before_v4_41: 2005, text: '2021-03 (2005-03 if the eMMC predates v4.41)' });
  assert.equal(emmc.crc, 'valid');
});

test('an unknown maker is named by its id; a stripped CRC is absent, a wrong one invalid; a bad month is said', () => {
  const unknown = decodeEmmcCid(buildCid({ ...CM4_CID, mid: 0x42, month: 13, noCrc: true }));
  assert.equal(unknown.manufacturer, 'unknown manufacturer 0x42');
  assert.equal(unknown.crc, 'absent');
  assert.equal(unknown.manufactured.month, null);
  assert.match(unknown.manufactured.text, /^2021 \(month code 13 is not a month\)/);
  const cid = buildCid(CM4_CID);
  const flipped = cid.slice(0, 30) + (parseInt(cid.slice(30), 16) ^ 0x02).toString(16).padStart(2, '0');
  assert.equal(decodeEmmcCid(flipped).crc, 'invalid');
});

test('only 32 hex digits are a CID; empty is "not given"; the refusal is one sentence', () => {
  assert.equal(normalizeEmmcCid(' 150100424A544434521200A1B2C3D483 '), '150100424a544434521200a1b2c3d483');
  assert.equal(normalizeEmmcCid(''), null);
  assert.equal(normalizeEmmcCid(undefined), null);
  assert.throws(() => normalizeEmmcCid('15010042'), { message: /^invalid emmc_cid '15010042': expected the eMMC's CID register as 32 hex digits/ });
  assert.throws(() => normalizeEmmcCid('z'.repeat(32)), { message: /invalid emmc_cid/ });
});
