import { sql, type RawBuilder } from 'kysely';
import { badRequest } from '../shared/errors.js';

/** What a device list can be narrowed to; the same words as the dashboard's state badges. */
export const DEVICE_STATES = ['active', 'running', 'queued', 'stale', 'netbooting', 'ready'] as const;
export type DeviceState = (typeof DEVICE_STATES)[number];

export interface DeviceQuery {
  /** Part of a MAC (any separators, any case), an IP, a serial or a model. */
  search?: string;
  /** '' (a form's "any"): no filter. */
  state?: DeviceState | '';
  /** 'oldest' (default): first seen first, so new devices join at the end. */
  order?: 'oldest' | 'newest' | '';
  /** The `next` of the page before. */
  cursor?: string;
  limit: number;
}

/** A page position: the first-seen time and MAC of the row it follows. */
export interface Cursor {
  firstSeen: number;
  mac: string;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 500;

const ACTIVE = sql`SELECT device_mac FROM jobs WHERE state IN ('queued', 'running')`;
const STATE_SQL: Record<DeviceState, (staleBefore: number) => RawBuilder<boolean>> = {
  active: () => sql`mac IN (${ACTIVE})`,
  running: () => sql`mac IN (SELECT device_mac FROM jobs WHERE state = 'running')`,
  queued: () => sql`mac IN (SELECT device_mac FROM jobs WHERE state = 'queued')`,
  stale: (staleBefore) => sql`last_seen_at < ${staleBefore} AND mac NOT IN (${ACTIVE})`,
  netbooting: (staleBefore) => sql`last_seen_at >= ${staleBefore} AND registered_at IS NULL AND mac NOT IN (${ACTIVE})`,
  ready: (staleBefore) => sql`last_seen_at >= ${staleBefore} AND registered_at IS NOT NULL AND mac NOT IN (${ACTIVE})`,
};

const like = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * A device matches a search by part of its MAC (any separators), IP, serial or model (parameters
 * from deviceSearchParams). PostgreSQL's LIKE heeds case and SQLite's does not (for ASCII), so
 * both sides are lower-cased: the same devices match on both databases.
 */
export function deviceSearchCondition(params: { like: string; hex: string }): RawBuilder<boolean> {
  const like = sql`lower(${params.like})`;
  const hex = sql`lower(${params.hex})`;
  return sql<boolean>`(lower(mac) LIKE ${like} ESCAPE '\\' OR replace(lower(mac), ':', '') LIKE ${hex} ESCAPE '\\' OR lower(ip) LIKE ${like} ESCAPE '\\'
      OR lower(serial) LIKE ${like} ESCAPE '\\' OR lower(model) LIKE ${like} ESCAPE '\\')`;
}

/**
 * A search that looks like part of a MAC also matches it without separators, so `DC-A6-32`,
 * `dca632` and `dc:a6:32` find the same devices (`hex`); anything else matches as typed.
 */
export function deviceSearchParams(search: string): { like: string; hex: string } {
  const macLike = /^[0-9a-f:.\-]+$/i.test(search) && !/^[\d.]+$/.test(search);
  const asTyped = like(search);
  return { like: asTyped, hex: macLike ? like(search.toLowerCase().replace(/[:.\-]/g, '')) : asTyped };
}

/** The WHERE terms of a filter. */
export function deviceFilter(query: Pick<DeviceQuery, 'search' | 'state'>, staleBefore: number): RawBuilder<boolean>[] {
  const terms: RawBuilder<boolean>[] = [];
  const search = query.search?.trim();
  if (search) terms.push(deviceSearchCondition(deviceSearchParams(search)));
  if (query.state) terms.push(STATE_SQL[query.state](staleBefore));
  return terms;
}

/** Rows after the cursor in the list's order or, with `upTo`, the rows up to and including it. */
export function cursorTerm(order: DeviceQuery['order'], cursor: Cursor, upTo = false): RawBuilder<boolean> {
  const newest = order === 'newest';
  const { firstSeen, mac } = cursor;
  if (upTo) {
    return newest
      ? sql`first_seen_at >= ${firstSeen} AND NOT (first_seen_at = ${firstSeen} AND mac < ${mac})`
      : sql`first_seen_at <= ${firstSeen} AND NOT (first_seen_at = ${firstSeen} AND mac > ${mac})`;
  }
  return newest
    ? sql`first_seen_at <= ${firstSeen} AND (first_seen_at < ${firstSeen} OR mac < ${mac})`
    : sql`first_seen_at >= ${firstSeen} AND (first_seen_at > ${firstSeen} OR mac > ${mac})`;
}

export const orderBy = (order: DeviceQuery['order']) => (order === 'newest' ? sql`ORDER BY first_seen_at DESC, mac DESC` : sql`ORDER BY first_seen_at, mac`);

/** Cursors read like `1717171717171.dca632010203`: opaque to clients, but easy to check. */
export function encodeCursor(firstSeen: number, mac: string): string {
  return `${firstSeen}.${mac.replaceAll(':', '')}`;
}

export function decodeCursor(text: string): Cursor {
  const match = /^(\d{1,16})\.([0-9a-f]{12})$/.exec(text);
  if (!match) throw badRequest(`invalid cursor '${text.slice(0, 40)}': pass the 'next' value of the page before`);
  return { firstSeen: Number(match[1]), mac: match[2]!.match(/../g)!.join(':') };
}
