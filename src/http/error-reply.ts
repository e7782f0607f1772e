import type { FastifyError } from 'fastify';
import { isDatabaseUnreachable, isRetryableConflict } from '../db/errors.js';
import { AppError } from '../shared/errors.js';

export interface ErrorReply {
  status: number;
  body: { error: string; message: string };
  headers: Record<string, string>;
  /** Worth a log line with the full error (a fault here, not bad input). */
  log: boolean;
}

const RETRY_SOON = { 'retry-after': '5' };

/** SQLite result codes (https://www.sqlite.org/rescode.html) that mean "try again later". */
const DATABASE_BUSY = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);
/** …and those that mean the database file cannot be trusted or read. */
const DATABASE_BROKEN = /^SQLITE_(CORRUPT|NOTADB|IOERR|CANTOPEN|READONLY|PROTOCOL)/;

/**
 * What the client is told when a request fails. Messages meant for it (AppError, validation)
 * go out as they are; a fault of ours gets a sentence that says what kind of fault and whether
 * to retry, never the raw error text: that may hold file paths or other internals.
 * A full disk is 507 wherever it is hit (RFC 4918 §11.5), a busy or damaged database 503
 * with Retry-After, so clients retry rather than give up.
 */
export function errorReply(error: FastifyError | AppError | Error): ErrorReply {
  if (error instanceof AppError) return { status: error.statusCode, body: { error: error.code, message: error.message }, headers: error.headers, log: false };
  const fastify = error as FastifyError;
  if (fastify.validation) return { status: 400, body: { error: 'bad_request', message: `invalid request: ${error.message}` }, headers: {}, log: false };
  const code = String((error as NodeJS.ErrnoException).code ?? '');
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') {
    return { status: 507, body: { error: 'insufficient_storage', message: "the server's disk is full; nothing was stored" }, headers: {}, log: true };
  }
  if (isDatabaseUnreachable(error)) {
    return { status: 503, body: { error: 'database_unreachable', message: "the server cannot reach its database; try again in a few seconds" }, headers: RETRY_SOON, log: true };
  }
  if (DATABASE_BUSY.has(code) || isRetryableConflict(error)) {
    return { status: 503, body: { error: 'database_busy', message: "the server's database is busy; try again in a few seconds" }, headers: RETRY_SOON, log: true };
  }
  if (DATABASE_BROKEN.test(code)) {
    return {
      status: 503,
      body: { error: 'database_unavailable', message: "the server's database cannot be read or written (damaged or read-only); the operator must check the server" },
      headers: RETRY_SOON,
      log: true,
    };
  }
  const status = fastify.statusCode && fastify.statusCode >= 400 && fastify.statusCode < 600 ? fastify.statusCode : 500;
  if (status < 500) return { status, body: { error: 'bad_request', message: error.message }, headers: {}, log: false };
  return { status, body: { error: 'internal', message: 'the server failed to answer this request; the failure is in its log' }, headers: {}, log: true };
}

/** Job tokens ride in query strings; logs must never hold them. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}
