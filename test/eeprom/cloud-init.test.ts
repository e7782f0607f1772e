import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { describeBootOrder, parseBootOrder } from '../../src/eeprom/boot-order.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/server.js';

test('BOOT_ORDER is read right to left: 0xf12 is network first, 0x21 eMMC first', () => {
  assert.equal(describeBootOrder(parseBootOrder('0xF12')), 'network, then SD card / eMMC, then restart from the first mode');
  assert.equal(describeBootOrder(parseBootOrder('21')), 'SD card / eMMC, then network');
  assert.throws(() => parseBootOrder('0x9'), /mode 9, which the bootloader does not know/);
  assert.throws(() => parseBootOrder('network'), /not a boot order/);
  assert.throws(() => parseBootOrder('0x123456789'), /not a boot order/);
});

test('cm4prov eeprom cloud-init prints valid cloud-config with a script that passes shellcheck', async (t) => {
  const result = await runCli(['eeprom', 'cloud-init', '--boot-order', '0xf12']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^#cloud-config\n/);
  assert.match(result.stderr, /BOOT_ORDER=0xf12: network, then SD card \/ eMMC/);
  const data = parse(result.stdout);
  assert.deepEqual(data.packages, ['rpi-eeprom']);
  assert.deepEqual(data.write_files.map((f: any) => f.path), ['/usr/local/sbin/cm4prov-boot-order', '/etc/systemd/system/cm4prov-boot-order.service']);
  assert.deepEqual(data.runcmd.at(-1), ['/usr/local/sbin/cm4prov-boot-order']);
  const script = join(tempDir(t), 'script.sh');
  writeFileSync(script, data.write_files[0].content);
  const lint = spawnSync('shellcheck', ['--shell=sh', script], { encoding: 'utf8' });
  assert.equal(lint.status, 0, lint.stdout);

  const bad = await runCli(['eeprom', 'cloud-init', '--boot-order', '0x1z']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^cm4prov: '0x1z' is not a boot order/);
});

test('on a CM4 the script enables the SPI overlays and reboots, then stages BOOT_ORDER and reboots, then does nothing', async (t) => {
  const { stdout } = await runCli(['eeprom', 'cloud-init', '--boot-order', '0xf12']);
  const script = parse(stdout).write_files[0].content as string;
  const root = tempDir(t);
  for (const dir of ['bin', 'proc/device-tree', 'etc/default', 'boot/firmware', 'var/lib']) mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, 'proc/device-tree/model'), 'Raspberry Pi Compute Module 4 Rev 1.1\0');
  writeFileSync(join(root, 'etc/default/rpi-eeprom-update'), 'FIRMWARE_RELEASE_STATUS="default"\n');
  writeFileSync(join(root, 'boot/firmware/config.txt'), '[all]\narm_64bit=1\n');
  // Stand-ins for the Pi's tools: they record what they were asked to do.
  writeFileSync(join(root, 'bin/rpi-eeprom-config'), `#!/bin/sh
if [ "\${1:-}" = --apply ]; then cp "$2" "$ROOT/applied.conf"; else printf '[all]\\nBOOT_UART=0\\nBOOT_ORDER=0x21\\nTFTP_PREFIX=0\\n'; fi
`);
  writeFileSync(join(root, 'bin/reboot'), '#!/bin/sh\necho reboot >> "$ROOT/reboots"\n');
  for (const tool of ['rpi-eeprom-config', 'reboot']) chmodSync(join(root, 'bin', tool), 0o755);
  writeFileSync(join(root, 'set-boot-order'), script);
  const run = () => execFileSync('sh', [join(root, 'set-boot-order')], { env: { ROOT: root, PATH: `${join(root, 'bin')}:${process.env.PATH}` }, encoding: 'utf8' });

  assert.match(run(), /enabled the SPI overlays/);
  assert.match(readFileSync(join(root, 'boot/firmware/config.txt'), 'utf8'), /dtparam=spi=on\ndtoverlay=audremap\ndtoverlay=spi-gpio40-45\n$/);
  assert.match(readFileSync(join(root, 'etc/default/rpi-eeprom-update'), 'utf8'), /^CM4_ENABLE_RPI_EEPROM_UPDATE=1$/m);
  assert.equal(existsSync(join(root, 'applied.conf')), false, 'nothing flashed before the overlays are active');

  assert.match(run(), /BOOT_ORDER=0xf12 staged/);
  assert.equal(readFileSync(join(root, 'applied.conf'), 'utf8'), '[all]\nBOOT_UART=0\nTFTP_PREFIX=0\nBOOT_ORDER=0xf12\n');
  assert.equal(readFileSync(join(root, 'reboots'), 'utf8'), 'reboot\nreboot\n');

  assert.equal(run(), '', 'done: the next boots do nothing');
  assert.equal(readFileSync(join(root, 'boot/firmware/config.txt'), 'utf8').match(/spi-gpio40-45/g)?.length, 1, 'lines are not added twice');
});
