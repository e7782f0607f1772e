import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/server.js';
import {
  createTestNamespace,
  describeRule,
  interfaceState,
  nftTable,
  REPO_DIR,
  run,
  SETUP_SCRIPT,
  shown,
  type TestNamespace,
} from './netns.js';

// Every run of the script is inside a namespace the test made (never the host's own), with every
// path it writes (data, unit, sysctl.d, nftables.d) in a temp dir: the host's /etc is not touched.
const NEEDS_ROOT = process.getuid?.() === 0 ? false : 'needs root for network namespaces and nftables (CI runs as root)';
const SYSTEMD_RUNNING = existsSync('/run/systemd/system');
const TABLE = 'cm4prov';
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function paths(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t, 'cm4prov-lxc-');
  return {
    data: join(dir, 'data'),
    units: join(dir, 'units'),
    sysctl: join(dir, 'sysctl.d'),
    nft: join(dir, 'nftables.d'),
  };
}

function setupArgs(dirs: ReturnType<typeof paths>, ...extra: string[]): string[] {
  return [
    '--wan', 'eth0', '--lan', 'eth1', '--address', '10.20.50.1/24',
    '--data-dir', dirs.data, '--systemd-unit-dir', dirs.units,
    '--sysctl-dir', dirs.sysctl, '--nft-persist-dir', dirs.nft, '--no-install', ...extra,
  ];
}

function forwarding(ns: TestNamespace): string {
  return ns.exec('sysctl', ['-n', 'net.ipv4.ip_forward']).stdout.trim();
}

/**
 * What the script owns, which a second run must leave exactly as it was (handles in nft's JSON
 * change if a table is re-made). Only what the script sets: the admin UP flag and the IPv4
 * addresses. Not `ip addr` as a whole: the kernel changes it by itself (IPv6 duplicate address
 * detection clears "tentative", carrier comes and goes), which made this comparison flaky.
 */
function snapshot(ns: TestNamespace, dirs: ReturnType<typeof paths>) {
  const files = [join(dirs.units, 'cm4-provisioning.service'), join(dirs.sysctl, '90-cm4-provisioning.conf'), join(dirs.nft, `${TABLE}.nft`)];
  const owned = (name: string) => {
    const state = interfaceState(ns, name);
    return { up: state.flags.includes('UP'), ipv4: state.addresses };
  };
  return {
    interfaces: { eth0: owned('eth0'), eth1: owned('eth1') },
    ruleset: ns.exec('nft', ['-j', 'list', 'ruleset']).stdout,
    forwarding: forwarding(ns),
    files: files.map((file) => ({ file, mtimeMs: statSync(file).mtimeMs, content: readFileSync(file, 'utf8') })),
  };
}

test('the set-up script passes shellcheck as POSIX sh', () => {
  const result = run('shellcheck', ['--shell=sh', '--severity=info', SETUP_SCRIPT]);
  assert.equal(result.status, 0, result.stdout);
});

