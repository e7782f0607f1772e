import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXT4_OFFSET } from '../device-files/helpers.js';
import type { LineImage } from './line-image.js';

/**
 * A tiny "installed OS" for the QEMU chain's second boot (issue 13's proof that a deployed image's
 * first boot calls the server back). No real OS fits: Debian's kernel alone is 32 MB, and ext4 and
 * vfat are modules the netboot initrd does not carry. So the image's root (partition 2, ext4)
 * holds what makes it "an OS": /etc/os-release and an /sbin/init that plays systemd as far as the
 * first-boot hook needs it; the test's boot of the disk (Debian's kernel, the netboot initrd
 * with one more small archive appended, the disk's cmdline.txt as its command line, as the Pi
 * firmware would pass it) copies that root out of partition 2 and starts its /sbin/init.
 */

export const INSTALLED_OS_PRETTY_NAME = 'cm4prov QEMU stand-in OS 1 (first-boot proof)';
/** The second boot's rdinit: the archive appended to the netboot initrd holds it. */
export const SECOND_BOOT_RDINIT = '/installed-os-boot';
/** Every line the second boot prints itself starts with one of these (the hook's own start "cm4prov-firstboot:"). */
const BOOT_MARK = 'installed-os-boot:';
const OS_MARK = 'installed-os:';

const OS_RELEASE = `PRETTY_NAME="${INSTALLED_OS_PRETTY_NAME}"\nNAME="cm4prov QEMU stand-in OS"\nVERSION_ID="1"\nID=cm4prov-qemu\n`;

/**
 * What the kernel would do with root= on a device booting its eMMC, for a root it cannot mount
 * here: loads the virtio drivers, copies partition 2 of /dev/vda (the deployed image's root) into
 * /sysroot with debugfs, lends it this initrd's programs (busybox, curl, mtools: the tiny OS has
 * none of its own) and starts the root's /sbin/init there, as PID 1.
 */
const LOADER = `#!/bin/sh
# ${SECOND_BOOT_RDINIT}: written by test/e2e/installed-os.ts; see there.
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec < /dev/console > /dev/console 2>&1

say() {
	echo "${BOOT_MARK} $*"
}

stop() {
	say "$*; powering off"
	poweroff -f
	while :; do sleep 60; done
}

modules=/lib/modules/$(uname -r)
[ -f "$modules/load-order" ] || stop "this initrd has no modules for kernel $(uname -r)"
while read -r path; do
	case $path in */netconsole.ko) continue ;; esac
	insmod "$modules/$path" || say "module $path did not load"
done < "$modules/load-order"
waited=0
until [ -b /dev/vda ]; do
	[ "$waited" -lt 30 ] || stop "no /dev/vda after 30 s"
	sleep 1
	waited=$((waited + 1))
done
# MBR partition entry 2 (byte 446 + 16): its first sector, little-endian, at +8
start=$(od -An -tu4 -j 470 -N 4 /dev/vda | tr -d ' ')
case $start in '' | 0 | *[!0-9]*) stop "no partition 2 in the MBR of /dev/vda" ;; esac
mkdir -p /sysroot
debugfs -R 'rdump / /sysroot' "/dev/vda?offset=$((start * 512))" 2> /dev/null
[ -x /sysroot/sbin/init ] || stop "partition 2 of /dev/vda (sector $start) has no /sbin/init"
for dir in bin lib usr/lib; do
	mkdir -p "/sysroot/$dir"
	mount -o bind "/$dir" "/sysroot/$dir" || stop "cannot lend /$dir to the root"
done
say "starting /sbin/init of partition 2 (from sector $start) of /dev/vda"
exec chroot /sysroot /sbin/init
`;

/**
 * /sbin/init of the tiny installed OS: the test's stand-in for Raspberry Pi OS's systemd, doing
 * just what the first-boot hook asks of it, then powering off. It is written to the image's root.
 */
