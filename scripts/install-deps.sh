#!/bin/sh
# Installs what `npm install && npx cm4prov serve` and the Quick start's trial need on a fresh
# Debian 12 that has Node.js 20: python3, make and g++ (npm compiles better-sqlite3 and zstd-napi
# from source when it cannot download their prebuilt binaries), busybox and curl (the device
# client), and Debian's arm64 cross compiler (the initramfs build compiles cm4prov-io, the client's
# fast data path, with it). Debian's own nodejs is 18, too old: Node.js 20 comes first, from
# wherever you get it.
set -eu
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)
case $major in
	none) echo "Node.js 20 or newer is needed first: 'node' is not on the PATH" >&2; exit 1 ;;
	1[0-9] | [0-9]) echo "Node.js 20 or newer is needed first: this is Node.js $(node -v)" >&2; exit 1 ;;
esac
exec "$(dirname "$0")/apt-install.sh" server python3 make g++ busybox curl gcc-aarch64-linux-gnu libc6-dev-arm64-cross
