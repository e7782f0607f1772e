import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { writeImageFile } from './files.js';
import { tempDir, type TestServer } from './server.js';

export const MAC = 'dc:a6:32:00:00:01';

export async function registerDevice(server: TestServer, mac = MAC, extra: Record<string, unknown> = {}) {
  const reply = await server.device('POST', '/api/register-device', { mac, ip: '10.20.50.101', storage_bytes: 64 * 1024 * 1024, ...extra });
  if (reply.status !== 200) throw new Error(`register failed: ${reply.text}`);
  return reply.body;
}

/** Adds an image of random bytes through the admin API; returns its name, sha256 and bytes. */
export async function addImage(t: TestContext, server: TestServer, name: string, bytes: number, options: { makeDefault?: boolean } = {}) {
  const file = join(tempDir(t), `${name}.img`);
  const sha256 = writeImageFile(file, bytes);
  const data = readFileSync(file);
  const query = new URLSearchParams({ name, ...(options.makeDefault ? { default: 'true' } : {}) });
  const response = await fetch(`${server.url}/api/images?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body: data,
  });
  if (response.status !== 201) throw new Error(`image add failed: ${response.status} ${await response.text()}`);
  return { name, sha256, bytes, file, data };
}

/** Polls as the device would (JSON) and returns the answer. */
export async function poll(server: TestServer, mac = MAC, wait = 0) {
  const reply = await server.device('GET', `/api/device-action-poll?mac=${encodeURIComponent(mac)}&wait=${wait}`);
  if (reply.status !== 200) throw new Error(`poll failed: ${reply.text}`);
  return reply.body;
}

/** Path and query of a job URL handed to a device, relative to the server. */
export const pathOf = (url: string) => {
  const parsed = new URL(url);
  return `${parsed.pathname}${parsed.search}`;
};
