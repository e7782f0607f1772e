import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
