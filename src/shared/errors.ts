/**
 * An error whose message is meant for the person or device that made the request.
 * Routes throw these; the app's error handler turns them into `{ error, message }` replies.
 */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Headers the reply carries with it (Retry-After on a 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const badRequest = (message: string) => new AppError(400, 'bad_request', message);
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);
export const notFound = (message: string) => new AppError(404, 'not_found', message);
export const conflict = (message: string) => new AppError(409, 'conflict', message);
/** Over a rate limit; the error's `headers` carry Retry-After (RFC 9110 §10.2.3) in seconds. */
export const tooManyRequests = (message: string, retryAfterSeconds: number) =>
  new AppError(429, 'too_many_requests', message, { 'retry-after': String(retryAfterSeconds) });
export const gone = (message: string) => new AppError(410, 'gone', message);
export const insufficientStorage = (message: string) =>
  new AppError(507, 'insufficient_storage', message);