const INIT = `#!/bin/sh
# /sbin/init of the tiny installed OS that test/e2e/netboot-chain.test.ts deploys (written by
# test/e2e/installed-os.ts): the test's stand-in for systemd on Raspberry Pi OS, doing what the
# first-boot hook asks of it, no more.
#  - The boot partition (partition 1, FAT) is not mounted (vfat is a module this boot lacks): its
#    files are copied to /boot/firmware with mtools, with the modes a vfat mount shows (0755),
#    and what changed there is written back to it, as a mount would have.
#  - systemd.run=CMD on the kernel command line (the disk's cmdline.txt, as the Pi firmware
#    passes it): CMD runs as systemd's kernel-command-line.service would run it; when it exits 0
#    and systemd.run_success_action=reboot, the boot partition is written back and the boot goes
#    on as the next one would (no second kernel boot: the root is not written back to the disk).
#  - The next boot: network-online (DHCP with udhcpc), then each unit wanted by multi-user.target
#    runs its ExecStart=. There is no systemd: systemctl is a stand-in that prints its arguments.
# Then it powers off. It prints lines starting "${OS_MARK}"; the test reads them.
# Also udhcpc's event script (\`/sbin/init bound\` …).
set -u
PATH=/bin:/usr/bin:/sbin:/usr/sbin
export PATH
DISK=/dev/vda
WANTS=/etc/systemd/system/multi-user.target.wants

say() {
	echo "${OS_MARK} $*"
}

if [ $$ -ne 1 ]; then
	# shellcheck disable=SC2154 # udhcpc sets interface, ip, mask and router
	case \${1:-} in
		deconfig)
			ip -4 addr flush dev "$interface"
			ip link set "$interface" up
			;;
		bound | renew)
			ip -4 addr flush dev "$interface"
			ip addr add "$ip/\${mask:-24}" dev "$interface"
			[ -z "\${router:-}" ] || ip route replace default via "\${router%% *}" dev "$interface"
			;;
	esac
	exit 0
fi

power_off() {
	say "powering off: $*"
	sync
	poweroff -f
	while :; do sleep 60; done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
exec < /dev/console > /dev/console 2>&1
say "booted kernel $(uname -r): $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release)"

# --- the boot partition: its first sector from the MBR (entry 1 at byte 446, the sector at +8)
start=$(od -An -tu4 -j 454 -N 4 "$DISK" | tr -d ' ')
case $start in '' | 0 | *[!0-9]*) power_off "no partition 1 in the MBR of $DISK" ;; esac
FAT="$DISK@@$((start * 512))"
MTOOLS_SKIP_CHECK=1
export MTOOLS_SKIP_CHECK
mkdir -p /boot/firmware /run/boot-as-read
mcopy -s -n -i "$FAT" '::*' /boot/firmware/ || power_off "cannot read the boot partition"
cp -a /boot/firmware/. /run/boot-as-read/
chmod 0755 /boot/firmware/*
say "boot partition (sector $start): $(cd /boot/firmware && echo *)"

write_back_boot() {
	for old in /run/boot-as-read/*; do
		[ -f "$old" ] || continue
		name=\${old##*/}
		if [ ! -e "/boot/firmware/$name" ]; then
			mdel -i "$FAT" "::/$name" && say "boot partition: /$name deleted"
		elif ! cmp -s "$old" "/boot/firmware/$name"; then
			mcopy -o -i "$FAT" "/boot/firmware/$name" "::/$name" && say "boot partition: /$name written"
		fi
	done
	for new in /boot/firmware/*; do
		[ -f "$new" ] || continue
		name=\${new##*/}
		[ -e "/run/boot-as-read/$name" ] || { mcopy -i "$FAT" "$new" "::/$name" && say "boot partition: /$name added"; }
	done
	sync
}

cat > /run/systemctl << 'STUB'
#!/bin/sh
echo "${OS_MARK} systemctl $*"
STUB
chmod 0755 /run/systemctl
CM4PROV_FIRSTBOOT_SYSTEMCTL=/run/systemctl
export CM4PROV_FIRSTBOOT_SYSTEMCTL

# --- systemd.run, as systemd-run-generator makes it a service from the kernel command line
run='' success=''
set -f
# shellcheck disable=SC2013 # words, not lines
for word in $(cat /proc/cmdline); do
	case $word in
		systemd.run=*) run=\${word#*=} ;;
		systemd.run_success_action=*) success=\${word#*=} ;;
	esac
done
set +f
if [ -n "$run" ]; then
	say "kernel-command-line.service: $run"
	$run
	status=$?
	say "kernel-command-line.service: exited $status"
	write_back_boot
	[ "$status" -eq 0 ] || power_off "systemd.run did not succeed"
	[ "$success" = reboot ] || power_off "no systemd.run_success_action=reboot: nothing would boot the installed OS after systemd.run"
	if grep -q 'systemd[.]run=' /boot/firmware/cmdline.txt; then
		power_off "cmdline.txt still says systemd.run=: every boot would run it again"
	fi
	say "systemd.run_success_action=reboot: booting on as the next boot would, with cmdline.txt: $(head -n 1 /boot/firmware/cmdline.txt)"
fi

# --- the next boot: network-online.target, then what multi-user.target wants
iface=''
for dir in /sys/class/net/*; do
	if [ -e "$dir/device" ]; then
		iface=\${dir##*/}
		break
	fi
done
[ -n "$iface" ] || power_off "no network interface"
ip link set "$iface" up
udhcpc -i "$iface" -s /sbin/init -q -n -t 10 -T 2 || power_off "no DHCP lease on $iface"
say "network online: $iface $(cat "/sys/class/net/$iface/address") has $(ip -4 -o addr show dev "$iface" | awk '{ print $4 }')"
for link in "$WANTS"/*.service; do
	[ -e "$link" ] || continue
	name=\${link##*/}
	condition=$(sed -n 's/^ConditionPathExists=//p' "$link" | head -n 1)
	if [ -n "$condition" ] && [ ! -e "$condition" ]; then
		say "$name: skipped ($condition does not exist)"
		continue
	fi
	command=$(sed -n 's/^ExecStart=//p' "$link" | head -n 1)
	say "$name: $command"
	$command
	say "$name: exited $?"
done
power_off "done"
`;

