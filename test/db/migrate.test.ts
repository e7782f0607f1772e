import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { migrate, openDatabase } from '../../src/db/open.js';
import { tempDir } from '../helpers/server.js';

test('the database opens in WAL mode with every migration applied, and re-opening changes nothing', (t) => {
  const path = join(tempDir(t), 'db.sqlite');
  const db = openDatabase(path);
  const version = db.pragma('user_version', { simple: true });
  assert.ok(Number(version) >= 1);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all().map((row: any) => row.name);
  for (const table of ['backups', 'devices', 'images', 'jobs', 'settings']) assert.ok(tables.includes(table), table);
  db.close();
  const again = openDatabase(path);
  assert.equal(migrate(again), version);
  again.close();
});

test('the database refuses a second active job for one device', (t) => {
  const db = openDatabase(join(tempDir(t), 'db.sqlite'));
  t.after(() => db.close());
  db.prepare("INSERT INTO devices (mac, first_seen_at, last_seen_at) VALUES ('dc:a6:32:00:00:01', 0, 0)").run();
  const insert = db.prepare("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:01', 'backup', ?, 't', 0)");
  insert.run('ok');
  insert.run('queued');
  assert.throws(() => insert.run('running'), /UNIQUE/);
});
