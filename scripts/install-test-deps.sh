#!/bin/sh
# Installs the Debian packages the test suite runs for real: busybox and curl (the device
# client), shellcheck, util-linux (`script` for terminal tests), Chromium (dashboard tests),
# cpio and binutils (the initramfs build), QEMU (booting it as an arm64 device), dnsmasq and
# nftables (netboot in network namespaces). Idempotent: only what is missing is installed,
# from the machine's own apt sources.
set -eu

PACKAGES="busybox curl shellcheck util-linux iproute2 chromium fonts-dejavu-core cpio binutils qemu-system-arm dnsmasq-base nftables zstd xz-utils e2fsprogs bmap-tools"

missing=''
for package in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -z "$missing" ]; then
	echo "test dependencies: all installed ($PACKAGES)"
	exit 0
fi

as_root=''
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "need root (or sudo) to install:$missing" >&2; exit 1; }
	as_root=sudo
fi
echo "test dependencies: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # package list split into words on purpose
$as_root apt-get install -y --no-install-recommends $missing || {
	$as_root apt-get update
	$as_root apt-get install -y --no-install-recommends $missing
}
