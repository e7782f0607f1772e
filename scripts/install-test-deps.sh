#!/bin/sh
# Installs what the server needs (install-deps.sh), then the Debian packages the test suite runs
# for real: busybox and curl (the device client), shellcheck, util-linux (`script` for terminal
# tests), Chromium (dashboard tests), cpio and binutils (the initramfs build), QEMU (booting it
# as an arm64 device), dnsmasq and nftables (netboot in network namespaces), zstd, xz-utils,
# bzip2, lz4, unzip, e2fsprogs and bmap-tools (images in every format the server takes),
# debootstrap, dpkg-repack and dpkg-dev (the Debian package, built and installed into a clean root),
# mtools and dosfstools (per-device files on a FAT partition, written and read back), gcc with
# libssl-dev and libzstd-dev (cm4prov-io built for this machine) and qemu-user (the arm64 build of
# it run under emulation), postgresql (a server each PostgreSQL test starts itself).
set -eu
"$(dirname "$0")/install-deps.sh"
# PostgreSQL's binaries for the tests that start a server of their own (test/helpers/postgres.ts);
# the package's own cluster is not started.
"$(dirname "$0")/apt-install.sh" --no-service-start test-postgres postgresql
exec "$(dirname "$0")/apt-install.sh" test \
	busybox curl shellcheck util-linux iproute2 chromium fonts-dejavu-core cpio binutils \
	qemu-system-arm dnsmasq-base nftables zstd xz-utils bzip2 lz4 unzip e2fsprogs bmap-tools \
	debootstrap dpkg-repack dpkg-dev mtools dosfstools gcc libssl-dev libzstd-dev qemu-user
