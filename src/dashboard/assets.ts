import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

interface Asset {
  body: Buffer;
  type: string;
}

const require = createRequire(import.meta.url);

/**
 * The dashboard's static files, all served by this server (the provisioning LAN has no
 * internet): our CSS and JS, and htmx with its SSE extension from node_modules.
 */
export function loadAssets() {
  const files: Record<string, [string, string]> = {
    'app.css': [join(import.meta.dirname, 'assets', 'app.css'), 'text/css; charset=utf-8'],
    'app.js': [join(import.meta.dirname, 'assets', 'app.js'), 'text/javascript; charset=utf-8'],
    'htmx.min.js': [require.resolve('htmx.org/dist/htmx.min.js'), 'text/javascript; charset=utf-8'],
    'htmx-sse.js': [require.resolve('htmx-ext-sse/dist/sse.js'), 'text/javascript; charset=utf-8'],
  };
  const assets = new Map<string, Asset>();
  const hash = createHash('sha256');
  for (const [name, [path, type]] of Object.entries(files)) {
    const body = readFileSync(path);
    hash.update(body);
    assets.set(name, { body, type });
  }
  return {
    /** Changes whenever any asset does: part of every asset URL, so browsers never run stale code. */
    version: hash.digest('hex').slice(0, 12),
    get: (name: string) => assets.get(name),
  };
}

export type Assets = ReturnType<typeof loadAssets>;
