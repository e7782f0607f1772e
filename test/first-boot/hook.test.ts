import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse } from 'yaml';
import { namesIn, unknownName } from '../../src/device-files/template.js';
import {
  DEVICE,
  fakeRoot,
  HOOK_DIR,
  HOOK_VARIABLES,
  listener,
  refusedUrl,
  renderHook,
  run,
  systemctlStub,
  type FakeRoot,
} from './hook-helpers.js';

const BASE = 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait';
const UNIT = 'etc/systemd/system/cm4prov-firstboot.service';
const LINK = 'etc/systemd/system/multi-user.target.wants/cm4prov-firstboot.service';
const INSTALLED = 'usr/local/lib/cm4prov/firstboot.sh';

const exists = (path: string) => lstat(path).then(() => true, () => false);

/** The cmdline words, as the per-device "append" puts them on cmdline.txt's first line. */
async function addition(file = 'cmdline-addition.tmpl'): Promise<string> {
  return (await renderHook(file, { first_boot_url: 'unused' })).replace(/\n$/, '');
}

interface Installed {
  root: FakeRoot;
  script: string;
  systemctl: Awaited<ReturnType<typeof systemctlStub>>;
  env: Record<string, string>;
}

/** Renders the hook for `url`, puts it on the fake boot partition and runs stage 1 (systemd.run). */
async function stageOne(t: TestContext, url: string, options: { shell?: string; cmdline?: string; bootDir?: string; root?: FakeRoot } = {}): Promise<Installed> {
  const bootDir = options.bootDir ?? 'boot/firmware';
  const root = options.root ?? (await fakeRoot(t, { bootDir }));
  const script = await renderHook('firstboot.sh.tmpl', { first_boot_url: url });
  await writeFile(root.path(`${bootDir}/cm4prov-firstboot.sh`), script);
  await writeFile(root.path(`${bootDir}/cmdline.txt`), options.cmdline ?? `${BASE} ${await addition()}\n`);
  const systemctl = await systemctlStub(root);
  const env = {
    CM4PROV_FIRSTBOOT_ROOT: root.dir,
    CM4PROV_FIRSTBOOT_SYSTEMCTL: systemctl.path,
    CM4PROV_FIRSTBOOT_TRIES: '3',
    CM4PROV_FIRSTBOOT_DELAY: '0',
  };
  const result = await run(options.shell ?? 'sh', [root.path(`${bootDir}/cm4prov-firstboot.sh`)], env);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  return { root, script, systemctl, env };
}

async function stageTwo(installed: Installed, env: Record<string, string> = {}, shell = 'sh') {
  return run(shell, [installed.root.path(INSTALLED), 'report'], { ...installed.env, ...env });
}

async function assertRemoved(installed: Installed) {
  for (const file of [UNIT, LINK, INSTALLED]) assert.equal(await exists(installed.root.path(file)), false, `${file} removed`);
  assert.deepEqual(await installed.systemctl.calls(), ['disable cm4prov-firstboot.service', 'daemon-reload']);
}

async function assertStillInstalled(installed: Installed) {
  assert.equal(await readFile(installed.root.path(INSTALLED), 'utf8'), installed.script);
  assert.equal(await readlink(installed.root.path(LINK)), '../cm4prov-firstboot.service');
  assert.match(await readFile(installed.root.path(UNIT), 'utf8'), /ExecStart=\/bin\/sh \/usr\/local\/lib\/cm4prov\/firstboot\.sh report/);
  assert.deepEqual(await installed.systemctl.calls(), []);
}

const EXPECTED_FIELDS = {
  token: DEVICE.token,
  mac: DEVICE.mac,
  serial: DEVICE.serial,
  os_release: DEVICE.os_release,
  kernel: DEVICE.kernel,
};

function assertFields(request: { method: string; contentType: string; body: string }, expected: Record<string, string> = EXPECTED_FIELDS) {
  assert.equal(request.method, 'POST');
  assert.match(request.contentType, /^application\/x-www-form-urlencoded/);
  const fields = new URLSearchParams(request.body);
  assert.deepEqual([...fields.keys()].sort(), Object.keys(expected).sort(), 'each field exactly once');
  assert.deepEqual(Object.fromEntries(fields), expected);
}