/** The image's root with the tiny OS in it: written with debugfs (the real tool) at partition 2. */
export function installOs(image: LineImage, dir: string): LineImage {
  const work = join(dir, 'installed-os');
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'os-release'), OS_RELEASE);
  writeFileSync(join(work, 'init'), INIT, { mode: 0o755 });
  const commands = [
    // mount points, as a root file system has them
    ...['proc', 'sys', 'dev', 'run', 'tmp', 'boot', 'boot/firmware'].map((point) => `mkdir /${point}`),
    'mkdir /etc',
    `write ${join(work, 'os-release')} /etc/os-release`,
    'mkdir /sbin',
    `write ${join(work, 'init')} /sbin/init`,
    'sif /sbin/init mode 0100755',
  ];
  writeFileSync(join(work, 'debugfs.cmd'), `${commands.join('\n')}\n`);
  execFileSync('debugfs', ['-w', '-f', join(work, 'debugfs.cmd'), `${image.path}?offset=${EXT4_OFFSET}`], { stdio: 'ignore' });
  const data = readFileSync(image.path);
  return { ...image, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * The second boot's initrd: the netboot initrd with an uncompressed newc archive appended that
 * adds SECOND_BOOT_RDINIT. The kernel unpacks concatenated archives in turn (its
 * Documentation/driver-api/early-userspace/buffer-format.rst); the next one must start on a
 * 4-byte boundary, so zeros pad the first (they are skipped).
 */
export function secondBootInitrd(netbootInitrd: string, dir: string): string {
  const stage = join(dir, 'second-boot-cpio');
  mkdirSync(stage, { recursive: true });
  const name = SECOND_BOOT_RDINIT.slice(1);
  writeFileSync(join(stage, name), LOADER, { mode: 0o755 });
  const archive = execFileSync('cpio', ['-o', '-H', 'newc', '-R', '0:0', '--quiet'], { cwd: stage, input: `${name}\n` });
  const base = readFileSync(netbootInitrd);
  const initrd = join(dir, 'second-boot-initrd.img');
  writeFileSync(initrd, Buffer.concat([base, Buffer.alloc((4 - (base.length % 4)) % 4), archive]));
  return initrd;
}

/**
 * The kernel command line a Raspberry Pi's firmware makes of cmdline.txt: its first line, with
 * console=serial0 named as the UART it stands for (ttyAMA0 on QEMU's virt machine).
 */
export function firmwareCmdline(cmdlineTxt: string): string {
  const first = cmdlineTxt.split('\n')[0]!.trim();
  return first.split(/\s+/).map((word) => word.replace(/^console=serial0(?=,|$)/, 'console=ttyAMA0')).join(' ');
}
