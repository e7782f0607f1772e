import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, startCli } from '../helpers/cli.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { fatFile, importImage, makePartitionedImage, scratch } from '../device-files/helpers.js';
import { firstBootCall, manualClock } from '../first-boot/helpers.js';

const MAC = 'dc:a6:32:00:13:21';
const SUMMARY = 'confirmed: booted Debian GNU/Linux 13 (trixie) (6.12.0-rpi-v8)';

const cliEnv = (server: TestServer) => ({ CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token });

/** `2026-11-25T10:04:05.123Z` as the CLI prints it: `2026-11-25 10:04:05Z`. */
const printed = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

/** A server whose clock only the test moves (so no first boot times out by itself), with the image 'os' (FAT boot partition with cmdline.txt). */
async function lineServer(t: TestContext) {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await importImage(server, makePartitionedImage(dir), 'os');
  return { dir, clock, server };
}

/** The real client on a fresh fake eMMC, registered and polling; the eMMC's path to read back. */
async function startDevice(t: TestContext, server: TestServer, dir: string) {
  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { WITH_FILE_TOOLS: '1' } });
  await waitFor('the device to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  return { emmc, client };
}

/** The one-time token as the deploy wrote it into the hook script on the eMMC's boot partition. */
function tokenOnEmmc(emmc: string): string {
  const script = fatFile(emmc, '/cm4prov-firstboot.sh');
  const token = /^TOKEN='([^']*)'$/m.exec(script)?.[1];
  assert.match(token ?? '', /^[A-Za-z0-9_-]{43}$/, `a rendered token in the hook script:\n${script.slice(0, 2000)}`);
  return token!;
}

test('deploy: a bad --confirm-timeout, an unknown hook or a first-boot flag without --confirm-boot exits 2 with one sentence and queues nothing; good ones reach the job', async (t) => {
  const { server } = await lineServer(t);
  const env = cliEnv(server);
  await registerDevice(server, MAC);
  const deploy = (...flags: string[]) => runCli(['deploy', MAC, '--image', 'os', ...flags], env);

  const refusals: Array<[string[], string]> = [
    [['--confirm-boot', '--confirm-timeout', '29'], "--confirm-timeout takes 30 s to 24 h, not '29'"],
    [['--confirm-boot', '--confirm-timeout', '86401'], "--confirm-timeout takes 30 s to 24 h, not '86401'"],
    [['--confirm-boot', '--confirm-timeout', '25h'], "--confirm-timeout takes 30 s to 24 h, not '25h'"],
    [['--confirm-boot', '--confirm-timeout', 'ten'], "--confirm-timeout takes seconds (600) or a number with s, m or h (90s, 10m, 1h), not 'ten'"],
    [['--confirm-boot', '--confirm-timeout', '10m30s'], "--confirm-timeout takes seconds (600) or a number with s, m or h (90s, 10m, 1h), not '10m30s'"],
    [['--confirm-boot', '--first-boot-hook', 'grub'], "--first-boot-hook takes cmdline, cmdline-boot or none, not 'grub'"],
    [['--confirm-timeout', '10m'], '--confirm-timeout needs --confirm-boot (a deploy without it awaits no first boot)'],
    [['--first-boot-hook', 'cmdline'], '--first-boot-hook needs --confirm-boot (a deploy without it awaits no first boot)'],
    [['--wait-boot'], '--wait-boot needs --confirm-boot (a deploy without it awaits no first boot)'],
    [['--confirm-timeout', '90s', '--wait-boot'], '--confirm-timeout and --wait-boot need --confirm-boot (a deploy without it awaits no first boot)'],
  ];
  for (const [flags, sentence] of refusals) {
    const refused = await deploy(...flags);
    assert.equal(refused.code, 2, `${flags.join(' ')}: ${refused.stderr}`);
    assert.equal(refused.stderr, `cm4prov: ${sentence}\n`);
    assert.equal(refused.stdout, '');
  }
  assert.deepEqual((await server.admin('GET', '/api/jobs')).body.jobs, [], 'no refusal queued a job, though the device and image would take one');

  // Seconds, s, m and h, up to the bounds; the hook as given, else cmdline.
  for (const [timeout, seconds, hook] of [['1h', 3600, 'cmdline-boot'], ['90', 90, undefined], ['30s', 30, 'none'], ['24h', 86_400, undefined], ['10m', 600, 'cmdline']] as const) {
    const flags = ['--confirm-boot', '--confirm-timeout', timeout, ...(hook ? ['--first-boot-hook', hook] : []), '--json'];
    // Hook none needs a profile that carries the token: the server says so, which shows the hook reached it.
    const ordered = await deploy(...flags);
    if (hook === 'none') {
      assert.equal(ordered.code, 1);
      assert.match(ordered.stderr, /^cm4prov: the server refused: .*\{\{first_boot_token\}\}/);
      continue;
    }
    assert.equal(ordered.code, 0, ordered.stderr);
    const job = JSON.parse(ordered.stdout);
    assert.deepEqual(
      [job.first_boot.state, job.first_boot.timeout_seconds, job.first_boot.hook],
      ['not_yet', seconds, hook ?? 'cmdline'],
      `--confirm-timeout ${timeout}`,
    );
    assert.equal((await server.admin('POST', `/api/jobs/${job.id}/cancel`)).status, 200);
  }
  const plain = await deploy('--json');
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(JSON.parse(plain.stdout).first_boot, null, 'without --confirm-boot no first boot is asked for');
});

