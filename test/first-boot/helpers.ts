import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import type { TestServer } from '../helpers/server.js';
import { fatFile, importImage, makePartitionedImage } from '../device-files/helpers.js';

/** A clock the test moves by hand. */
export function manualClock() {
  let now = Date.now();
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** An image 'os' and a profile 'boot' that writes the deploy's first-boot token to /fb-token.txt. */
export async function prepareLine(server: TestServer, dir: string) {
  await importImage(server, makePartitionedImage(dir), 'os');
  const saved = await server.admin('POST', '/api/profiles', {
    name: 'boot',
    files: [{ partition: 1, fs: 'vfat', path: '/fb-token.txt', template: '{{first_boot_token}}\n' }],
  });
  assert.equal(saved.status, 201, JSON.stringify(saved.body));
}

/** Runs the real client once against a fresh fake eMMC; returns the token it wrote to the boot partition. */
export async function deployWithClient(t: TestContext, server: TestServer, dir: string, mac: string): Promise<string> {
  const emmc = join(dir, `${mac.replaceAll(':', '')}-${Math.random().toString(36).slice(2)}.img`);
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac, env: { WITH_FILE_TOOLS: '1' } });
  assert.equal(await client.exited, 0, client.output());
  return fatFile(emmc, '/fb-token.txt').trim();
}

/** What the installed OS's hook would send. */
export const firstBootCall = (token: string, mac: string) => ({ token, mac, serial: '10000000abcdef01', os_release: 'Debian GNU/Linux 13 (trixie)', kernel: '6.12.0-rpi-v8' });
