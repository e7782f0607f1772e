import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Queries } from '../db/database.js';
import { AppError } from '../shared/errors.js';
import { tokensEqual } from '../shared/tokens.js';

/** The header a station's request to another station carries the shared secret in. */
export const STATION_SECRET_HEADER = 'x-cm4prov-station-secret';
/** And its own name, for the other's log. */
export const STATION_NAME_HEADER = 'x-cm4prov-station';

const KEY = 'station_secret';

/**
 * The secret the stations sharing a database prove themselves to each other with (32 random
 * bytes, hex): made by the first station that needs it, read by the others. Of two stations
 * making it at once one insert wins, and both read the winner's.
 */
export async function stationSecret(db: Queries): Promise<string> {
  await db
    .insertInto('settings')
    .values({ key: KEY, value: randomBytes(32).toString('hex') })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  return (await db.selectFrom('settings').select('value').where('key', '=', KEY).executeTakeFirstOrThrow()).value;
}

/**
 * Lets through only requests from another station: its secret, compared in constant time.
 * `secret` is undefined while this station shares no database (SQLite): nobody is let in.
 */
export function requireStation(secret: () => string | undefined) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const known = secret();
    if (known === undefined) throw new AppError(403, 'forbidden', 'this server shares no database with other stations: its station routes answer nobody');
    const given = request.headers[STATION_SECRET_HEADER];
    if (typeof given !== 'string' || given === '') {
      throw new AppError(401, 'unauthorized', `this route is for the other stations sharing this database: send the station secret in ${STATION_SECRET_HEADER}`);
    }
    if (!tokensEqual(known, given)) throw new AppError(403, 'forbidden', 'the station secret is wrong: is the requester on another database?');
  };
}
