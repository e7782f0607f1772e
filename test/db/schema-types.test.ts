import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SCHEMA_FILE, schemaTypes } from '../../scripts/db-schema-types.js';

test('src/db/schema.ts is what the migrations make (else: node --import tsx scripts/db-schema-types.ts)', () => {
  const types = schemaTypes();
  assert.match(types, /export interface JobsTable \{[^}]*\n {2}id: Generated<number>;[^}]*\n {2}device_mac: string;[^}]*\n {2}phase_ms: string \| null;/);
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), types);
});
