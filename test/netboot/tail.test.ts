import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { tailFile } from '../../src/netboot/tail.js';
import { waitFor } from '../helpers/wait.js';

function follow(t: { after: (fn: () => void) => void }, path: string) {
  const lines: string[] = [];
  const stop = tailFile(path, (line) => lines.push(line), 20);
  t.after(stop);
  return lines;
}

test('a log file created right after the tail starts is read whole, a half line only once it ends', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cm4prov-tail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'dnsmasq.log');
  const lines = follow(t, path);
  writeFileSync(path, 'one\ntwo\nhal');
  await waitFor('two lines', () => lines.length === 2, 5_000, 10);
  appendFileSync(path, 'f\n');
  await waitFor('the half line ended', () => lines.length === 3, 5_000, 10);
  assert.deepEqual(lines, ['one', 'two', 'half']);
});

test('lines already in the file are not read again; a rotated file is read from its start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cm4prov-tail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'dnsmasq.log');
  writeFileSync(path, 'seen by an earlier run\n');
  const lines = follow(t, path);
  appendFileSync(path, 'new\n');
  await waitFor('the new line', () => lines.length === 1, 5_000, 10);
  // logrotate's default: the old file moves away and a new one, here longer, takes its name.
  renameSync(path, `${path}.1`);
  writeFileSync(`${path}.tmp`, 'after rotation, a longer first line than before\n');
  renameSync(`${path}.tmp`, path);
  await waitFor('the rotated line', () => lines.length === 2, 5_000, 10);
  assert.deepEqual(lines, ['new', 'after rotation, a longer first line than before']);
});