test('deploy --confirm-boot --wait ends "ok · awaiting first boot"; jobs, jobs show and records show then show it confirmed', async (t) => {
  const { dir, server } = await lineServer(t);
  const env = cliEnv(server);
  const { emmc, client } = await startDevice(t, server, dir);

  const deploy = await runCli(['deploy', MAC, '--image', 'os', '--confirm-boot', '--wait'], env);
  assert.equal(deploy.code, 0, deploy.stderr);
  const job = (await server.admin('GET', '/api/jobs')).body.jobs[0];
  assert.equal(job.first_boot.state, 'awaiting');
  const lines = deploy.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 2, deploy.stdout);
  assert.match(lines[0]!, new RegExp(`^job ${job.id} ok: deployed os to ${MAC} in .*; [\\d.]+ KiB in \\d+ mapped ranges verified; `));
  assert.equal(lines[1], `job ${job.id} ok · awaiting first boot; deadline ${printed(job.first_boot.deadline_at)}; hook cmdline`);
  assert.equal(await client.exited, 0);

  const awaiting = await runCli(['jobs', 'show', String(job.id)], env);
  assert.equal(awaiting.code, 0, awaiting.stderr);
  assert.match(awaiting.stdout, /^State: ok · awaiting first boot$/m);
  assert.match(awaiting.stdout, new RegExp(`^First boot: awaiting first boot; deadline ${escape(printed(job.first_boot.deadline_at))}; hook cmdline$`, 'm'));

  const called = await server.device('POST', '/api/first-boot', firstBootCall(tokenOnEmmc(emmc), MAC));
  assert.equal(called.status, 200, called.text);
  const confirmedAt = printed((await server.admin('GET', `/api/jobs/${job.id}`)).body.first_boot.confirmed_at);

  const shown = await runCli(['jobs', 'show', String(job.id)], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^Job ${job.id}: deploy os \\([\\d.]+ MiB\\) on ${MAC}, ordered by operator$`, 'm'));
  assert.match(shown.stdout, new RegExp(`^State: ok · ${escape(SUMMARY)}$`, 'm'));
  assert.match(shown.stdout, new RegExp(`^First boot: ${escape(SUMMARY)}; confirmed at ${escape(confirmedAt)}; hook cmdline$`, 'm'));
  const shownJson = await runCli(['jobs', 'show', String(job.id), '--json'], env);
  assert.equal(JSON.parse(shownJson.stdout).first_boot.summary, SUMMARY, 'jobs show --json: --json is the subcommand\'s');

  const list = await runCli(['jobs'], env);
  assert.match(list.stdout, new RegExp(`^${job.id}\\s+${MAC}\\s+deploy\\s+ok · ${escape(SUMMARY)}\\s+os\\s+operator`, 'm'));

  const record = await runCli(['records', 'show', MAC.toUpperCase().replaceAll(':', '-')], env);
  assert.equal(record.code, 0, record.stderr);
  assert.match(record.stdout, new RegExp(`^job ${job.id} deploy os on ${MAC} by operator, .*: ok · ${escape(SUMMARY)}; [\\d.]+ KiB in \\d+ mapped ranges verified; `, 'm'));
  assert.match(record.stdout, new RegExp(`^  first boot: ${escape(SUMMARY)}; confirmed at ${escape(confirmedAt)}; hook cmdline$`, 'm'));
  const records = await runCli(['records'], env);
  assert.match(records.stdout, new RegExp(`\\b${job.id} deploy ok · ${escape(SUMMARY)}\\s`));
  const missing = await runCli(['records', 'show', 'dc:a6:32:99:99:99'], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^cm4prov: the server refused: /);
});

test('deploy --wait-boot on a terminal counts down to the deadline and exits 0 with the OS once the installed OS calls back', async (t) => {
  const { dir, clock, server } = await lineServer(t);
  const { emmc, client } = await startDevice(t, server, dir);

  const before = Date.now();
  const waiting = startCli(t, ['deploy', MAC, '--image', 'os', '--confirm-boot', '--wait-boot'], cliEnv(server), { tty: true });
  let exitCode: number | null | undefined;
  void waiting.exited.then((code) => (exitCode = code));
  const countdown = new RegExp(`job (\\d+): ok · awaiting first boot of ${MAC}: (\\d+):(\\d\\d) left`);
  await waiting.waitForOutput(countdown);
  const after = Date.now();
  const [, id, minutes, seconds] = countdown.exec(waiting.output())!;
  const left = Number(minutes) * 60 + Number(seconds);
  // The deadline is the job's end by the server's clock (held at clock.now()) + 10 min; the time
  // left is counted to it from the server's HTTP Date (real time, whole seconds) of a reply the
  // CLI had between `before` and `after`.
  const deadline = clock.now() + 600_000;
  assert.ok(left <= Math.ceil((deadline - before) / 1000) + 1 && left >= Math.floor((deadline - after) / 1000) - 1, `${left} s left`);
  assert.equal(await client.exited, 0);
  assert.equal(exitCode, undefined, 'still waiting: nothing has called back');
  const awaited = (await server.admin('GET', `/api/jobs/${id}`)).body;
  assert.deepEqual([awaited.first_boot.state, Date.parse(awaited.first_boot.deadline_at)], ['awaiting', deadline]);

  const called = await server.device('POST', '/api/first-boot', firstBootCall(tokenOnEmmc(emmc), MAC));
  assert.equal(called.status, 200, called.text);
  assert.equal(await waiting.exited, 0, waiting.output());
  const job = (await server.admin('GET', `/api/jobs/${id}`)).body;
  assert.match(waiting.output(), new RegExp(`job ${id} ok: deployed os to ${MAC} in `));
  assert.match(waiting.output(), new RegExp(`job ${id} ok · ${escape(SUMMARY)}; confirmed at ${escape(printed(job.first_boot.confirmed_at))}; hook cmdline\\r?\\n`));
});

test('deploy --wait-boot exits 1 with "not confirmed" and says netboot is back on when the deadline passes', async (t) => {
  const { dir, clock, server } = await lineServer(t);
  const env = cliEnv(server);
  const { client } = await startDevice(t, server, dir);

  const waiting = startCli(t, ['deploy', MAC, '--image', 'os', '--confirm-boot', '--confirm-timeout', '30s', '--wait-boot'], env);
  await waiting.waitForOutput(/job \d+ ok · awaiting first boot; deadline [\d-]+ [\d:]+Z; hook cmdline\n/);
  assert.equal(await client.exited, 0);
  const job = (await server.admin('GET', '/api/jobs')).body.jobs[0];
  assert.equal(job.first_boot.timeout_seconds, 30);
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled, false, 'after the ok deploy it boots its eMMC');

  // Past the deadline by the server's clock; the watchdog (every 5 s) or this call ends the wait.
  clock.advance(31_000);
  await server.server.services.firstBoot.expireDue();
  assert.equal(await waiting.exited, 1, waiting.output());
  assert.match(
    waiting.output(),
    new RegExp(`\\ncm4prov: job ${job.id} \\(deploy on ${MAC}\\) not confirmed: no first-boot call within 30 s; netboot is back on for ${MAC}, so its next power cycle brings it back into provisioning\\n$`),
  );
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled, true);

  const shown = await runCli(['jobs', 'show', String(job.id)], env);
  assert.match(shown.stdout, /^State: ok · not confirmed: no first-boot call within 30 s$/m);
  assert.match(shown.stdout, new RegExp(`^First boot: not confirmed: no first-boot call within 30 s; deadline was ${escape(printed(job.first_boot.deadline_at))}; hook cmdline$`, 'm'));
});

test('rules add/edit: --confirm-boot / --no-confirm-boot, --confirm-timeout and --first-boot-hook round-trip; rules list and show print them', async (t) => {
  const server = await startTestServer(t);
  const env = cliEnv(server);
  const add = (name: string, ...flags: string[]) => runCli(['rules', 'add', name, ...flags, '--json'], env);

  const cases: Array<[string, string[], { confirm_boot: boolean; confirm_timeout: number | null; first_boot_hook: string }, string]> = [
    ['plain', ['--action', 'deploy'], { confirm_boot: true, confirm_timeout: null, first_boot_hook: 'cmdline' }, 'on, 10 min, hook cmdline'],
    ['off', ['--action', 'deploy', '--no-confirm-boot'], { confirm_boot: false, confirm_timeout: null, first_boot_hook: 'cmdline' }, 'off'],
    ['quick', ['--action', 'backup-deploy', '--confirm-timeout', '90s', '--first-boot-hook', 'cmdline-boot'], { confirm_boot: true, confirm_timeout: 90, first_boot_hook: 'cmdline-boot' }, 'on, 90 s, hook cmdline-boot'],
    ['slow', ['--action', 'deploy', '--confirm-boot', '--confirm-timeout', '2h', '--first-boot-hook', 'none'], { confirm_boot: true, confirm_timeout: 7200, first_boot_hook: 'none' }, 'on, 2 h, hook none'],
    ['backups', ['--action', 'backup'], { confirm_boot: false, confirm_timeout: null, first_boot_hook: 'cmdline' }, 'off'],
  ];
  for (const [name, flags, expected, text] of cases) {
    const added = await add(name, ...flags);
    assert.equal(added.code, 0, added.stderr);
    const { confirm_boot, confirm_timeout, first_boot_hook } = JSON.parse(added.stdout);
    assert.deepEqual({ confirm_boot, confirm_timeout, first_boot_hook }, expected, name);
    const stored = (await server.admin('GET', `/api/rules/${JSON.parse(added.stdout).id}`)).body;
    assert.deepEqual([stored.confirm_boot, stored.confirm_timeout, stored.first_boot_hook], [expected.confirm_boot, expected.confirm_timeout, expected.first_boot_hook]);
    const shown = await runCli(['rules', 'show', name], env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^Rule \\d+ '${name}', position \\d, on: any device → `));
    assert.match(shown.stdout, new RegExp(`^First boot: ${text}$`, 'm'), name);
  }

  const refusals: Array<[string[], string]> = [
    [['--no-confirm-boot', '--confirm-timeout', '5m'], '--confirm-timeout cannot go with --no-confirm-boot (a rule that does not confirm first boots awaits none)'],
    [['--no-confirm-boot', '--first-boot-hook', 'none'], '--first-boot-hook cannot go with --no-confirm-boot (a rule that does not confirm first boots awaits none)'],
    [['--confirm-timeout', '10'], "--confirm-timeout takes 30 s to 24 h, not '10'"],
    [['--first-boot-hook', 'systemd'], "--first-boot-hook takes cmdline, cmdline-boot or none, not 'systemd'"],
  ];
  for (const [flags, sentence] of refusals) {
    const refused = await add('bad', '--action', 'deploy', ...flags);
    assert.equal(refused.code, 2, flags.join(' '));
    assert.equal(refused.stderr, `cm4prov: ${sentence}\n`);
  }
  assert.equal((await server.admin('GET', '/api/rules')).body.rules.length, cases.length, 'no refusal added a rule');
  const list = await runCli(['rules', 'list'], env);
  assert.match(list.stdout, /^#\s+ID\s+NAME\s+ON\s+MATCHES\s+DOES\s+FIRST BOOT\s+LIMIT/m);
  for (const [name, , , text] of cases) assert.match(list.stdout, new RegExp(`^\\d+\\s+\\d+\\s+${name}\\s+yes\\s+any device\\s+.*\\s${text}\\s+none\\s+0\\s+0$`, 'm'), name);

  // rules edit changes only what it is given.
  const edited = await runCli(['rules', 'edit', 'off', '--confirm-boot', '--confirm-timeout', '45m'], env);
  assert.equal(edited.code, 0, edited.stderr);
  assert.equal(edited.stdout, "rule 'off' changed: first boot on, 45 min, hook cmdline\n");
  const hookOnly = await runCli(['rules', 'edit', 'quick', '--first-boot-hook', 'cmdline', '--json'], env);
  assert.deepEqual((({ confirm_boot, confirm_timeout, first_boot_hook }) => ({ confirm_boot, confirm_timeout, first_boot_hook }))(JSON.parse(hookOnly.stdout)), { confirm_boot: true, confirm_timeout: 90, first_boot_hook: 'cmdline' });
  const switchedOff = await runCli(['rules', 'edit', 'slow', '--no-confirm-boot'], env);
  assert.equal(switchedOff.stdout, "rule 'slow' changed: first boot off\n");
  assert.equal((await server.admin('GET', '/api/rules')).body.rules.find((rule: { name: string }) => rule.name === 'slow').confirm_boot, false);
  const nothing = await runCli(['rules', 'edit', 'slow'], env);
  assert.equal(nothing.code, 2);
  assert.equal(nothing.stderr, 'cm4prov: rules edit needs something to change: --confirm-boot, --no-confirm-boot, --confirm-timeout or --first-boot-hook\n');
  const contradiction = await runCli(['rules', 'edit', 'slow', '--no-confirm-boot', '--confirm-timeout', '5m'], env);
  assert.equal(contradiction.code, 2);
  assert.equal(contradiction.stderr, 'cm4prov: --confirm-timeout cannot go with --no-confirm-boot (a rule that does not confirm first boots awaits none)\n');
  const unknown = await runCli(['rules', 'show', 'nope'], env);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, "cm4prov: there is no rule named 'nope' (cm4prov rules list)\n");
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
