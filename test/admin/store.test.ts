import assert from 'node:assert/strict';
import type { KyselyPlugin } from 'kysely';
import { createPasswordStore } from '../../src/admin/passwords.js';
import { createSessionStore, SESSION_IDLE_MS } from '../../src/admin/sessions.js';
import type { StationDatabase } from '../../src/db/database.js';
import { AppError } from '../../src/shared/errors.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// Dashboard sessions and the admin password on both databases (issue 15).

const START = Date.parse('2025-03-01T08:00:00Z');

function manualClock() {
  let now = START;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** The database as a store sees it, counting the session rows that UPDATEs changed. */
function countingSessionWrites(database: StationDatabase) {
  const counter = { rows: 0 };
  const plugin: KyselyPlugin = {
    transformQuery: ({ node }) => node,
    transformResult: async ({ result }) => {
      if (result.numAffectedRows !== undefined) counter.rows += Number(result.numAffectedRows);
      return result;
    },
  };
  return { db: database.db.withPlugin(plugin), counter };
}

const sessionRow = (database: StationDatabase) => database.db.selectFrom('sessions').selectAll().executeTakeFirstOrThrow();

testOnBothDatabases('a session is found by its cookie token; the database keeps only its hash', async (_t, database) => {
  const sessions = createSessionStore(database.db, manualClock());
  const { token, session } = await sessions.create();
  assert.deepEqual(session, { csrfToken: session.csrfToken, expiresAt: START + SESSION_IDLE_MS });
  assert.notEqual(session.csrfToken, token);
  assert.deepEqual(await sessions.lookup(token), session);

  const row = await sessionRow(database);
  assert.match(row.id_hash, /^[0-9a-f]{64}$/);
  assert.notEqual(row.id_hash, token, 'not the token itself');
  assert.deepEqual([row.created_at, row.last_seen_at, row.expires_at], [START, START, START + SESSION_IDLE_MS]);

  assert.equal(await sessions.lookup(`${token}x`), undefined, 'another token');
  assert.equal(await sessions.lookup(undefined), undefined, 'no cookie');
  assert.equal(await sessions.lookup(''), undefined);
});

testOnBothDatabases('a session idle too long is gone; one in use has its timer restarted at most once a minute', async (_t, database) => {
  const clock = manualClock();
  const sessions = createSessionStore(database.db, clock);
  const { token } = await sessions.create();

  clock.advance(30_000);
  assert.equal((await sessions.lookup(token))?.expiresAt, START + SESSION_IDLE_MS, 'used within the minute: not written');
  assert.equal((await sessionRow(database)).last_seen_at, START);

  clock.advance(60_000);
  const used = START + 90_000;
  assert.equal((await sessions.lookup(token))?.expiresAt, used + SESSION_IDLE_MS);
  assert.deepEqual(await sessionRow(database).then((row) => [row.last_seen_at, row.expires_at]), [used, used + SESSION_IDLE_MS]);

  clock.advance(SESSION_IDLE_MS);
  assert.ok(await sessions.lookup(token), 'still live at its expiry');
  clock.advance(SESSION_IDLE_MS + 1);
  assert.equal(await sessions.lookup(token), undefined, 'idle past its expiry');
});

testOnBothDatabases("a page's requests that all find the idle timer old write it once", async (_t, database) => {
  const clock = manualClock();
  const { db, counter } = countingSessionWrites(database);
  const sessions = createSessionStore(db, clock);
  const { token } = await sessions.create();
  clock.advance(5 * 60_000);
  const before = counter.rows;
  const found = await Promise.all(Array.from({ length: 4 }, () => sessions.lookup(token)));
  assert.ok(found.every((session) => session?.expiresAt === clock.now() + SESSION_IDLE_MS));
  assert.equal(counter.rows - before, 1, 'one row written, by one of the four');
});

testOnBothDatabases('logging out ends only that session; a new session clears expired ones', async (_t, database) => {
  const clock = manualClock();
  const sessions = createSessionStore(database.db, clock);
  const first = await sessions.create();
  const second = await sessions.create();
  await sessions.destroy(first.token);
  await sessions.destroy(undefined);
  assert.equal(await sessions.lookup(first.token), undefined);
  assert.ok(await sessions.lookup(second.token), 'the other session goes on');

  clock.advance(SESSION_IDLE_MS + 1);
  const third = await sessions.create();
  const rows = await database.db.selectFrom('sessions').select('expires_at').execute();
  assert.deepEqual(rows, [{ expires_at: third.session.expiresAt }], 'the expired session was deleted');
});

testOnBothDatabases('the admin password: unset, set, checked, and replaced by a second store on the same database', async (_t, database) => {
  const server = createPasswordStore(database.db);
  assert.equal(await server.isSet(), false);
  assert.equal(await server.hash(), undefined);
  assert.equal(await server.check('anything at all'), false);
  assert.equal(server.stats().checks, 0, 'nothing to hash against');

  await server.set('line-3 bench password');
  assert.equal(await server.isSet(), true);
  const stored = await server.hash();
  assert.match(stored!, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert.equal(await server.check('line-3 bench password'), true);
  assert.equal(await server.check('line-3 bench passworD'), false);
  assert.equal(server.stats().checks, 2);

  // As `cm4prov admin password` does while the server runs: its own store, the same row.
  await createPasswordStore(database.db).set('a new password');
  assert.notEqual(await server.hash(), stored);
  assert.equal(await server.check('line-3 bench password'), false);
  assert.equal(await server.check('a new password'), true);
  const rows = await database.db.selectFrom('settings').select('key').where('key', '=', 'admin_password').execute();
  assert.equal(rows.length, 1, 'replaced, not added');
});

testOnBothDatabases('password checks beyond the hashing queue are refused with a 503', async (_t, database) => {
  const passwords = createPasswordStore(database.db);
  await passwords.set('line-3 bench password');
  const outcomes = await Promise.allSettled(Array.from({ length: 12 }, () => passwords.check('a wrong guess')));
  const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
  assert.equal(refused.length, 3, 'one hashing and eight waiting; the rest refused');
  assert.ok(refused.every((outcome) => outcome.reason instanceof AppError && outcome.reason.statusCode === 503));
  assert.ok(outcomes.every((outcome) => outcome.status === 'rejected' || outcome.value === false));
  assert.equal(passwords.stats().checks, 9);
});
