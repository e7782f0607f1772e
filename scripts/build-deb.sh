#!/bin/sh
# Usage: scripts/build-deb.sh [--out DIR] [--version VERSION]
# Builds cm4-provisioning_VERSION_ARCH.deb with dpkg-deb: dist/ compiled from src/ (by
# scripts/build.mjs, in a staging copy), the production node_modules (npm prune --omit=dev on a
# copy of this checkout's, whose native modules are built for this machine's Node and
# architecture), the systemd unit, config file and maintainer scripts of packaging/deb/.
# VERSION defaults to package.json's (env CM4PROV_DEB_VERSION also sets it); DIR to dist-deb/.
# The Maintainer field comes from DEBFULLNAME and DEBEMAIL (default: the project, no address).
# Prints the path of the .deb as its last line. Needs dpkg-dev and binutils.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
PROG=build-deb.sh
OUT=$ROOT/dist-deb
VERSION=${CM4PROV_DEB_VERSION:-}

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
	case $1 in
		--out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift 2 ;;
		--version) [ $# -ge 2 ] || die "--version needs a value"; VERSION=$2; shift 2 ;;
		--help | -h) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
		*) die "unknown option '$1' (see --help)" ;;
	esac
done

for tool in node:nodejs npm:npm dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev strip:binutils; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || die "${tool%%:*} is missing (Debian package ${tool#*:})"
done
[ -d "$ROOT/node_modules" ] || die "run npm install (or npm ci) in $ROOT first: its node_modules are packaged"

manifest() { node -p "require('$ROOT/package.json').$1"; }
[ -n "$VERSION" ] || VERSION=$(manifest version)
# Debian policy 5.6.12: upstream version starts with a digit; letters, digits and . + ~ - only.
case $VERSION in
	[0-9]*) ;;
	*) die "version '$VERSION' must start with a digit" ;;
esac
case $VERSION in
	*[!A-Za-z0-9.+~-]*) die "version '$VERSION' may hold only letters, digits and . + ~ -" ;;
esac
ARCH=$(dpkg --print-architecture)
# A site that builds its own packages names itself; the project has no mail address to give
# (.invalid is reserved for that, RFC 2606).
NAME=${DEBFULLNAME:-cm4-provisioning developers}
EMAIL=${DEBEMAIL:-cm4-provisioning@packages.invalid}
# better-sqlite3 is built against this Node's ABI: the package needs the same major version.
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
NODE_MIN=$(manifest engines.node | sed -n 's/^>=\([0-9][0-9.]*\)$/\1/p')
[ -n "$NODE_MIN" ] || NODE_MIN=$NODE_MAJOR
LIB=usr/lib/cm4-provisioning

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cm4prov-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
APP=$WORK/app
PKG=$WORK/pkg
started=$(date +%s)

# 1. A staging copy: dist/ is compiled there, so this checkout's own dist/ is left alone.
echo "$PROG: staging $VERSION ($ARCH)" >&2
mkdir -p "$APP/scripts"
cp -a "$ROOT/package.json" "$ROOT/package-lock.json" "$ROOT/src" "$APP/"
cp -a "$ROOT/scripts/build.mjs" "$APP/scripts/"
cp -a "$ROOT/node_modules" "$APP/node_modules"
(cd "$APP" && node scripts/build.mjs >&2) || die "compiling src/ failed"
(cd "$APP" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --offline >&2) || die "npm prune --omit=dev failed"
# What compiling the native modules left behind (objects, static libraries, C sources): only
# the .node files are loaded. Debug symbols go as dh_strip would remove them.
for module in "$APP/node_modules/better-sqlite3" "$APP/node_modules/zstd-napi"; do
	[ -d "$module" ] || continue
	rm -rf "$module/deps" "$module/src" "$module/build/Release/obj" "$module/build/Release/obj.target" \
		"$module/build/Release/.deps" "$module/build/deps"
	find "$module/build" \( -name '*.a' -o -name 'test_extension.node' -o -name '*.mk' -o -name 'Makefile' \) -delete
done
find "$APP/node_modules" -name '*.node' -type f -exec strip --strip-unneeded {} +

# 2. The file tree as installed.
mkdir -p "$PKG/DEBIAN" "$PKG/$LIB" "$PKG/usr/bin" "$PKG/usr/lib/systemd/system" \
	"$PKG/etc/cm4-provisioning" "$PKG/usr/share/doc/cm4-provisioning"
cp -a "$APP/package.json" "$APP/dist" "$APP/node_modules" "$PKG/$LIB/"
# `cm4prov netboot populate --from-debian` runs build.sh, which packs the device client.
cp -a "$ROOT/network-boot-initramfs" "$ROOT/device" "$PKG/$LIB/"
# cm4prov-io as built here for tests is for this machine, not the CM4: build.sh compiles its own.
rm -rf "$PKG/$LIB/device/io-helper/build" "$PKG/$LIB/device/io-helper/.build.lock"
cp "$ROOT/packaging/deb/cm4prov" "$PKG/usr/bin/cm4prov"
cp "$ROOT/packaging/deb/cm4-provisioning.service" "$PKG/usr/lib/systemd/system/"
cp "$ROOT/packaging/deb/config.json" "$PKG/etc/cm4-provisioning/config.json"
cp "$ROOT/README.md" "$PKG/usr/share/doc/cm4-provisioning/"
cp "$ROOT/packaging/deb/conffiles" "$ROOT/packaging/deb/postinst" "$ROOT/packaging/deb/prerm" \
	"$ROOT/packaging/deb/postrm" "$PKG/DEBIAN/"
chmod -R u+rwX,go+rX,go-w "$PKG"
chmod 0755 "$PKG/usr/bin/cm4prov" "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"
chmod 0644 "$PKG/DEBIAN/conffiles"

# 3. Control data: the libraries the native modules link, found by dpkg-shlibdeps.
mkdir -p "$WORK/debian"
printf 'Source: cm4-provisioning\n\nPackage: cm4-provisioning\nArchitecture: any\n' >"$WORK/debian/control"
native=$(find "$PKG/$LIB/node_modules" -name '*.node' -type f | sed 's/^/-e/')
# shellcheck disable=SC2086 # one -eFILE word per native module
shlibs=$(cd "$WORK" && dpkg-shlibdeps -O --warnings=0 $native) || die "dpkg-shlibdeps failed"
shlibs=${shlibs#shlibs:Depends=}
DEPENDS="nodejs (>= $NODE_MIN), nodejs (<< $((NODE_MAJOR + 1))), adduser${shlibs:+, $shlibs}"
(cd "$PKG" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z |
	xargs -0 md5sum) >"$PKG/DEBIAN/md5sums"
installed_kib=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$installed_kib/" \
	-e "s|@DEPENDS@|$DEPENDS|" -e "s|@MAINTAINER@|$NAME <$EMAIL>|" \
	"$ROOT/packaging/deb/control.in" >"$PKG/DEBIAN/control"

# 4. The archive; files owned by root whoever builds it.
mkdir -p "$OUT"
DEB=$(cd "$OUT" && pwd -P)/cm4-provisioning_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group --build "$PKG" "$DEB" >&2
echo "$PROG: $(du -h "$DEB" | cut -f1) in $(($(date +%s) - started)) s" >&2
echo "$DEB"
