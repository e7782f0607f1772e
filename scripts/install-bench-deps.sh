#!/bin/sh
# Installs the Debian packages the benchmark suite (npm run bench) runs against: bmap-tools and
# nginx-light (the baselines), e2fsprogs (mke2fs -d builds the test image), fdisk, dosfstools
# and mtools (sfdisk, mkfs.vfat and mcopy build the many-devices benchmark's Raspberry Pi
# OS-shaped image), zstd (put on the device client's PATH when present), iproute2 (namespaces,
# veth, tc shaping), busybox and curl (the device client), gcc, make, libssl-dev and libzstd-dev
# (cm4prov-io, the client's data path, built for this machine), procps, and postgresql (the
# long-poll benchmark runs once more on a PostgreSQL server of its own; its cluster is not started).
set -eu
nginx_was_missing=''
dpkg-query -W -f='${Status}' nginx-light 2>/dev/null | grep -q 'install ok installed' || nginx_was_missing=yes
# The benchmarks start their own nginx: the package's service must not start on :80.
"$(dirname "$0")/apt-install.sh" --no-service-start bench bmap-tools nginx-light e2fsprogs fdisk dosfstools mtools zstd iproute2 busybox curl procps gcc make libssl-dev libzstd-dev postgresql
# A system nginx newly installed here would listen on :80 on every interface from the next boot on.
if [ -n "$nginx_was_missing" ] && [ -d /run/systemd/system ]; then
	if [ "$(id -u)" -eq 0 ]; then systemctl disable --now nginx >/dev/null 2>&1 || true
	else sudo systemctl disable --now nginx >/dev/null 2>&1 || true; fi
fi
