/**
 * The load generator of benchmark 4, run by long-polls.ts inside the lab's namespace (its own
 * process, with a raised open-files limit): registers N devices, parks one long-poll per device,
 * orders deploys for a sample through the admin API and times order → answer. Prints JSON.
 *
 *   node --import tsx bench/benchmarks/long-poll-load.ts '{"url":…,"token":…,"devices":1000,…}'
 */
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

interface Params {
  url: string;
  token: string;
  devices: number;
  sample: number;
  wait: number;
  serverPid: number;
  adminCalls: number;
}

const params = JSON.parse(process.argv[2] ?? '{}') as Params;
const base = new URL(params.url);
const pollAgent = new Agent({ keepAlive: true, maxSockets: Infinity });
const say = (line: string) => process.stderr.write(`${line}\n`);

function call(method: string, path: string, options: { json?: unknown; agent?: Agent | false; admin?: boolean; timeoutMs?: number } = {}) {
  const payload = options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json));
  const headers: Record<string, string> = {};
  if (payload) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(payload.length) });
  if (options.admin) headers.authorization = `Bearer ${params.token}`;
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = request({ host: base.hostname, port: base.port, method, path, headers, agent: options.agent ?? false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${path}: no answer in time`)), options.timeoutMs ?? 30_000);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(payload);
  });
}

const macOf = (index: number) => ['dc', 'a6', '32', '20', (index >> 8).toString(16).padStart(2, '0'), (index & 255).toString(16).padStart(2, '0')].join(':');
const rss = () => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${params.serverPid}/status`, 'utf8'))?.[1]) * 1024;
const peak = () => Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${params.serverPid}/status`, 'utf8'))?.[1]) * 1024;

async function adminLatencies(count: number) {
  const samples: number[] = [];
  for (let index = 0; index < count; index++) {
    const began = performance.now();
    // The default page (100 devices): what the dashboard and the CLI ask for.
    const reply = await call('GET', '/api/devices', { admin: true });
    if (reply.status !== 200) throw new Error(`GET /api/devices: HTTP ${reply.status}`);
    samples.push(performance.now() - began);
  }
  return samples;
}

const macs = Array.from({ length: params.devices }, (_, index) => macOf(index));
const answered = new Map<string, { at: number; resolve: () => void; done: Promise<void> }>();
for (const mac of macs) {
  let resolve!: () => void;
  const done = new Promise<void>((settle) => (resolve = settle));
  answered.set(mac, { at: NaN, resolve, done });
}
let pollErrors = 0;
let sent = 0;

/** One device's long-poll loop: answers of `none` (the wait ran out) are polled again. */
async function pollLoop(mac: string) {
  let first = true;
  for (;;) {
    try {
      const path = `/api/device-action-poll?mac=${encodeURIComponent(mac)}&wait=${params.wait}`;
      const reply = await new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = request({ host: base.hostname, port: base.port, path, agent: pollAgent }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') }));
        });
        req.on('finish', () => {
          if (first) sent += 1;
          first = false;
        });
        req.setTimeout((params.wait + 30) * 1000, () => req.destroy(new Error('poll timed out')));
        req.on('error', reject);
        req.end();
      });
      if (reply.status === 200 && reply.body.action && reply.body.action !== 'none') {
        const entry = answered.get(mac)!;
        entry.at = performance.now();
        entry.resolve();
        return;
      }
      if (reply.status !== 200) throw new Error(`HTTP ${reply.status}`);
    } catch {
      pollErrors += 1;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function main() {
  const began = performance.now();
  for (let next = 0; next < macs.length; ) {
    const batch = macs.slice(next, (next += 16));
    await Promise.all(batch.map(async (mac) => {
      const reply = await call('POST', '/api/register-device', { json: { mac, storage_bytes: 64 * 1024 * 1024, client_version: 'bench' } });
      if (reply.status !== 200) throw new Error(`register ${mac}: HTTP ${reply.status}`);
    }));
  }
  say(`registered ${macs.length} devices in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  const idle = { rss: rss(), admin: await adminLatencies(params.adminCalls) };

  for (const mac of macs) void pollLoop(mac);
  const deadline = performance.now() + 60_000;
  while (sent < macs.length) {
    if (performance.now() > deadline) throw new Error(`only ${sent} of ${macs.length} polls were sent within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // Let the server take in the last requests before measuring with all of them parked.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  say(`${sent} long-polls parked`);
  const parked = { rss: rss(), admin: await adminLatencies(params.adminCalls) };

  const order = async (mac: string) => {
    const reply = await call('POST', `/api/devices/${mac}/deploy`, { json: {}, admin: true });
    if (reply.status < 200 || reply.status > 299) throw new Error(`deploy ${mac}: HTTP ${reply.status} ${JSON.stringify(reply.body)}`);
  };
  const withTimeout = (done: Promise<void>, mac: string) =>
    Promise.race([done, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer for ${mac} within 30 s`)), 30_000))]);

  const sequential: number[] = [];
  for (const mac of macs.slice(0, params.sample)) {
    const entry = answered.get(mac)!;
    const start = performance.now();
    await order(mac);
    await withTimeout(entry.done, mac);
    sequential.push(entry.at - start);
  }
  const burstMacs = macs.slice(params.sample, 2 * params.sample);
  const burstStart = performance.now();
  await Promise.all(burstMacs.map((mac) => order(mac)));
  await Promise.all(burstMacs.map((mac) => withTimeout(answered.get(mac)!.done, mac)));
  const burst = burstMacs.map((mac) => answered.get(mac)!.at - burstStart);
  const after = { rss: rss(), peak: peak() };

  process.stdout.write(`${JSON.stringify({ devices: macs.length, idle, parked, sequential, burst, after, pollErrors })}\n`);
  process.exit(0);
}

main().catch((error: Error) => {
  say(`load generator failed: ${error.message}`);
  process.exit(1);
});
