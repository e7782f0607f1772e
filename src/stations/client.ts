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

export function createStationClient(deps: { station: string; secret: () => string | undefined }): StationClient {
  return {
    async request(peer, path, options = {}) {
      const secret = deps.secret();
      if (secret === undefined) throw new PeerError('this station shares no database with other stations');
      try {
        return await fetch(new URL(path, `${peer.url}/`), {
          method: options.method ?? 'GET',
          headers: { ...options.headers, [STATION_SECRET_HEADER]: secret, [STATION_NAME_HEADER]: deps.station },
          signal: options.signal,
        });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        throw new PeerError(`station ${peer.name} (${peer.url}) cannot be reached: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
      }
    },
  };
}
