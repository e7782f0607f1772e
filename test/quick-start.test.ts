import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ip, requireRoot } from './helpers/netns.js';

const REPO = resolve(import.meta.dirname, '..');

/** The README's Quick start block, as the commands each terminal gets, comments dropped. */
export function quickStartTerminals(readme: string): string[][] {
  const section = readme.slice(readme.indexOf('## Quick start'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, 'the Quick start has a sh block');
  const terminals: string[][] = [];
  let pending = '';
  for (const raw of block.split('\n')) {
    if (/^# Terminal \d/.test(raw)) terminals.push([]);
    const line = raw.replace(/(^|\s+)#.*$/, '');
    if (!line.trim()) continue;
    pending += line.endsWith('\\') ? `${line.slice(0, -1)} ` : line;
    if (line.endsWith('\\')) continue;
    terminals.at(-1)!.push(pending.replace(/\s+/g, ' ').trim());
    pending = '';
  }
  return terminals;
}

const quote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/**
 * One shell script that does what a newcomer does: each terminal's last command keeps running
 * (started in its own process group, stopped by that group at the end); the operator's commands
 * run one after another and must each succeed. Between terminals it waits, as a person would
 * look, for the server to answer and for the device to register.
 */
function newcomerScript(terminals: string[][], logs: string, password: string): string {
  const [server, device, operator] = terminals;
  const mac = /DEVICE_MAC=(\S+)/.exec(device!.join(' '))?.[1];
  assert.ok(server && device && operator && mac, 'three terminals, the device naming its MAC');
  const background = (command: string, name: string) => `setsid sh -c ${quote(command)} >${logs}/${name}.log 2>&1 &\n${name}_group=$!`;
  const run = (command: string) => {
    const input = /cm4prov admin password/.test(command) ? `printf '%s\\n' ${quote(password)} | ` : '';
    return `echo ${quote(`$ ${command}`)}\n${input}sh -c ${quote(command)}`;
  };
  return [
    'set -eu',
    `cd ${quote(REPO)}`,
    'ip link set lo up',
    // The trial's files and data folder, private to this run: the README's paths, untouched outside.
    'mount -t tmpfs cm4t-tmp /tmp',
    'mkdir -p data && mount -t tmpfs cm4t-data data',
    'server_group= device_group=',
    'stop() { for group in $device_group $server_group; do kill -TERM -- "-$group" 2>/dev/null || true; done; }',
    'trap stop EXIT',
    'wait_for() { tries=0; until sh -c "$1" >/dev/null 2>&1; do tries=$((tries + 1)); [ $tries -lt 900 ] || { echo "gave up waiting for: $1"; exit 1; }; sleep 0.2; done; }',
    ...server.slice(0, -1).map(run),
    background(server.at(-1)!, 'server'),
    'wait_for "curl -s -o /dev/null http://127.0.0.1:5000/"',
    ...device.slice(0, -1).map(run),
    background(device.at(-1)!, 'device'),
    `wait_for "npx cm4prov devices | grep -q ${mac}"`,
    ...operator.map(run),
    // What the deploy should have left on the stand-in eMMC: the test image, byte for byte.
    'cmp -n "$(stat -c %s /tmp/trial.img)" /tmp/trial.img /tmp/emmc.img && echo "eMMC holds the test image"',
  ].join('\n');
}

test("the README's Quick start, pasted in order, deploys, backs up and promotes", { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const terminals = quickStartTerminals(readFileSync(join(REPO, 'README.md'), 'utf8'));
  const id = randomBytes(3).toString('hex');
  const ns = `cm4t-qs-${id}`;
  // Outside /tmp, which the script replaces with its own.
  const logs = join(REPO, 'test-artifacts', `quick-start-${id}`);
  mkdirSync(logs, { recursive: true });
  ip('netns', 'add', ns);
  t.after(() => {
    for (const pid of ip('netns', 'pids', ns).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    ip('netns', 'delete', ns);
    rmSync(logs, { recursive: true, force: true });
  });
  const script = join(logs, 'newcomer.sh');
  writeFileSync(script, newcomerScript(terminals, logs, `trial-${id}-password`));

  const child = spawn('ip', ['netns', 'exec', ns, 'unshare', '--mount', '--propagation', 'private', 'sh', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const code = await new Promise<number | null>((done) => child.on('exit', done));
  const logsOf = (name: string) => (existsSync(join(logs, `${name}.log`)) ? readFileSync(join(logs, `${name}.log`), 'utf8') : `(no ${name}.log: it never started)`);
  const story = () => `${output}\n--- server ---\n${logsOf('server').slice(-3000)}\n--- device ---\n${logsOf('device').slice(-3000)}`;
  assert.equal(code, 0, story());
  assert.match(output, /Admin password set/, story());
  assert.match(output, /job \d+ ok: deployed trial to dc:a6:32:01:02:03 .*verified/, story());
  assert.match(output, /job \d+ ok: backed up dc:a6:32:01:02:03 as backup 1/, story());
  assert.match(output, /trial-copy/, story());
  assert.match(output, /eMMC holds the test image/, story());
  assert.match(logsOf('device'), /waiting for the next job/, 'the client kept serving after the deploy');
});