test('the hook templates name only per-device-file variables and the two first-boot ones', async () => {
  for (const file of ['firstboot.sh.tmpl', 'cmdline-addition.tmpl', 'cmdline-addition-boot.tmpl', 'user-data-phone-home.tmpl']) {
    const template = await readFile(join(HOOK_DIR, file), 'utf8');
    for (const name of namesIn(template)) {
      if ((HOOK_VARIABLES as readonly string[]).includes(name)) continue;
      assert.equal(unknownName(name), null, `${file}: {{${name}}}`);
    }
  }
  assert.deepEqual(namesIn(await readFile(join(HOOK_DIR, 'firstboot.sh.tmpl'), 'utf8')).sort(), ['first_boot_token', 'first_boot_url', 'mac', 'serial']);
  // the append feature refuses a cmdline template with a line break other than the final one
  for (const file of ['cmdline-addition.tmpl', 'cmdline-addition-boot.tmpl']) {
    assert.doesNotMatch((await readFile(join(HOOK_DIR, file), 'utf8')).replace(/\n$/, ''), /[\r\n]/, file);
  }
});

test('the first-boot hook, rendered, passes shellcheck as POSIX sh and parses under busybox ash', async () => {
  const rendered = await renderHook('firstboot.sh.tmpl', { first_boot_url: 'http://10.20.50.1:8080/api/first-boot' });
  for (const text of [await readFile(join(HOOK_DIR, 'firstboot.sh.tmpl'), 'utf8'), rendered]) {
    const result = spawnSync('shellcheck', ['--shell=sh', '--severity=info', '-'], { input: text, encoding: 'utf8' });
    assert.equal(result.error, undefined, 'shellcheck is installed (scripts/install-test-deps.sh)');
    assert.equal(result.status, 0, result.stdout);
    assert.equal(spawnSync('busybox', ['sh', '-n'], { input: text }).status, 0);
  }
});

test('stage 1 installs the unit and removes exactly its own words from cmdline.txt', async (t) => {
  const server = await listener(t, [200]);
  const installed = await stageOne(t, server.url);
  const { root } = installed;
  assert.equal(await readFile(root.path('boot/firmware/cmdline.txt'), 'utf8'), `${BASE}\n`);
  const unit = await readFile(root.path(UNIT), 'utf8');
  assert.match(unit, /^After=network-online\.target$/m);
  assert.match(unit, /^Wants=network-online\.target$/m);
  assert.match(unit, /^WantedBy=multi-user\.target$/m);
  await assertStillInstalled(installed);
  assert.equal((await stat(root.path(INSTALLED))).mode & 0o777, 0o700, 'the copy holding the token is root-only');
  assert.equal(await exists(root.path('boot/firmware/cm4prov-firstboot.sh')), false, 'the boot-partition copy is gone');
  assert.equal(server.requests.length, 0, 'stage 1 does not call back: the network may be down');
});

test('stage 1 keeps everything else on the line and the later lines byte for byte (CRLF, a word after ours)', async (t) => {
  const words = await addition();
  const later = `second line ${words}\n`;
  const installed = await stageOne(t, 'http://127.0.0.1:9/', { cmdline: `${BASE} ${words} quiet splash\r\n${later}` });
  assert.equal(await readFile(installed.root.path('boot/firmware/cmdline.txt'), 'utf8'), `${BASE} quiet splash\r\n${later}`);
});

test('stage 1 on an image that mounts the boot partition at /boot (before Bookworm)', async (t) => {
  const words = await addition('cmdline-addition-boot.tmpl');
  assert.match(words, /^systemd\.run=\/boot\/cm4prov-firstboot\.sh /);
  const installed = await stageOne(t, 'http://127.0.0.1:9/', { bootDir: 'boot', cmdline: `${BASE} ${words}` });
  assert.equal(await readFile(installed.root.path('boot/cmdline.txt'), 'utf8'), BASE, 'no line break added');
  assert.equal(await exists(installed.root.path('boot/cm4prov-firstboot.sh')), false);
  await assertStillInstalled(installed);
});

test('stage 2 posts token, mac, serial, os_release and kernel once, and on 200 removes itself', async (t) => {
  const server = await listener(t, [200]);
  const installed = await stageOne(t, server.url);
  const result = await stageTwo(installed);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(server.requests.length, 1);
  assert.equal(server.requests[0]!.url, '/api/first-boot');
  assertFields(server.requests[0]!);
  await assertRemoved(installed);
});

test('stage 2 on 409 (token used) removes itself without retrying', async (t) => {
  const server = await listener(t, [409]);
  const installed = await stageOne(t, server.url);
  const result = await stageTwo(installed);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(server.requests.length, 1);
  assert.match(result.stdout, /HTTP 409/);
  await assertRemoved(installed);
});

test('stage 2 retries 503 answers, then takes the 200', async (t) => {
  const server = await listener(t, [503, 503, 200]);
  const installed = await stageOne(t, server.url);
  const result = await stageTwo(installed);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(server.requests.length, 3);
  for (const request of server.requests) assertFields(request);
  await assertRemoved(installed);
});

