/** Exit codes of cm4prov, documented in the README. */
export const EXIT = {
  ok: 0,
  /** The server refused the request, or a followed job ended failed or cancelled. */
  failed: 1,
  /** A bad flag, argument or setting. */
  usage: 2,
  /** The server could not be reached, or did not accept the admin token. */
  unreachable: 3,
} as const;

/** A failure whose message is one sentence for the person at the terminal. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
  }
}
