import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { inTransaction, postgresDatabase } from '../../src/db/database.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

// A station's database connections when PostgreSQL restarts: a connection lost while a station
// holds it (a transaction between two statements, a query under way) fails that work, and only
// that work; it never ends the station's process. Found as an uncaught 'error' event of a
// checked-out client (the pool watches only the idle ones).

test('PostgreSQL restarted while a transaction holds a connection: the transaction fails, the process carries on, and the next query works', async (t) => {
  const postgres = startTestPostgres(t);
  const database = await postgresDatabase(postgres.url);
  t.after(() => database.close());
  const uncaught: Error[] = [];
  const onUncaught = (error: Error) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));

  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let inside!: () => void;
  const entered = new Promise<void>((resolve) => (inside = resolve));
  const transaction = inTransaction(database.db, async (tx) => {
    await sql`SELECT 1`.execute(tx);
    inside();
    await held; // the connection is checked out and idle: no query of it under way
    await sql`SELECT 2`.execute(tx);
  });
  await entered;
  postgres.stop(); // a fast shutdown: the server ends every connection with 57P01
  release();
  await assert.rejects(transaction);
  postgres.start();
  await waitFor('the database to answer again', async () => (await sql<{ n: number }>`SELECT 1 AS n`.execute(database.db).then((r) => r.rows[0]?.n, () => undefined)) === 1, 30_000, 100);
  assert.deepEqual(uncaught, [], 'no error left uncaught: it would have ended a station');
});
