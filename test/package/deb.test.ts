import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { createNetbootLab, inNamespace, type NetbootLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';
import { dhcp, PI_MAC, RASPBERRY_PI_BOOT } from '../netboot/lab-server.js';
import { capabilityMask, parseUnit, unitCommand, type Unit } from './as-the-unit.js';
import { buildDeb, contents, field, PACKAGE_VERSION } from './build.js';
import { check, createCleanRoot, hostNodejsDeb, REPO_DIR, run, shown, type CleanRoot } from './clean-root.js';

const NEEDS_ROOT = process.getuid?.() === 0 ? false : 'needs root for a chroot, namespaces and dpkg (CI runs as root)';
const ARCH = check('dpkg', ['--print-architecture']).trim();
const SERVICE = 'cm4-provisioning.service';
const USER = 'cm4-provisioning';
const DATA = '/var/lib/cm4-provisioning';
const CONFIG = '/etc/cm4-provisioning/config.json';
const NET_CAPS = ['CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_NET_ADMIN'];
const WANTS = `etc/systemd/system/multi-user.target.wants/${SERVICE}`;
const UPGRADE_VERSION = `${PACKAGE_VERSION}+upgrade1`;

let out: string;
let deb: string;
before(() => {
  out = mkdtempSync(join(tmpdir(), 'cm4prov-deb-'));
  const built = buildDeb(out);
  deb = built.deb;
  process.stderr.write(`# build-deb.sh: ${built.seconds.toFixed(1)} s, ${(readFileSync(deb).length / 1e6).toFixed(1)} MB\n`);
});
after(() => rmSync(out, { recursive: true, force: true }));

test('build-deb.sh makes cm4-provisioning_VERSION_ARCH.deb with the program, unit, config and maintainer scripts', async (t) => {
  await t.test('named and described for this version and architecture, needing the Node it was built for', () => {
    assert.equal(basename(deb), `cm4-provisioning_${PACKAGE_VERSION}_${ARCH}.deb`);
    assert.equal(field(deb, 'Package'), 'cm4-provisioning');
    assert.equal(field(deb, 'Version'), PACKAGE_VERSION);
    assert.equal(field(deb, 'Architecture'), ARCH);
    const depends = field(deb, 'Depends').split(/,\s*/);
    const major = Number(process.versions.node.split('.')[0]);
    assert.ok(depends.includes('nodejs (>= 20.6)'), depends.join(', '));
    assert.ok(depends.includes(`nodejs (<< ${major + 1})`), 'better-sqlite3 is built for one Node ABI');
    assert.ok(depends.includes('adduser'));
    assert.ok(depends.some((dep) => dep.startsWith('libc6 (>=')), 'dpkg-shlibdeps found what the native modules link');
    assert.match(field(deb, 'Recommends'), /\bdnsmasq-base\b/);
  });

  await t.test('the installed tree: cm4prov on the PATH, the unit, the conffile, production node_modules only', () => {
    const paths = new Set(contents(deb));
    for (const path of [
      '/usr/bin/cm4prov', `/usr/lib/systemd/system/${SERVICE}`, CONFIG,
      '/usr/lib/cm4-provisioning/package.json', '/usr/lib/cm4-provisioning/dist/cli/main.js',
      '/usr/lib/cm4-provisioning/dist/db/migrations/', '/usr/lib/cm4-provisioning/node_modules/fastify/package.json',
      '/usr/lib/cm4-provisioning/network-boot-initramfs/build.sh', '/usr/lib/cm4-provisioning/device/provisioning-client.sh',
      // build.sh compiles cm4prov-io from its sources.
      '/usr/lib/cm4-provisioning/device/io-helper/Makefile', '/usr/lib/cm4-provisioning/device/io-helper/write.c',
    ]) {
      assert.ok(paths.has(path), `the package holds ${path}`);
    }
    assert.ok(![...paths].some((path) => path.includes('/device/io-helper/build/')), 'no cm4prov-io built on the packaging machine');
    for (const dev of ['typescript', 'playwright-core', 'yaml']) {
      assert.ok(![...paths].some((path) => path.startsWith(`/usr/lib/cm4-provisioning/node_modules/${dev}/`)), `no devDependency ${dev}`);
    }
    assert.ok(![...paths].some((path) => path.startsWith('/usr/lib/cm4-provisioning/src/')), 'compiled dist/, not the TypeScript sources');
    assert.ok(![...paths].some((path) => /\/build\/Release\/obj(\.target)?\//.test(path)), 'no native build leftovers');
    const conffiles = check('sh', ['-c', 'dpkg-deb --info "$0" conffiles', deb]);
    assert.equal(conffiles, `${CONFIG}\n`);
    const config = JSON.parse(check('sh', ['-c', 'dpkg-deb --fsys-tarfile "$0" | tar -xOf - ".$1"', deb, CONFIG]));
    assert.equal(config['data-dir'], DATA);
    assert.equal(config.port, 5000);
  });

  await t.test('maintainer scripts, the wrapper and the build script pass shellcheck as POSIX sh', () => {
    const scripts = ['postinst', 'prerm', 'postrm', 'cm4prov'].map((name) => join(REPO_DIR, 'packaging', 'deb', name));
    const result = run('shellcheck', ['--shell=sh', '--severity=info', ...scripts, join(REPO_DIR, 'scripts', 'build-deb.sh')]);
    assert.equal(result.status, 0, result.stdout);
  });
});

/** `apt-get ARGS` inside the root, as an admin runs it (no prompts). */
function apt(root: CleanRoot, args: string[]) {
  return root.run(['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-y', '-q', ...args]);
}

/** A copy of the .deb inside the root, for `apt-get install /tmp/NAME`. */
function carry(root: CleanRoot, file: string): string {
  copyFileSync(file, join(root.dir, 'tmp', basename(file)));
  return `/tmp/${basename(file)}`;
}

interface Started {
  child: ChildProcess;
  output: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** The server started inside the root and the lab's server namespace exactly as its unit says. */
async function startAsTheUnit(t: TestContext, root: CleanRoot, lab: NetbootLab, unit: Unit): Promise<Started> {
  const [name, , , , , home, shell] = root.check(['getent', 'passwd', USER]).trim().split(':');
  const child = root.spawn(unitCommand(unit, { name: name!, home: home!, shell: shell! }), { netns: lab.serverNs });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const output = () => `${stdout}${stderr}`;
  // Started: it answers, and it has logged that it is ready (after dnsmasq and its watchers are up).
  const answers = () => {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    if (!stdout.includes('cm4-provisioning server ready')) return false;
    return fetch(`http://${lab.adminAddress}:5000/api/netboot`).then((r) => r.status === 401, () => false);
  };
  await waitFor('the packaged server to answer', answers, 60_000, 200)
    .catch((error: Error) => {
      throw new Error(`${error.message}\n${output()}`);
    });
  return { child, output, stdout: () => stdout, exited };
}

async function stop(started: Started) {
  started.child.kill('SIGTERM');
  assert.equal(await started.exited, 0, `the server stops cleanly on SIGTERM, as systemctl stop sends it\n${started.output()}`);
}

/** /proc/PID/status as key → value. */
function processStatus(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').filter(Boolean).map((line) => {
    const at = line.indexOf(':');
    return [line.slice(0, at), line.slice(at + 1).trim()];
  }));
}

const childrenOf = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);

