import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRange } from '../../src/http/send-file.js';

test('byte ranges follow RFC 9110', () => {
  assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=500-', 1000), { start: 500, end: 999 });
  assert.deepEqual(parseRange('bytes=-100', 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange('bytes=900-5000', 1000), { start: 900, end: 999 }, 'an end past the file is clamped');
  assert.equal(parseRange('bytes=1000-', 1000), 'unsatisfiable');
  assert.equal(parseRange('bytes=5-4', 1000), 'unsatisfiable');
  assert.equal(parseRange(undefined, 1000), undefined);
  assert.equal(parseRange('bytes=0-1,5-6', 1000), undefined, 'several ranges: the whole file');
  assert.equal(parseRange('items=0-1', 1000), undefined);
});