test('in a namespace of its own, the script sets up address, forwarding, NAT, data dir and unit; a second run changes nothing', { skip: NEEDS_ROOT }, async (t) => {
  assert.equal(run('nft', ['--version']).status, 0, 'nft is installed (Debian package nftables)');
  const hostForwarding = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
  const ns = createTestNamespace(t);
  const dirs = paths(t);

  const first = ns.setup(setupArgs(dirs));
  assert.equal(first.status, 0, shown(first));
  for (const what of [/^changed: eth1 is up with 10\.20\.50\.1\/24$/m, /^changed: IPv4 forwarding is on/m, /^changed: nftables table inet cm4prov/m, /^changed: data dir /m, /^changed: systemd unit /m]) {
    assert.match(first.stdout, what, shown(first));
  }
  assert.match(first.stdout, /^skipped: installing|^ok: packages/m, 'the package step says what it did with --no-install');

  await t.test('eth1 is up with 10.20.50.1/24, once', () => {
    const eth1 = interfaceState(ns, 'eth1');
    assert.ok(eth1.flags.includes('UP'), `eth1 is up: ${eth1.flags.join(',')}`);
    assert.deepEqual(eth1.addresses, [{ local: '10.20.50.1', prefixlen: 24 }]);
    assert.deepEqual(interfaceState(ns, 'eth0').addresses, [], 'the WAN stand-in is left alone');
  });

  await t.test('IPv4 forwarding is on in the namespace, and persisted in the sysctl dir', () => {
    assert.equal(forwarding(ns), '1');
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'), hostForwarding, "the host's own setting is untouched");
    assert.match(readFileSync(join(dirs.sysctl, '90-cm4-provisioning.conf'), 'utf8'), /^net\.ipv4\.ip_forward = 1$/m);
  });

  await t.test('table inet cm4prov masquerades 10.20.50.0/24 out of eth0 and forwards LAN → WAN and replies back', () => {
    const table = nftTable(ns, TABLE);
    assert.ok(table, 'the table exists in the namespace');
    const postrouting = table.chains.find((chain) => chain.name === 'postrouting');
    assert.equal(postrouting?.type, 'nat');
    assert.equal(postrouting?.hook, 'postrouting');
    const rules: Record<string, string>[] = table.rules.map((rule) => ({ chain: rule.chain, ...describeRule(rule) }));
    assert.deepEqual(
      rules.filter((rule) => rule.verdict === 'masquerade'),
      [{ chain: 'postrouting', oifname: 'eth0', saddr: '10.20.50.0/24', verdict: 'masquerade' }],
    );
    assert.deepEqual(
      rules.filter((rule) => rule.chain === 'forward' && rule.verdict === 'accept'),
      [
        { chain: 'forward', iifname: 'eth1', oifname: 'eth0', saddr: '10.20.50.0/24', verdict: 'accept' },
        { chain: 'forward', iifname: 'eth0', oifname: 'eth1', 'ct state': 'established,related', verdict: 'accept' },
      ],
    );
    assert.equal(run('nft', ['list', 'table', 'inet', TABLE]).status, 1, 'the host has no such table: only the namespace was changed');
    const persisted = readFileSync(join(dirs.nft, `${TABLE}.nft`), 'utf8');
    assert.match(persisted, /oifname "eth0" ip saddr 10\.20\.50\.0\/24 masquerade/);
    assert.equal(ns.exec('nft', ['--check', '-f', join(dirs.nft, `${TABLE}.nft`)]).status, 0, 'the persisted file loads');
  });

  await t.test('the data dir is made with mode 0750', () => {
    const stat = statSync(dirs.data);
    assert.ok(stat.isDirectory());
    assert.equal(stat.mode & 0o777, 0o750);
  });

  await t.test('the unit runs the server with the netboot settings; systemctl is skipped and says why', () => {
    const unitFile = join(dirs.units, 'cm4-provisioning.service');
    const unit = readFileSync(unitFile, 'utf8');
    const execStart = unit.split('\n').filter((line) => line.startsWith('ExecStart='));
    assert.deepEqual(execStart, [
      `ExecStart=/usr/bin/env node ${realpathSync(REPO_DIR)}/bin/cm4prov.js serve --host 0.0.0.0 --port 5000 ` +
        `--data-dir ${dirs.data} --netboot-interface eth1 --netboot-address 10.20.50.1/24 ` +
        '--dhcp-range 10.20.50.100,10.20.50.200 --public-url http://10.20.50.1:5000',
    ]);
    assert.match(unit, /^Restart=on-failure$/m);
    assert.match(unit, /^After=network-online\.target$/m);
    assert.match(unit, new RegExp(`^ExecStartPre=/usr/sbin/nft -f ${escaped(join(dirs.nft, `${TABLE}.nft`))}$`, 'm'));
    assert.doesNotMatch(unit, /^AmbientCapabilities=/m, 'runs as root: no ambient capabilities line');
    const skipped = SYSTEMD_RUNNING
      ? new RegExp(`^skipped: .*--systemd-unit-dir is not /etc/systemd/system \\(unit written to ${escaped(unitFile)}\\)$`, 'm')
      : new RegExp(`^skipped: systemd is not running \\(unit written to ${escaped(unitFile)}\\)$`, 'm');
    assert.match(first.stdout, skipped, shown(first));
    assert.doesNotMatch(first.stdout, /systemctl (daemon-reload|enable)\s*$/m);
  });

  await t.test('a second run prints no changed: line and leaves addresses, ruleset and files as they were', () => {
    const before = snapshot(ns, dirs);
    const second = ns.setup(setupArgs(dirs));
    assert.equal(second.status, 0, shown(second));
    assert.doesNotMatch(second.stdout, /^changed:/m, shown(second));
    assert.match(second.stdout, /^ok: eth1 is up with 10\.20\.50\.1\/24 \(already\)$/m);
    assert.match(second.stdout, /^ok: nftables table inet cm4prov: masquerade 10\.20\.50\.0\/24 out of eth0 \(already\)$/m);
    assert.deepEqual(snapshot(ns, dirs), before);
  });

  await t.test('a table edited by hand is made anew; other tables are never touched', () => {
    const other = ['inet', 'operator'];
    for (const args of [['add', 'table', ...other], ['add', 'chain', ...other, 'input', '{ type filter hook input priority 0; policy accept; }'], ['add', 'rule', ...other, 'input', 'tcp dport 22 accept']]) {
      assert.equal(ns.exec('nft', args).status, 0, `nft ${args.join(' ')}`);
    }
    const otherBefore = ns.exec('nft', ['list', 'table', ...other]).stdout;
    assert.equal(ns.exec('nft', ['add', 'rule', 'inet', TABLE, 'forward', 'udp dport 9 drop']).status, 0);

    const again = ns.setup(setupArgs(dirs));
    assert.equal(again.status, 0, shown(again));
    assert.deepEqual(again.stdout.match(/^changed: .*$/gm), ['changed: nftables table inet cm4prov: masquerade 10.20.50.0/24 out of eth0'], shown(again));
    const forward = nftTable(ns, TABLE)?.rules.filter((rule) => rule.chain === 'forward').map(describeRule);
    assert.equal(forward?.length, 3, `the hand-made rule is gone: ${JSON.stringify(forward)}`);
    assert.equal(ns.exec('nft', ['list', 'table', ...other]).stdout, otherBefore, 'the operator table is as it was');
  });
});