test('stage 2 retries a refused connection, then gives up and stays installed for the next boot', async (t) => {
  const installed = await stageOne(t, await refusedUrl());
  const result = await stageTwo(installed);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /try 1 of 3 failed \(HTTP 000\)/);
  assert.match(result.stdout, /try 2 of 3 failed \(HTTP 000\)/);
  assert.match(result.stdout, /no call back after 3 tries/);
  await assertStillInstalled(installed);
});

test('with wget instead of curl (GNU and busybox): the same fields, 409 and 200 understood', async (t) => {
  const busybox = await fakeRoot(t);
  await mkdir(busybox.path('bin'));
  await symlink('/usr/bin/busybox', busybox.path('bin/wget'));
  for (const [name, path] of [['GNU wget', process.env.PATH!], ['busybox wget', `${busybox.path('bin')}:${process.env.PATH!}`]] as const) {
    for (const status of [409, 200]) {
      const server = await listener(t, [status]);
      const installed = await stageOne(t, server.url);
      const result = await stageTwo(installed, { CM4PROV_FIRSTBOOT_HTTP: 'wget', PATH: path });
      assert.equal(result.code, 0, `${name}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /with wget/);
      assert.equal(server.requests.length, 1, name);
      assertFields(server.requests[0]!);
      await assertRemoved(installed);
    }
  }
});

test('busybox ash runs both stages', async (t) => {
  const server = await listener(t, [200]);
  const root = await fakeRoot(t);
  const script = await renderHook('firstboot.sh.tmpl', { first_boot_url: server.url });
  await writeFile(root.path('boot/firmware/cm4prov-firstboot.sh'), script);
  await writeFile(root.path('boot/firmware/cmdline.txt'), `${BASE} ${await addition()}\n`);
  const systemctl = await systemctlStub(root);
  const env = { CM4PROV_FIRSTBOOT_ROOT: root.dir, CM4PROV_FIRSTBOOT_SYSTEMCTL: systemctl.path, CM4PROV_FIRSTBOOT_DELAY: '0' };
  const one = await run('busybox', ['sh', root.path('boot/firmware/cm4prov-firstboot.sh')], env);
  assert.equal(one.code, 0, one.stdout + one.stderr);
  assert.equal(await readFile(root.path('boot/firmware/cmdline.txt'), 'utf8'), `${BASE}\n`);
  const two = await run('busybox', ['sh', root.path(INSTALLED), 'report'], env);
  assert.equal(two.code, 0, two.stdout + two.stderr);
  assert.equal(server.requests.length, 1);
  assertFields(server.requests[0]!);
  await assertRemoved({ root, script, systemctl, env });
});

test('without device-tree serial or wired interface: /proc/cpuinfo, then the templated values', async (t) => {
  const server = await listener(t, [200, 200]);
  const cpuinfo = await stageOne(t, server.url, { root: await fakeRoot(t, { serialFile: false, cpuinfoSerial: true }) });
  assert.equal((await stageTwo(cpuinfo)).code, 0);
  assertFields(server.requests[0]!, { ...EXPECTED_FIELDS, serial: '10000000cafe0002' });
  const bare = await stageOne(t, server.url, { root: await fakeRoot(t, { serialFile: false, wired: false }) });
  assert.equal((await stageTwo(bare)).code, 0);
  assertFields(server.requests[1]!, EXPECTED_FIELDS);
});

/** The user-data's runcmd script, rendered for `url`. */
async function userDataScript(url: string): Promise<string> {
  const userData = await renderHook('user-data-phone-home.tmpl', { first_boot_url: url });
  assert.match(userData, /^#cloud-config\n/);
  const config = parse(userData) as { runcmd: string[][]; phone_home?: unknown };
  assert.equal(config.phone_home, undefined, 'phone_home is documented, not active: it cannot send the serial');
  assert.deepEqual(config.runcmd[0]!.slice(0, 2), ['sh', '-c']);
  return config.runcmd[0]![2]!;
}

test('the user-data runcmd passes shellcheck and posts the same fields; 409 is not retried', async (t) => {
  const script = await userDataScript('http://10.20.50.1:8080/api/first-boot');
  const lint = spawnSync('shellcheck', ['--shell=sh', '--severity=info', '-'], { input: script, encoding: 'utf8' });
  assert.equal(lint.status, 0, lint.stdout);
  for (const status of [200, 409]) {
    const server = await listener(t, [status]);
    const root = await fakeRoot(t);
    const result = await run('sh', ['-c', await userDataScript(server.url)], { CM4PROV_FIRSTBOOT_ROOT: root.dir });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(server.requests.length, 1);
    assertFields(server.requests[0]!);
  }
  const refused = await run('sh', ['-c', await userDataScript(await refusedUrl())], {
    CM4PROV_FIRSTBOOT_ROOT: (await fakeRoot(t)).dir,
    CM4PROV_FIRSTBOOT_TRIES: '0',
  });
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /no call back \(last: HTTP 000\)/);
});
