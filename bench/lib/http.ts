import { request } from 'node:http';

export interface Reply {
  status: number;
  text: string;
  /** The JSON body, when there was one. */
  body: any;
}

export interface CallOptions {
  json?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * A small HTTP client for one server reached through a Unix socket (see forwarder.ts), so this
 * process needs no address in the server's namespace. `host` is sent as the Host header: the
 * server builds the job URLs it hands out from it, so it must be the address devices use.
 */
export function createHttp(socketPath: string, host: string) {
  return function call(method: string, path: string, options: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { host, ...options.headers };
    let payload: Buffer | undefined;
    if (options.json !== undefined) {
      payload = Buffer.from(JSON.stringify(options.json));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise<Reply>((resolve, reject) => {
      const req = request({ socketPath, method, path, headers, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          clearTimeout(timer);
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, body });
        });
        res.on('error', reject);
      });
      const timer = setTimeout(() => req.destroy(new Error(`${method} ${path} got no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      req.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.end(payload);
    });
  };
}

export type HttpCall = ReturnType<typeof createHttp>;