async function login(lab: NetbootLab, password: string) {
  const response = await fetch(`http://${lab.adminAddress}:5000/login`, {
    method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ password }),
  });
  return { status: response.status, cookie: response.headers.get('set-cookie') ?? '' };
}

/** `cm4prov ARGS` as an operator types it on the server: root, a login environment, in /root. */
function operator(root: CleanRoot, lab: NetbootLab, args: string[], input?: string) {
  return root.run(['env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin', 'HOME=/root', 'sh', '-c', 'cd /root && exec cm4prov "$@"', 'cm4prov', ...args], { netns: lab.serverNs, input });
}

test('installed with apt-get into a clean Debian root: runs as its unit says, upgrades keeping data, uninstalls keeping data', { skip: NEEDS_ROOT }, async (t) => {
  const started = Date.now();
  const root = createCleanRoot(t);
  const nodejs = carry(root, hostNodejsDeb());
  assert.equal(apt(root, ['update']).status, 0, 'apt-get update in the clean root');
  const install = apt(root, ['install', nodejs, carry(root, deb)]);
  assert.equal(install.status, 0, shown(install));
  const unitText = readFileSync(join(root.dir, 'usr/lib/systemd/system', SERVICE), 'utf8');
  const unit = parseUnit(unitText);

  await t.test('cm4prov on the PATH, a system user, its data folder 0750, the conffile, the unit enabled', () => {
    assert.equal(root.check(['cm4prov', '--version']).trim(), PACKAGE_VERSION);
    const [, , uid, , , home, shell] = root.check(['getent', 'passwd', USER]).trim().split(':');
    assert.ok(Number(uid) > 0 && Number(uid) < 1000, `a system uid: ${uid}`);
    assert.equal(home, DATA);
    assert.equal(shell, '/usr/sbin/nologin');
    assert.equal(root.check(['stat', '-c', '%U:%G %a', DATA]).trim(), `${USER}:${USER} 750`);
    assert.match(root.check(['dpkg-query', '-W', '-f=${Conffiles}', 'cm4-provisioning']), new RegExp(`^ ${CONFIG} [0-9a-f]{32}$`, 'm'));
    // An absolute link inside the root: read, not followed from the host.
    assert.match(readlinkSync(join(root.dir, WANTS)), new RegExp(`/systemd/system/${SERVICE}$`), 'enabled: starts at boot');
    assert.deepEqual(unit.Service?.Environment, [`CM4PROV_CONFIG=${CONFIG}`]);
    assert.deepEqual(unit.Service?.User, [USER]);
  });

  await t.test('systemd-analyze verify accepts the unit; its sandbox rates at most 4.0 ("OK")', () => {
    const verify = root.run(['systemd-analyze', 'verify', SERVICE]);
    assert.equal(verify.status, 0, shown(verify));
    assert.equal(verify.stderr, '', 'no warnings either');
    const security = root.run(['systemd-analyze', 'security', '--offline=yes', '--threshold=40', `/usr/lib/systemd/system/${SERVICE}`]);
    assert.equal(security.status, 0, shown(security));
    const exposure = Number(/Overall exposure level for \S+: (\d+\.\d)/.exec(security.stdout)?.[1]);
    assert.ok(exposure <= 4, `exposure ${exposure}`);
  });

  const lab = createNetbootLab(t);
  // What an operator adds to the conffile to turn on netboot on the provisioning LAN (br0 here).
  const settings = {
    ...JSON.parse(readFileSync(join(root.dir, CONFIG), 'utf8')),
    'netboot-interface': 'br0', 'netboot-address': '10.20.50.1/24', 'dhcp-range': '10.20.50.100,10.20.50.150', 'public-url': 'http://10.20.50.1:5000',
  };
  writeFileSync(join(root.dir, CONFIG), `${JSON.stringify(settings, null, 2)}\n`);
  let server = await startAsTheUnit(t, root, lab, unit);

  await t.test('the server runs as cm4-provisioning with only the three network capabilities; so does its dnsmasq', async () => {
    const uid = root.check(['id', '-u', USER]).trim();
    const status = processStatus(server.child.pid!);
    assert.equal(status.Name, 'node');
    assert.deepEqual(status.Uid!.split(/\s+/), [uid, uid, uid, uid]);
    assert.equal(BigInt(`0x${status.CapAmb}`), capabilityMask(NET_CAPS));
    assert.equal(BigInt(`0x${status.CapBnd}`), capabilityMask(NET_CAPS));
    assert.equal(status.NoNewPrivs, '1');
    const dnsmasq = await waitFor('dnsmasq as a child of the server', () => childrenOf(server.child.pid!).find((pid) => processStatus(pid).Name === 'dnsmasq'), 15_000)
      .catch((error: Error) => {
        throw new Error(`${error.message}\n${server.output()}`);
      });
    assert.deepEqual(processStatus(dnsmasq).Uid!.split(/\s+/), [uid, uid, uid, uid], 'dnsmasq stays the service user (its user=root applies only when started as root)');
  });

  await t.test('as that user, dnsmasq answers a Pi with the PXE offer and serves TFTP from the data folder', () => {
    const offer = dhcp(lab, PI_MAC, 'pi', 'discover').offer;
    assert.ok(offer, `a DHCP offer on port 67\n${server.output()}`);
    assert.ok(offer.options['43']?.includes(RASPBERRY_PI_BOOT), 'option 43 "Raspberry Pi Boot"');
    const tftp = join(root.dir, DATA, 'tftp');
    writeFileSync(join(tftp, 'config.txt'), 'initramfs initrd.img followkernel\n');
    root.check(['chown', `${USER}:${USER}`, `${DATA}/tftp/config.txt`]);
    inNamespace(lab.deviceNs, 'ip', ['addr', 'add', '10.20.50.99/24', 'dev', lab.deviceInterface]);
    const fetched = inNamespace(lab.deviceNs, 'curl', ['--silent', '--show-error', '--max-time', '20', 'tftp://10.20.50.1/config.txt']);
    assert.equal(fetched, 'initramfs initrd.img followkernel\n', 'TFTP on port 69');
  });

  await t.test('its log is JSON lines on stdout, which journald keeps for journalctl -u', () => {
    const lines = server.stdout().split('\n').filter(Boolean);
    assert.ok(lines.length > 0, server.output());
    const records = lines.map((line) => JSON.parse(line) as { msg?: string; dataDir?: string });
    const ready = records.find((record) => record.msg === 'cm4-provisioning server ready');
    assert.equal(ready?.dataDir, DATA, 'the data folder from the conffile');
  });

  const password = 'packaged-server-password-1';
  const deviceMac = 'dc:a6:32:00:00:42';
  await t.test('an operator on the server: cm4prov admin password, then log in; cm4prov devices and netboot events find the server by its config file', async () => {
    const poll = await fetch(`http://${lab.adminAddress}:5000/api/device-action-poll?mac=${deviceMac}`);
    assert.deepEqual(await poll.json(), { action: 'none' });
    const devices = operator(root, lab, ['devices']);
    assert.equal(devices.status, 0, shown(devices));
    assert.match(devices.stdout, new RegExp(deviceMac));
    const set = operator(root, lab, ['admin', 'password'], `${password}\n`);
    assert.equal(set.status, 0, shown(set));
    const loggedIn = await login(lab, password);
    assert.equal(loggedIn.status, 303);
    assert.match(loggedIn.cookie, /\S+=\S+/);
    const events = operator(root, lab, ['netboot', 'events', PI_MAC]);
    assert.equal(events.status, 0, shown(events));
    assert.match(events.stdout, /asked for an address \(DHCP discover\)/, 'the stages the server read from its dnsmasq');
    assert.match(events.stdout, /offered 10\.20\.50\.\d+/);
    const strays = root.check(['find', DATA, '!', '-user', USER]);
    assert.equal(strays, '', 'root running cm4prov left no file the service cannot write');
  });

  await stop(server);

  await t.test('an upgrade keeps the data, the edited conffile and the password; the new version starts on them', async () => {
    const newer = buildDeb(out, UPGRADE_VERSION).deb;
    const upgrade = apt(root, ['install', carry(root, newer)]);
    assert.equal(upgrade.status, 0, shown(upgrade));
    assert.equal(root.check(['dpkg-query', '-W', '-f=${Version}', 'cm4-provisioning']), UPGRADE_VERSION);
    assert.deepEqual(JSON.parse(readFileSync(join(root.dir, CONFIG), 'utf8')), settings, "the operator's settings, without a conffile question");
    server = await startAsTheUnit(t, root, lab, unit);
    const devices = operator(root, lab, ['devices']);
    assert.equal(devices.status, 0, shown(devices));
    assert.match(devices.stdout, new RegExp(deviceMac), 'the device registered before the upgrade');
    assert.equal((await login(lab, password)).status, 303, 'the password set before the upgrade');
    await stop(server);
  });

  await t.test('apt-get remove keeps the data folder and the config; purge removes the config and still keeps the data', () => {
    const remove = apt(root, ['remove', 'cm4-provisioning']);
    assert.equal(remove.status, 0, shown(remove));
    assert.equal(existsSync(join(root.dir, 'usr/bin/cm4prov')), false, 'the program is gone');
    assert.equal(existsSync(join(root.dir, 'usr/lib/cm4-provisioning')), false);
    assert.ok(existsSync(join(root.dir, DATA, 'cm4prov.sqlite')), 'the database stays');
    assert.ok(existsSync(join(root.dir, DATA, 'admin-token')));
    assert.ok(existsSync(join(root.dir, CONFIG)), 'remove keeps conffiles');
    const purge = apt(root, ['purge', 'cm4-provisioning']);
    assert.equal(purge.status, 0, shown(purge));
    assert.equal(existsSync(join(root.dir, 'etc/cm4-provisioning')), false, 'purge removes the config');
    assert.equal(lstatSync(join(root.dir, WANTS), { throwIfNoEntry: false }), undefined, 'and the enablement');
    assert.ok(existsSync(join(root.dir, DATA, 'cm4prov.sqlite')), 'the database stays after purge too');
    assert.match(purge.stdout, new RegExp(`${DATA} is kept`));
    assert.equal(root.run(['getent', 'passwd', USER]).status, 0, 'the user owning the data stays');
  });

  process.stderr.write(`# clean-root install, run, upgrade, remove: ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
});
