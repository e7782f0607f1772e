import { STATION_NAME_HEADER, STATION_SECRET_HEADER } from './secret.js';

/** Another station, as the stations table knows it. */
export interface Peer {
  name: string;
  url: string;
}

/** A request to another station that failed: it could not be reached, or it refused. */
export class PeerError extends Error {
  override name = 'PeerError';
  constructor(
    message: string,
    /** The peer's HTTP status; undefined when it was not reached. */
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface StationClient {
  /**
   * Sends a request to a peer's station route with this station's name and the shared secret.
   * Any answer is returned (the caller judges its status); a peer not reached throws PeerError.
   */
  request(peer: Peer, path: string, options?: { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; signal?: AbortSignal }): Promise<Response>;
}

/** Throws a PeerError with the peer's own sentence unless the answer has one of `statuses`. */
export async function expectStatus(peer: Peer, response: Response, ...statuses: number[]): Promise<Response> {
  if (statuses.includes(response.status)) return response;
  const text = await response.text().catch(() => '');
  let message = text.slice(0, 300);
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // Not JSON: its text as it is.
  }
  throw new PeerError(`station ${peer.name} answered ${response.status}${message ? `: ${message}` : ''}`, response.status);
}

/** A peer silent this long (no answer, or no byte of a body being read) is given up on. */
export const PEER_IDLE_MS = 30_000;

export function createStationClient(deps: { station: string; secret: () => string | undefined; idleMs?: number }): StationClient {
  const idleMs = deps.idleMs ?? PEER_IDLE_MS;
  return {
    async request(peer, path, options = {}) {
      const secret = deps.secret();
      if (secret === undefined) throw new PeerError('this station shares no database with other stations');
      // A link that goes down under an open connection sends no error, only silence (TCP gives up
      // after many minutes): silence for idleMs ends the request, as a cut connection would.
      const silence = new AbortController();
      const silent = () => silence.abort(new Error(`station ${peer.name} sent nothing for ${idleMs / 1000} s`));
      const signal = options.signal ? AbortSignal.any([options.signal, silence.signal]) : silence.signal;
      const timer = setTimeout(silent, idleMs);
      let response: Response;
      try {
        response = await fetch(new URL(path, `${peer.url}/`), {
          method: options.method ?? 'GET',
          headers: { ...options.headers, [STATION_SECRET_HEADER]: secret, [STATION_NAME_HEADER]: deps.station },
          signal,
        });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        const why = silence.signal.aborted ? `no answer in ${idleMs / 1000} s` : (cause?.code ?? cause?.message ?? (error as Error).message);
        throw new PeerError(`station ${peer.name} (${peer.url}) cannot be reached: ${why}`);
      } finally {
        clearTimeout(timer);
      }
      if (!response.body) return response;
      return new Response(watchedBody(response.body, idleMs, silent), { status: response.status, statusText: response.statusText, headers: response.headers });
    },
  };
}

/**
 * The body, read through: each read waiting longer than idleMs for the peer calls `silent`. Only
 * while a read waits: a reader that is slow itself (a browser's download) never trips it.
 */
function watchedBody(body: ReadableStream<Uint8Array>, idleMs: number, silent: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const timer = setTimeout(silent, idleMs);
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
