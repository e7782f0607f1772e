import { describeBootOrder } from './boot-order.js';

export interface CloudInitOptions {
  /** Validated, e.g. 0xf12. */
  bootOrder: string;
  /** Reboot once the new EEPROM config is staged, so it takes effect (default true). */
  reboot: boolean;
}

/**
 * The shell script that sets BOOT_ORDER on an already-flashed CM4. On a CM4,
 * rpi-eeprom-update writes the EEPROM with flashrom, which needs CM4_ENABLE_RPI_EEPROM_UPDATE=1
 * and the SPI overlays (spi=on, audremap, spi-gpio40-45) active: when it has to add them, it
 * reboots once first and finishes at the next boot (a systemd unit runs it until it is done).
 * ROOT prefixes every path (tests run it against a fake root).
 */
export function renderBootOrderScript({ bootOrder, reboot }: CloudInitOptions): string {
  return `#!/bin/sh
# Written by cm4-provisioning: sets the bootloader EEPROM's BOOT_ORDER to ${bootOrder}
# (tried right to left: ${describeBootOrder(bootOrder)}).
set -eu
BOOT_ORDER=${bootOrder}
REBOOT=${reboot ? 'yes' : 'no'}
ROOT=\${ROOT:-}
DONE=$ROOT/var/lib/cm4prov-boot-order.done
say() { echo "cm4prov-boot-order: $*"; }

[ ! -e "$DONE" ] || exit 0
command -v rpi-eeprom-config >/dev/null || { say "rpi-eeprom-config is missing (package rpi-eeprom)"; exit 1; }

if grep -q 'Compute Module 4' "$ROOT/proc/device-tree/model" 2>/dev/null; then
	defaults=$ROOT/etc/default/rpi-eeprom-update
	grep -q '^CM4_ENABLE_RPI_EEPROM_UPDATE=1' "$defaults" 2>/dev/null || echo 'CM4_ENABLE_RPI_EEPROM_UPDATE=1' >> "$defaults"
	config=$ROOT/boot/firmware/config.txt
	[ -f "$config" ] || config=$ROOT/boot/config.txt
	added=no
	for line in dtparam=spi=on dtoverlay=audremap dtoverlay=spi-gpio40-45; do
		grep -qx "$line" "$config" || { printf '%s\\n' "$line" >> "$config"; added=yes; }
	done
	if [ "$added" = yes ]; then
		say "enabled the SPI overlays flashrom needs; they apply after a reboot, then BOOT_ORDER is set"
		[ "$REBOOT" = no ] || reboot
		exit 0
	fi
fi

current=$(rpi-eeprom-config)
if printf '%s\\n' "$current" | grep -qix "BOOT_ORDER=$BOOT_ORDER"; then
	say "BOOT_ORDER is already $BOOT_ORDER"
	touch "$DONE"
	exit 0
fi
staged=$(mktemp)
printf '%s\\n' "$current" | grep -v '^BOOT_ORDER=' > "$staged" || true
echo "BOOT_ORDER=$BOOT_ORDER" >> "$staged"
rpi-eeprom-config --apply "$staged"
rm -f "$staged"
touch "$DONE"
say "BOOT_ORDER=$BOOT_ORDER staged; it takes effect at the next reboot"
[ "$REBOOT" = no ] || reboot
`;
}

const indent = (text: string, spaces: number) =>
  text
    .split('\n')
    .map((line) => (line ? `${' '.repeat(spaces)}${line}` : line))
    .join('\n');

/** cloud-init user-data that installs the script and a unit running it at each boot until done. */
export function renderCloudInit(options: CloudInitOptions): string {
  const unit = `[Unit]
Description=Set the bootloader EEPROM BOOT_ORDER to ${options.bootOrder} (cm4-provisioning)
ConditionPathExists=!/var/lib/cm4prov-boot-order.done
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/cm4prov-boot-order

[Install]
WantedBy=multi-user.target
`;
  return `#cloud-config
# cm4-provisioning: set the CM4 bootloader BOOT_ORDER to ${options.bootOrder} at first boot.
# Read right to left: ${describeBootOrder(options.bootOrder)}.
# (0xf12 = network first; 0x21 = eMMC first, network only if the eMMC does not boot.)
packages:
  - rpi-eeprom
write_files:
  - path: /usr/local/sbin/cm4prov-boot-order
    permissions: '0755'
    content: |
${indent(renderBootOrderScript(options), 6)}
  - path: /etc/systemd/system/cm4prov-boot-order.service
    permissions: '0644'
    content: |
${indent(unit, 6)}
runcmd:
  - [systemctl, daemon-reload]
  - [systemctl, enable, cm4prov-boot-order.service]
  - [/usr/local/sbin/cm4prov-boot-order]
`;
}