test('--dry-run on a fresh namespace prints the commands and changes nothing', { skip: NEEDS_ROOT }, (t) => {
  const ns = createTestNamespace(t);
  const dirs = paths(t);
  const dry = ns.setup(setupArgs(dirs, '--dry-run'));
  assert.equal(dry.status, 0, shown(dry));
  assert.doesNotMatch(dry.stdout, /^changed:/m, shown(dry));
  assert.match(dry.stdout, /^would change: eth1 is up with 10\.20\.50\.1\/24$/m);
  assert.match(dry.stdout, /^ {4}ip addr replace 10\.20\.50\.1\/24 brd \+ dev eth1$/m);
  assert.match(dry.stdout, /^ {4}sysctl -q -w net\.ipv4\.ip_forward=1$/m);
  assert.match(dry.stdout, new RegExp(`^ {4}nft -f ${escaped(join(dirs.nft, `${TABLE}.nft`))}$`, 'm'));
  assert.match(dry.stdout, /^ {4}mkdir -p -m 0750 /m);

  assert.deepEqual(interfaceState(ns, 'eth1').addresses, [], 'eth1 still has no address');
  assert.equal(forwarding(ns), '0');
  assert.equal(nftTable(ns, TABLE), undefined, 'no nft table');
  for (const path of Object.values(dirs)) assert.equal(existsSync(path), false, `${path} was not created`);
});

