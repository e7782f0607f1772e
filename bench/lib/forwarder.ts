import { existsSync, rmSync } from 'node:fs';
import type { Cleanup } from './cleanup.js';
import type { Lab } from './netns.js';
import { sleep, startProcess, stopProcess } from './proc.js';

/**
 * Runs inside a namespace: accepts connections on a Unix socket (a file, visible from every
 * network namespace) and relays each to 127.0.0.1:PORT there. The harness calls the admin API
 * this way, without giving the host namespace an address in the lab.
 */
const RELAY = `
const net = require('node:net');
const [socketPath, port] = process.argv.slice(1);
net.createServer((inbound) => {
  const outbound = net.connect(Number(port), '127.0.0.1');
  inbound.pipe(outbound).pipe(inbound);
  inbound.on('error', () => outbound.destroy());
  outbound.on('error', () => inbound.destroy());
}).listen(socketPath);
`;

export async function startForwarder(lab: Lab, ns: string, socketPath: string, port: number, cleanup: Cleanup) {
  rmSync(socketPath, { force: true });
  const child = startProcess(lab.exec(ns)[0]!, [...lab.exec(ns).slice(1), process.execPath, '-e', RELAY, socketPath, String(port)], { stdio: 'ignore' });
  const stop = cleanup.add(`relay ${socketPath}`, async () => {
    await stopProcess(child, 2000);
    rmSync(socketPath, { force: true });
  });
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the relay to port ${port} in ${ns} did not start`);
    await sleep(20);
  }
  return stop;
}