test('bad options exit 2 with one sentence and change nothing', { skip: NEEDS_ROOT }, (t) => {
  const ns = createTestNamespace(t);
  const dirs = paths(t);
  const cases: [string[], RegExp][] = [
    [['--address', '10.20.50.1/33'], /invalid --address '10\.20\.50\.1\/33': the prefix length must be a whole number from 1 to 30/],
    [['--address', '10.20.300.1/24'], /invalid --address '10\.20\.300\.1\/24': '10\.20\.300\.1' is not an IPv4 address/],
    [['--lan', 'nosuchif'], /invalid --lan 'nosuchif': there is no network interface of that name here/],
    [['--dhcp-range', '10.20.60.100,10.20.60.200'], /invalid --dhcp-range '10\.20\.60\.100,10\.20\.60\.200': 10\.20\.60\.100 is not a host address inside 10\.20\.50\.0\/24/],
    [['--port', 'http'], /invalid --port 'http': expected a whole number from 1 to 65535/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
  ];
  for (const [extra, message] of cases) {
    // the bad option comes last, so it overrides the good one before it
    const result = ns.setup(setupArgs(dirs, ...extra));
    assert.equal(result.status, 2, `${extra.join(' ')}${shown(result)}`);
    assert.equal(result.stdout, '', 'nothing was started');
    assert.match(result.stderr, message);
    assert.match(result.stderr, /^setup-network-boot-on-lxc\.sh: [^\n]+\.\n$/, 'one sentence on one line');
  }
  assert.deepEqual(interfaceState(ns, 'eth1').addresses, []);
  for (const path of Object.values(dirs)) assert.equal(existsSync(path), false, `${path} was not created`);

  const help = ns.setup(['--help']);
  assert.equal(help.status, 0);
  for (const option of ['--wan', '--lan', '--address', '--dhcp-range', '--data-dir', '--app-dir', '--port', '--systemd-unit-dir', '--nft-table', '--sysctl-dir', '--nft-persist-dir', '--no-install', '--dry-run']) {
    assert.ok(help.stdout.includes(`  ${option} `), `--help lists ${option}`);
  }
});

/** A stand-in for the real .deb: its name, version and packaged config file, nothing else. */
function standInDeb(dir: string, name = 'cm4-provisioning'): string {
  const tree = join(dir, 'deb-tree');
  mkdirSync(join(tree, 'DEBIAN'), { recursive: true });
  mkdirSync(join(tree, 'etc', 'cm4-provisioning'), { recursive: true });
  writeFileSync(join(tree, 'DEBIAN', 'control'), [
    `Package: ${name}`, 'Version: 9.9.9', 'Architecture: all', 'Maintainer: Test <test@example.invalid>',
    'Description: stand-in for the set-up script tests', '',
  ].join('\n'));
  writeFileSync(join(tree, 'etc', 'cm4-provisioning', 'config.json'), '{\n  "host": "0.0.0.0",\n  "port": 5000,\n  "data-dir": "/var/lib/cm4-provisioning"\n}\n');
  const deb = join(dir, `${name}_9.9.9_all.deb`);
  const built = run('dpkg-deb', ['--root-owner-group', '--build', tree, deb]);
  assert.equal(built.status, 0, shown(built));
  return deb;
}

function packageArgs(dirs: ReturnType<typeof paths>, deb: string, config: string, ...extra: string[]): string[] {
  return [
    '--wan', 'eth0', '--lan', 'eth1', '--address', '10.20.50.1/24', '--package', deb, '--config-file', config,
    '--systemd-unit-dir', dirs.units, '--sysctl-dir', dirs.sysctl, '--nft-persist-dir', dirs.nft, '--no-install', ...extra,
  ];
}

test('--package: settings into the package\'s config file, LAN and NAT as a root drop-in for its unit; a second run changes nothing', { skip: NEEDS_ROOT }, async (t) => {
  const ns = createTestNamespace(t);
  const dirs = paths(t);
  const deb = standInDeb(dirname(dirs.data));
  const config = join(dirname(dirs.data), 'etc', 'config.json');
  const dropIn = join(dirs.units, 'cm4-provisioning.service.d', 'lxc-network-boot.conf');
  const hostDataDir = existsSync('/var/lib/cm4-provisioning');

  // A unit from an earlier run on a checkout: the package's unit replaces it.
  const checkout = ns.setup(setupArgs(dirs));
  assert.equal(checkout.status, 0, shown(checkout));
  assert.ok(existsSync(join(dirs.units, 'cm4-provisioning.service')));

  const first = ns.setup(packageArgs(dirs, deb, config));
  assert.equal(first.status, 0, shown(first));
  assert.match(first.stdout, new RegExp(`^skipped: installing cm4-provisioning 9\\.9\\.9 from ${escaped(realpathSync(deb))} \\(--no-install\\)$`, 'm'));
  assert.match(first.stdout, new RegExp(`^changed: removed ${escaped(join(dirs.units, 'cm4-provisioning.service'))} \\(it would hide the packaged unit\\)$`, 'm'));
  assert.match(first.stdout, new RegExp(`^changed: netboot settings in ${escaped(config)}$`, 'm'));
  assert.match(first.stdout, new RegExp(`^changed: systemd drop-in ${escaped(dropIn)}$`, 'm'));
  assert.equal(existsSync('/var/lib/cm4-provisioning'), hostDataDir, "the host's data dir is neither made nor removed");

  await t.test('the drop-in adds the LAN address and NAT steps, run as root; the server itself stays the package\'s', () => {
    assert.equal(existsSync(join(dirs.units, 'cm4-provisioning.service')), false, 'no whole unit hides the packaged one');
    const text = readFileSync(dropIn, 'utf8');
    assert.deepEqual(text.split('\n').filter((line) => line.startsWith('ExecStartPre=')), [
      'ExecStartPre=+/sbin/ip link set dev eth1 up',
      'ExecStartPre=+/sbin/ip addr replace 10.20.50.1/24 brd + dev eth1',
      `ExecStartPre=+/usr/sbin/nft -f ${join(dirs.nft, `${TABLE}.nft`)}`,
    ]);
    assert.doesNotMatch(text, /^(ExecStart|User|WorkingDirectory|Environment)=/m);
  });

  await t.test('the config file keeps the package\'s settings and gains the netboot ones cm4prov reads too', () => {
    assert.deepEqual(JSON.parse(readFileSync(config, 'utf8')), {
      host: '0.0.0.0', port: 5000, 'data-dir': '/var/lib/cm4-provisioning',
      'netboot-interface': 'eth1', 'netboot-address': '10.20.50.1/24', 'dhcp-range': '10.20.50.100,10.20.50.200', 'public-url': 'http://10.20.50.1:5000',
    });
  });

  await t.test('an operator\'s own setting survives; a second run prints no changed: line and rewrites nothing', () => {
    const edited = { ...JSON.parse(readFileSync(config, 'utf8')), 'device-network': '10.20.50.0/24' };
    writeFileSync(config, `${JSON.stringify(edited, null, 2)}\n`);
    const before = [config, dropIn].map((file) => ({ file, mtimeMs: statSync(file).mtimeMs, content: readFileSync(file, 'utf8') }));
    const second = ns.setup(packageArgs(dirs, deb, config));
    assert.equal(second.status, 0, shown(second));
    assert.doesNotMatch(second.stdout, /^changed:/m, shown(second));
    assert.match(second.stdout, new RegExp(`^ok: netboot settings in ${escaped(config)} \\(already\\)$`, 'm'));
    assert.deepEqual([config, dropIn].map((file) => ({ file, mtimeMs: statSync(file).mtimeMs, content: readFileSync(file, 'utf8') })), before);
  });

  await t.test('a changed --port and --dhcp-range are written over the old values, once', () => {
    const third = ns.setup(packageArgs(dirs, deb, config, '--port', '5080', '--dhcp-range', '10.20.50.20,10.20.50.90'));
    assert.equal(third.status, 0, shown(third));
    const settings = JSON.parse(readFileSync(config, 'utf8'));
    assert.equal(settings.port, 5080);
    assert.equal(settings['dhcp-range'], '10.20.50.20,10.20.50.90');
    assert.equal(settings['public-url'], 'http://10.20.50.1:5080');
    assert.equal(settings['device-network'], '10.20.50.0/24');
    assert.match(readFileSync(dropIn, 'utf8'), /^Description=CM4 provisioning server \(HTTP :5080, DHCP and TFTP on eth1\)$/m);
  });

  await t.test('back to a checkout: its unit returns and the package\'s drop-in goes', () => {
    const back = ns.setup(setupArgs(dirs));
    assert.equal(back.status, 0, shown(back));
    assert.match(back.stdout, new RegExp(`^changed: removed ${escaped(dropIn)} \\(it would add the package's steps to the checkout's unit\\)$`, 'm'));
    assert.equal(existsSync(dropIn), false);
    assert.ok(existsSync(join(dirs.units, 'cm4-provisioning.service')));
  });
});

test('--package --dry-run prints the apt-get install, the config file and the drop-in, and changes nothing', { skip: NEEDS_ROOT }, (t) => {
  const ns = createTestNamespace(t);
  const dirs = paths(t);
  const deb = standInDeb(dirname(dirs.data));
  const config = join(dirname(dirs.data), 'etc', 'config.json');
  const args = packageArgs(dirs, deb, config, '--dry-run').filter((arg) => arg !== '--no-install');
  const dry = ns.setup(args);
  assert.equal(dry.status, 0, shown(dry));
  assert.doesNotMatch(dry.stdout, /^changed:/m, shown(dry));
  assert.match(dry.stdout, /^would change: package cm4-provisioning 9\.9\.9 installed$/m);
  assert.match(dry.stdout, new RegExp(`^ {4}apt-get install -y ${escaped(realpathSync(deb))}$`, 'm'));
  assert.match(dry.stdout, /^ {4}\| {3}"netboot-interface": "eth1",$/m);
  assert.match(dry.stdout, /^ {4}\| ExecStartPre=\+\/sbin\/ip addr replace 10\.20\.50\.1\/24 brd \+ dev eth1$/m);
  assert.equal(existsSync(config), false, 'no config file written');
  for (const path of Object.values(dirs)) assert.equal(existsSync(path), false, `${path} was not created`);
});

test('--package refuses what would not fit the package: exit 2, one sentence', { skip: NEEDS_ROOT }, (t) => {
  const ns = createTestNamespace(t);
  const dirs = paths(t);
  const deb = standInDeb(dirname(dirs.data));
  const other = standInDeb(dirname(dirs.data), 'something-else');
  const config = join(dirname(dirs.data), 'etc', 'config.json');
  const cases: [string[], RegExp][] = [
    [packageArgs(dirs, deb, config, '--data-dir', '/srv/cm4'), /invalid --data-dir '\/srv\/cm4': with --package the data dir is \/var\/lib\/cm4-provisioning \(bind-mount another folder there\)\./],
    [packageArgs(dirs, deb, config, '--app-dir', REPO_DIR), /invalid --app-dir '.*': with --package the server is the package's, not a checkout\./],
    [packageArgs(dirs, join(dirname(dirs.data), 'missing.deb'), config), /invalid --package '.*missing\.deb': no such file\./],
    [packageArgs(dirs, other, config), /invalid --package '.*': it is the package 'something-else', not cm4-provisioning\./],
  ];
  for (const [args, message] of cases) {
    const result = ns.setup(args);
    assert.equal(result.status, 2, `${args.join(' ')}${shown(result)}`);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, message);
    assert.match(result.stderr, /^setup-network-boot-on-lxc\.sh: [^\n]+\.\n$/, 'one sentence on one line');
  }
  assert.equal(existsSync(config), false);
  const help = ns.setup(['--help']);
  for (const option of ['--package', '--config-file']) assert.ok(help.stdout.includes(`  ${option} `), `--help lists ${option}`);
});
