#!/bin/sh
# build.sh: builds the cm4-provisioning netboot initramfs (initrd.img, a gzip-compressed newc
# cpio) for arm64 from Debian packages, plus the kernel and CM4 device tree it pairs with.
#
#   network-boot-initramfs/build.sh [--out DIR] [--kernel-version V] [--extra-module NAME]…
#                                   [--client PATH] [--cache DIR] [--firmware]
#
# Packages come from the machine's own apt sources (their URIs are copied, never hard-coded),
# fetched for arm64 by an apt-get that has its own state and cache: the host's dpkg state is
# neither read nor changed. What goes in is derived, not listed by hand:
#   - the shared libraries of curl and zstd: their ELF NEEDED entries, resolved recursively
#     (readelf -d);
#   - kernel modules: each .ko's own depends= and softdep pre: (its .modinfo section, read with
#     readelf), resolved recursively and ordered with tsort;
#   - busybox applets: the applet name table inside the busybox binary itself.
# The same inputs give a byte-identical initrd.img (sorted entries, fixed mtimes, owner 0:0,
# gzip -n). See README.md next to this script.
# shellcheck disable=SC3043 # `local`, which dash and busybox ash have
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ARCH=arm64
TRIPLET=aarch64-linux-gnu
LIBDIR=lib/$TRIPLET
SIZE_TARGET=$((12 * 1000 * 1000))
# Dynamically linked tools shipped as bin/NAME with every library they need, PACKAGE:PATH:
# curl for the client's HTTP, zstd for compressed images and backups, mtools (mcopy…) and debugfs
# to write per-device files into a deployed image's FAT and ext4 partitions without mounting them.
ELF_BINARIES='curl:usr/bin/curl zstd:usr/bin/zstd mtools:usr/bin/mtools e2fsprogs:sbin/debugfs'
# cm4prov-io (device/io-helper), the client's compiled data path, is built with Debian's cross
# compiler against the arm64 headers of these packages; it links the libcrypto and libzstd that
# curl and zstd bring anyway. Without the cross compiler the client uses dd and sha256sum.
CROSS_CC=${CROSS_CC:-$TRIPLET-gcc}
IO_HELPER_PACKAGES='libssl-dev libzstd-dev'
IO_HELPER_SOURCE=$HERE/../device/io-helper
# Ethernet of the CM4 (bcmgenet, its MDIO bus and PHY), its eMMC controller, virtio for QEMU,
# and netconsole (loaded by /init only when netconsole= is on the kernel command line).
DEFAULT_MODULES='genet mdio-bcm-unimac broadcom sdhci-iproc virtio_pci virtio_mmio virtio_net virtio_blk netconsole'
# Applets that /init and provisioning-client.sh call: a busybox without them is refused.
REQUIRED_APPLETS='sh mount insmod ip udhcpc sleep cat sed tr grep head tail cut date mktemp mkfifo dd tee sha256sum blockdev stat sync reboot poweroff setsid cttyhack'

mib() { awk -v bytes="$1" 'BEGIN { printf "%.1f", bytes / 1048576 }'; }
say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<EOF
Usage: $0 [options]

Builds initrd.img (gzip-compressed newc cpio) for arm64 with busybox, curl, zstd, the provisioning
client, cm4prov-io (compiled here when the cross compiler is installed) and the kernel modules the CM4 (and QEMU virt) need, and copies the paired kernel
(kernel8.img) and CM4 device tree next to it.

Options:
  --out DIR            output directory (default: network-boot-initramfs/out)
  --kernel-version V   Debian arm64 kernel, e.g. 6.1.0-28-arm64 (default: what
                       linux-image-arm64 depends on in the current package index)
  --extra-module NAME  also ship and load this kernel module (repeatable)
  --client PATH        the client script (default: device/provisioning-client.sh)
  --cache DIR          apt state, downloaded .debs and unpacked packages
                       (default: \${XDG_CACHE_HOME:-\$HOME/.cache}/cm4-provisioning)
  --firmware           also copy the Pi 4 boot firmware (start4*.elf, fixup4*.dat) from
                       Debian's raspi-firmware (non-free-firmware) into DIR/firmware/
  --help               this text

Environment: SOURCE_DATE_EPOCH sets the mtime of every file in the archive (default 0);
CROSS_CC is the arm64 C compiler for cm4prov-io, the client's fast data path (default
$TRIPLET-gcc; none: build without it, the client then uses dd and sha256sum).
EOF
}

# ---------------------------------------------------------------- options and host tools

OUT=$HERE/out
KERNEL_VERSION=''
EXTRA_MODULES=''
CLIENT=$HERE/../device/provisioning-client.sh
CACHE=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/cm4-provisioning
FIRMWARE=no
# What the Pi 4 / CM4 bootloader loads over TFTP before the kernel: the full and the cut-down
# (gpu_mem=16) GPU firmware, each with its memory-split fixup file.
FIRMWARE_FILES='start4.elf start4cd.elf fixup4.dat fixup4cd.dat'

need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
	case $1 in
		--out) need_value "$1" $#; OUT=$2; shift 2 ;;
		--kernel-version) need_value "$1" $#; KERNEL_VERSION=$2; shift 2 ;;
		--extra-module) need_value "$1" $#; EXTRA_MODULES="$EXTRA_MODULES $2"; shift 2 ;;
		--client) need_value "$1" $#; CLIENT=$2; shift 2 ;;
		--cache) need_value "$1" $#; CACHE=$2; shift 2 ;;
		--firmware) FIRMWARE=yes; shift ;;
		--help | -h) usage; exit 0 ;;
		*) die "unknown option '$1' (see --help)" ;;
	esac
done

export LC_ALL=C TZ=UTC
umask 022
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
case $SOURCE_DATE_EPOCH in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be a whole number of seconds, not '$SOURCE_DATE_EPOCH'" ;; esac
STARTED=$(date +%s)

check_host_tools() {
	local tool package missing=''
	for tool in apt-get:apt apt-cache:apt dpkg-deb:dpkg tar:tar readelf:binutils cpio:cpio gzip:gzip tsort:coreutils flock:util-linux; do
		package=${tool#*:}
		tool=${tool%%:*}
		command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool (package $package)"
	done
	[ -z "$missing" ] || die "missing host tools:$missing. Install them with apt-get install."
}

# ---------------------------------------------------------------- a private apt for arm64

APT_DIR=''
# apt-get / apt-cache with their own etc, state and cache, told the machine is arm64 and that no
# package is installed. The host's apt.conf.d is still read (proxy settings apply).
private_apt() {
	local tool="$1"
	shift
	"$tool" -o "Dir::Etc=$APT_DIR/etc" -o "Dir::State=$APT_DIR/state" -o "Dir::Cache=$APT_DIR/cache" \
		-o Dir::State::status=/dev/null -o Dir::Etc::trusted=/etc/apt/trusted.gpg \
		-o Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d -o "APT::Architecture=$ARCH" \
		-o "APT::Architectures::=$ARCH" -o APT::Sandbox::User=root -o Acquire::Languages=none "$@"
}

# The host's deb sources as deb822 stanzas for arm64: sources.list and *.list lines are
# converted, *.sources stanzas copied (Signed-By included) with Architectures replaced.
host_sources() {
	local file
	for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$file" ] || continue
		awk '
			$1 != "deb" { next }
			{
				options = ""; i = 2
				if ($2 ~ /^\[/) {
					while (i <= NF) { options = options " " $i; if ($i ~ /\]$/) { i++; break }; i++ }
				}
				uri = $i; suite = $(i + 1); components = ""
				for (j = i + 2; j <= NF; j++) components = components " " $j
				print "Types: deb"; print "URIs: " uri; print "Suites: " suite
				if (components != "") print "Components:" components
				if (match(options, /signed-by=[^] ]+/)) print "Signed-By: " substr(options, RSTART + 10, RLENGTH - 10)
				print ""
			}' "$file"
	done
	for file in /etc/apt/sources.list.d/*.sources; do
		[ -f "$file" ] || continue
		awk '
			function flush() {
				if (stanza != "" && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*(no|false)/)
					printf "%sArchitectures: '"$ARCH"'\n\n", stanza
				stanza = ""; types = ""; enabled = ""; skipping = 0
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			/^[ \t]/ { if (!skipping) stanza = stanza $0 "\n"; next }
			{
				field = tolower($1); skipping = 0
				if (field == "types:") { types = substr($0, 7); stanza = stanza "Types: deb\n"; next }
				if (field == "enabled:") { enabled = substr($0, 9); next }
				if (field == "architectures:") { skipping = 1; next }
				stanza = stanza $0 "\n"
			}
			END { flush() }' "$file"
	done
}

# With --firmware, every stanza that has Debian's `main` also gets `non-free-firmware`, where
# raspi-firmware lives (Debian 12 and later); the host's own sources often list only main.
apt_sources() {
	if [ "$FIRMWARE" = no ]; then
		host_sources
		return
	fi
	host_sources | awk '
		tolower($1) == "components:" && $0 ~ /[ \t]main([ \t]|$)/ && $0 !~ /[ \t]non-free-firmware([ \t]|$)/ {
			$0 = $0 " non-free-firmware"
		}
		{ print }'
}

have_package_lists() { ls "$APT_DIR"/state/lists/*_Packages* >/dev/null 2>&1; }

# Writes the private apt configuration and refreshes its package lists when they are missing,
# older than a day, or the host's sources changed. Stale lists are used if the mirror is down.
prepare_apt() {
	local sources stale=no
	APT_DIR=$CACHE/apt
	mkdir -p "$APT_DIR/etc/apt.conf.d" "$APT_DIR/etc/preferences.d" "$APT_DIR/etc/sources.list.d" \
		"$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial"
	: > "$APT_DIR/etc/sources.list"
	sources=$(apt_sources)
	[ -n "$sources" ] || die "no deb sources found in /etc/apt/sources.list or /etc/apt/sources.list.d/: apt must be configured on this machine"
	have_package_lists || stale=yes
	[ "$sources" = "$(cat "$APT_DIR/etc/sources.list.d/host.sources" 2>/dev/null)" ] || stale=yes
	[ -n "$(find "$APT_DIR/updated" -mmin -1440 2>/dev/null)" ] || stale=yes
	if [ "$stale" = yes ]; then
		printf '%s\n' "$sources" > "$APT_DIR/etc/sources.list.d/host.sources"
		say "updating the $ARCH package lists from $(printf '%s\n' "$sources" | sed -n 's/^URIs: //p' | tr '\n' ' ')"
		if private_apt apt-get -q update > "$APT_DIR/update.log" 2>&1 && ! grep -q '^[WE]: ' "$APT_DIR/update.log"; then
			touch "$APT_DIR/updated"
		elif have_package_lists; then
			say "warning: apt-get update failed; using the package lists from an earlier run:"
			grep '^[WE]: ' "$APT_DIR/update.log" >&2 || true
		else
			cat "$APT_DIR/update.log" >&2
			die "could not fetch the $ARCH package lists (apt-get update failed, see above)"
		fi
	fi
}

# ---------------------------------------------------------------- packages

resolve_kernel_version() {
	if [ -n "$KERNEL_VERSION" ]; then
		case $KERNEL_VERSION in *-"$ARCH") ;; *) KERNEL_VERSION=$KERNEL_VERSION-$ARCH ;; esac
	else
		KERNEL_VERSION=$(private_apt apt-cache show --no-all-versions "linux-image-$ARCH" 2>/dev/null |
			sed -n 's/^Depends:.*\(linux-image-[^ ,]*-'"$ARCH"'\).*/\1/p' | head -n 1 | sed 's/^linux-image-//')
		[ -n "$KERNEL_VERSION" ] || die "could not find the current kernel: linux-image-$ARCH is not in the package index"
	fi
	if ! private_apt apt-cache show --no-all-versions "linux-image-$KERNEL_VERSION" >/dev/null 2>&1; then
		die "kernel package linux-image-$KERNEL_VERSION is not in the package index; available: $(private_apt apt-cache pkgnames linux-image- | grep -- "-$ARCH\$" | grep -v -- '-dbg\|-unsigned' | sort | tr '\n' ' ')"
	fi
}

# Package names of busybox-static and the ELF_BINARIES packages (and, with the cross compiler,
# IO_HELPER_PACKAGES) plus everything they depend on (virtual names and alternatives resolved by
# apt), and the kernel package alone.
package_set() {
	local binary packages='busybox-static'
	for binary in $ELF_BINARIES; do packages="$packages ${binary%%:*}"; done
	! command -v "$CROSS_CC" >/dev/null 2>&1 || packages="$packages $IO_HELPER_PACKAGES"
	# shellcheck disable=SC2086 # package list split into words on purpose
	private_apt apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances $packages | sed -n 's/^\([a-z0-9][^ <>]*\)$/\1/p' | sort -u
	echo "linux-image-$KERNEL_VERSION"
}

# Downloads (or finds in the cache) the candidate .deb of each package; sets DEB_FILES to the
# .deb file names (NAME_VERSION_ARCH.deb) this build uses.
download_packages() {
	local packages uris file missing=''
	packages=$(package_set | tr '\n' ' ')
	# From an empty directory, so that it names the files already in the cache too.
	mkdir -p "$APT_DIR/print-uris"
	# shellcheck disable=SC2086 # package list split into words on purpose
	uris=$(cd "$APT_DIR/print-uris" && private_apt apt-get -q --print-uris download $packages) ||
		die "apt-get could not resolve the packages: $packages"
	# 'URI' FILE SIZE HASH: the file names say which versions this build uses.
	DEB_FILES=$(printf '%s\n' "$uris" | sed -n "s/^'[^']*' \([^ ]*\.deb\) .*/\1/p")
	[ -n "$DEB_FILES" ] || die "apt-get named no .deb files for: $packages"
	for file in $DEB_FILES; do [ -f "$CACHE/debs/$file" ] || missing="$missing $file"; done
	if [ -n "$missing" ]; then
		say "downloading $(echo "$missing" | wc -w) packages"
		# shellcheck disable=SC2086
		(cd "$CACHE/debs" && private_apt apt-get -q download $packages > "$APT_DIR/download.log" 2>&1) || {
			cat "$APT_DIR/download.log" >&2
			die "downloading the $ARCH packages failed (see above)"
		}
	fi
	for file in $DEB_FILES; do [ -f "$CACHE/debs/$file" ] || die "apt-get download did not produce $file"; done
}

# Unpacks a .deb once into the cache (dpkg-deb --fsys-tarfile | tar -x) and prints the directory.
unpacked() {
	local file="$1" dir
	dir=$CACHE/unpacked/${file%.deb}
	if [ ! -f "$dir/.complete" ]; then
		rm -rf "$dir" "$dir.partial"
		mkdir -p "$dir.partial"
		dpkg-deb --fsys-tarfile "$CACHE/debs/$file" | tar -x --no-same-owner -C "$dir.partial" ||
			die "could not unpack $file"
		touch "$dir.partial/.complete"
		mv "$dir.partial" "$dir"
	fi
	printf '%s\n' "$dir"
}

unpacked_package() { # package → the directory its .deb (NAME_VERSION_ARCH.deb) is unpacked in
	local file
	file=$(printf '%s\n' "$DEB_FILES" | awk -F _ -v package="$1" '$1 == package { print; exit }')
	[ -n "$file" ] || die "package $1 was not downloaded"
	unpacked "$file"
}

# ---------------------------------------------------------------- the root file system

STAGE=''
cleanup() { [ -z "$STAGE" ] || rm -rf "$STAGE" "$STAGE.modules" "$STAGE.order" "$STAGE.io"; }

# Follows symlinks inside an unpacked package (absolute targets stay inside ROOT).
resolve_in_root() { # root path → real path
	local root="$1" path="$2" target hops=0
	while [ -L "$root/$path" ]; do
		target=$(readlink "$root/$path")
		case $target in /*) path=${target#/} ;; *) path=$(dirname "$path")/$target ;; esac
		hops=$((hops + 1))
		[ "$hops" -lt 20 ] || die "symlink loop at $root/$path"
	done
	[ -e "$root/$path" ] && printf '%s\n' "$root/$path"
}

# The applet names busybox holds in its sorted, NUL-separated applet_names table ("[", "[[",
# "acpid", …): the arm64 binary cannot be run here to ask `busybox --list`.
busybox_applets() {
	tr '\000' '\n' < "$1" | awk '
		found && $0 == "" { exit }
		found { print; next }
		previous == "[" && $0 == "[[" { found = 1; print "["; print "[[" }
		{ previous = $0 }'
}

stage_busybox() {
	local root applets applet missing=''
	root=$(unpacked_package busybox-static)
	install -m 0755 -D "$root/bin/busybox" "$STAGE/bin/busybox"
	applets=$(busybox_applets "$root/bin/busybox")
	for applet in $REQUIRED_APPLETS; do
		printf '%s\n' "$applets" | grep -qx -- "$applet" || missing="$missing $applet"
	done
	[ -z "$missing" ] || die "busybox-static lacks applets that /init or the client need:$missing"
	printf '%s\n' "$applets" | while IFS= read -r applet; do
		case $applet in */* | busybox) continue ;; esac
		ln -s busybox "$STAGE/bin/$applet"
	done
	say "busybox: $(printf '%s\n' "$applets" | wc -l) applets"
}

needed_of() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
interpreter_of() { readelf -l "$1" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p'; }

# Finds SONAME in the lib dirs of the unpacked packages.
find_library() {
	local root dir
	for root in $LIB_ROOTS; do
		for dir in "$LIBDIR" "usr/$LIBDIR" lib usr/lib; do
			[ -e "$root/$dir/$1" ] || [ -L "$root/$dir/$1" ] || continue
			resolve_in_root "$root" "$dir/$1" && return 0
		done
	done
	return 1
}

# LIB_ROOTS: the unpacked packages (all but the kernel) that find_library searches; set once.
set_lib_roots() {
	local file
	[ -z "$LIB_ROOTS" ] || return 0
	for file in $DEB_FILES; do
		case $file in linux-image-*) continue ;; esac
		LIB_ROOTS="$LIB_ROOTS $(unpacked "$file")"
	done
}

# Copies a library into lib/TRIPLET under its SONAME, once per build; LIBRARY_PATH is where in
# the unpacked packages it came from (a variable, not output: STAGED_LIBS must not be in a subshell).
stage_library() { # soname what-needs-it
	LIBRARY_PATH=$(find_library "$1") || die "library $1 (needed by $2) is in none of the downloaded packages"
	case " $STAGED_LIBS " in
		*" $1 "*) ;;
		*)
			install -m 0644 -D "$LIBRARY_PATH" "$STAGE/$LIBDIR/$1"
			STAGED_LIBS="$STAGED_LIBS $1"
			;;
	esac
}

# PACKAGE's binary PATH as bin/NAME and, transitively, every library named by an ELF NEEDED
# entry, under its SONAME (libraries shared with an earlier binary are shipped once); then the
# ELF interpreter where the binary asks for it, and the package's symlinks to the binary next to
# it (zstd: unzstd, zstdcat, zstdmt), which replace busybox applets of the same name.
stage_elf_binary() { # package path
	local package="$1" file="$2" name root binary links='' link bytes
	name=${file##*/}
	root=$(unpacked_package "$package")
	binary=$(resolve_in_root "$root" "$file") || die "$package has no $file"
	install -m 0755 -D "$binary" "$STAGE/bin/$name"
	stage_needed_libraries "$name"
	for link in "$root/${file%/*}"/*; do
		[ -L "$link" ] || continue
		[ "$(resolve_in_root "$root" "${link#"$root"/}")" = "$binary" ] || continue
		rm -f "$STAGE/bin/${link##*/}"
		ln -s "$name" "$STAGE/bin/${link##*/}"
		links="$links ${link##*/}"
	done
	# shellcheck disable=SC2086 # the SONAMEs split into words on purpose
	bytes=$(cd "$STAGE/$LIBDIR" && du -cb "$STAGE/bin/$name" $NEEDED_SONAMES | tail -n 1 | cut -f 1)
	say "$name: $(echo "$NEEDED_SONAMES" | wc -w) shared libraries from ELF NEEDED ($NEWLY_STAGED not shipped before), $((bytes / 1024)) KiB with $name${links:+; links:$links}"
}

# Stages what bin/NAME needs: transitively, every library named by an ELF NEEDED entry, and the
# ELF interpreter. Sets NEEDED_SONAMES (the interpreter's last) and NEWLY_STAGED (a count).
stage_needed_libraries() { # name
	local name="$1" interp todo soname seen='' before
	interp=$(interpreter_of "$STAGE/bin/$name")
	[ -n "$interp" ] || die "$name has no ELF interpreter: is this the $ARCH package?"
	set_lib_roots
	before=$(echo "$STAGED_LIBS" | wc -w)
	todo=$(needed_of "$STAGE/bin/$name")
	while [ -n "$todo" ]; do
		soname=$(printf '%s\n' "$todo" | head -n 1)
		todo=$(printf '%s\n' "$todo" | sed 1d)
		case " $seen " in *" $soname "*) continue ;; esac
		seen="$seen $soname"
		stage_library "$soname" "$name"
		todo=$(printf '%s\n%s\n' "$todo" "$(needed_of "$LIBRARY_PATH")" | sed '/^$/d')
	done
	# The loader, where the binary asks for it (/lib/ld-linux-aarch64.so.1).
	soname=${interp##*/}
	stage_library "$soname" "$name as its ELF interpreter"
	chmod 0755 "$STAGE/$LIBDIR/$soname"
	if [ "$interp" != "/$LIBDIR/$soname" ] && [ ! -L "$STAGE$interp" ]; then
		mkdir -p "$STAGE${interp%/*}"
		ln -s "/$LIBDIR/$soname" "$STAGE$interp"
	fi
	case " $seen " in *" $soname "*) NEEDED_SONAMES=$seen ;; *) NEEDED_SONAMES="$seen $soname" ;; esac
	NEWLY_STAGED=$(($(echo "$STAGED_LIBS" | wc -w) - before))
}

# bin/cm4prov-io, compiled here for arm64: Debian's cross gcc, the arm64 headers of
# IO_HELPER_PACKAGES, and the arm64 libcrypto and libzstd themselves (by path: their dev symlinks
# point into other packages). Skipped, with a word, without the cross compiler.
stage_io_helper() {
	local ssl_dev zstd_dev build bytes
	if [ "$CROSS_CC" = none ]; then
		say "cm4prov-io: not built (CROSS_CC=none); the client will use dd and sha256sum"
		return 0
	fi
	if ! command -v "$CROSS_CC" >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
		say "cm4prov-io: not built (needs $CROSS_CC and make: apt-get install gcc-$TRIPLET make); the client will use dd and sha256sum"
		return 0
	fi
	ssl_dev=$(unpacked_package libssl-dev)
	zstd_dev=$(unpacked_package libzstd-dev)
	set_lib_roots
	build=$STAGE.io
	make -s -C "$IO_HELPER_SOURCE" OUT="$build" CC="$CROSS_CC" CFLAGS='-O2 -s' \
		SYSROOT_FLAGS="-I$ssl_dev/usr/include -I$ssl_dev/usr/include/$TRIPLET -I$zstd_dev/usr/include" \
		LIBS="$(find_library libcrypto.so.3) $(find_library libzstd.so.1)" >&2 || die "compiling cm4prov-io for $ARCH failed (see above)"
	install -m 0755 "$build/cm4prov-io" "$STAGE/bin/cm4prov-io"
	rm -rf "$build"
	stage_needed_libraries cm4prov-io
	bytes=$(stat -c %s "$STAGE/bin/cm4prov-io")
	say "cm4prov-io: built with $CROSS_CC, $((bytes / 1024)) KiB, needs$NEEDED_SONAMES ($NEWLY_STAGED not shipped before)"
}

stage_elf_binaries() {
	local binary
	LIB_ROOTS=''
	STAGED_LIBS=''
	for binary in $ELF_BINARIES; do stage_elf_binary "${binary%%:*}" "${binary#*:}"; done
}

# mtools converts FAT names to code page 850 through glibc's iconv, which loads IBM850.so from its
# gconv folder at run time (no ELF dependency shows it): without it every mcopy fails with "Bad
# target". Found by the QEMU chain test; about 10 KB.
stage_gconv() {
	local root dir="$STAGE/usr/lib/$TRIPLET/gconv"
	root=$(unpacked_package libc6)
	mkdir -p "$dir"
	install -m 0644 "$root/usr/lib/$TRIPLET/gconv/IBM850.so" "$dir/IBM850.so"
	printf 'alias CP850// IBM850//\nmodule IBM850// INTERNAL IBM850 1\nmodule INTERNAL IBM850// IBM850 1\n' >"$dir/gconv-modules"
}

# ---------------------------------------------------------------- kernel, modules and their order

modinfo_field() { # file field → values of field= in the module's .modinfo section
	readelf -p .modinfo "$1" 2>/dev/null | sed -n "s/^ *\[ *[0-9a-f]*\] *$2=//p"
}
normalized() { printf '%s\n' "$1" | tr '-' '_'; }

module_path() { # name → kernel/…/name.ko (relative to lib/modules/VERSION), if it is a module
	awk -v name="$(normalized "$1")" '$1 == name { print $2; exit }' "$MODULE_INDEX"
}
is_builtin() { grep -q "/$(normalized "$1" | sed 's/_/[-_]/g')\\.ko\$" "$KMOD_DIR/modules.builtin" 2>/dev/null; }

stage_modules() {
	local wanted name todo done_list='' path deps dep pairs='' count=0
	KERNEL_ROOT=$(unpacked_package "linux-image-$KERNEL_VERSION")
	KMOD_DIR=$KERNEL_ROOT/lib/modules/$KERNEL_VERSION
	[ -d "$KMOD_DIR/kernel" ] || die "linux-image-$KERNEL_VERSION has no lib/modules/$KERNEL_VERSION/kernel"
	MODULE_INDEX=$STAGE.modules
	find "$KMOD_DIR/kernel" -name '*.ko' | sed "s|^$KMOD_DIR/||" |
		awk '{ name = $0; sub(/.*\//, "", name); sub(/\.ko$/, "", name); gsub(/-/, "_", name); print name, $0 }' |
		sort > "$MODULE_INDEX"
	[ -s "$MODULE_INDEX" ] || die "no uncompressed .ko modules in linux-image-$KERNEL_VERSION (compressed modules are not supported)"
	wanted="$DEFAULT_MODULES $EXTRA_MODULES"
	for name in $wanted; do
		[ -n "$(module_path "$name")" ] || is_builtin "$name" ||
			die "kernel module '$name' is neither a module nor built into linux-image-$KERNEL_VERSION"
	done
	# Walk depends= (must exist) and softdep pre: (loaded first when present) recursively.
	todo=$(printf "%s\n" "$wanted" | tr -s " " "\n" | sed "/^$/d")
	while [ -n "$todo" ]; do
		name=$(normalized "$(printf '%s\n' "$todo" | head -n 1)")
		todo=$(printf '%s\n' "$todo" | sed 1d)
		case " $done_list " in *" $name "*) continue ;; esac
		done_list="$done_list $name"
		path=$(module_path "$name")
		[ -n "$path" ] || continue # built into the kernel
		install -m 0644 -D "$KMOD_DIR/$path" "$STAGE/lib/modules/$KERNEL_VERSION/$path"
		count=$((count + 1))
		pairs="$pairs$name $name
"
		deps=$(modinfo_field "$KMOD_DIR/$path" depends | tr ',' ' ')
		for dep in $deps; do
			dep=$(normalized "$dep")
			[ -n "$(module_path "$dep")" ] || is_builtin "$dep" ||
				die "module $name depends on $dep, which linux-image-$KERNEL_VERSION does not have"
			pairs="$pairs$dep $name
"
			todo="$todo
$dep"
		done
		for dep in $(modinfo_field "$KMOD_DIR/$path" softdep | sed -n 's/.*pre:\(.*\)/\1/p' | sed 's/post:.*//'); do
			dep=$(normalized "$dep")
			[ -n "$(module_path "$dep")" ] || continue
			pairs="$pairs$dep $name
"
			todo="$todo
$dep"
		done
	done
	# tsort puts each module after what it depends on; keep only modules (not built-ins).
	printf '%s' "$pairs" | sort -u | tsort > "$STAGE.order" || die "the module dependencies form a cycle"
	while read -r name; do
		path=$(module_path "$name")
		[ -z "$path" ] || printf '%s\n' "$path"
	done < "$STAGE.order" > "$STAGE/lib/modules/$KERNEL_VERSION/load-order"
	rm -f "$STAGE.order" "$MODULE_INDEX"
	say "modules for $KERNEL_VERSION: $count, load order: $(sed 's|.*/||; s|\.ko$||' "$STAGE/lib/modules/$KERNEL_VERSION/load-order" | tr '\n' ' ')"
}

stage_files() {
	local dir file
	for dir in dev proc sys run tmp root etc; do mkdir -p "$STAGE/$dir"; done
	chmod 1777 "$STAGE/tmp"
	ln -s bin "$STAGE/sbin"
	mkdir -p "$STAGE/usr"
	ln -s ../bin "$STAGE/usr/bin"
	ln -s ../bin "$STAGE/usr/sbin"
	install -m 0755 "$HERE/init" "$STAGE/init"
	install -m 0755 "$CLIENT" "$STAGE/bin/provisioning-client.sh"
	printf '127.0.0.1\tlocalhost\n' > "$STAGE/etc/hosts"
	printf 'hosts: files dns\n' > "$STAGE/etc/nsswitch.conf"
	{
		printf 'KERNEL_VERSION=%s\n' "$KERNEL_VERSION"
		printf 'CLIENT_SHA256=%s\n' "$(sha256sum < "$CLIENT" | cut -d ' ' -f 1)"
		for file in $DEB_FILES; do printf 'PACKAGE=%s\n' "${file%.deb}"; done | sort
	} > "$STAGE/etc/cm4-provisioning-release"
}

# Sorted entries (parents first), fixed mtimes, owner 0:0, no device or inode numbers from the
# build machine, gzip without a name or time stamp: the same inputs give the same bytes.
pack_initrd() {
	find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$STAGE" && find . -mindepth 1 | sed 's|^\./||' | sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n > "$OUT/initrd.img.partial" ||
		die "could not write $OUT/initrd.img"
	mv "$OUT/initrd.img.partial" "$OUT/initrd.img"
}

copy_boot_files() {
	local dtb
	install -m 0644 "$KERNEL_ROOT/boot/vmlinuz-$KERNEL_VERSION" "$OUT/kernel8.img"
	dtb=$KERNEL_ROOT/usr/lib/linux-image-$KERNEL_VERSION/broadcom/bcm2711-rpi-cm4-io.dtb
	[ -f "$dtb" ] || die "linux-image-$KERNEL_VERSION has no broadcom/bcm2711-rpi-cm4-io.dtb"
	install -m 0644 "$dtb" "$OUT/bcm2711-rpi-cm4-io.dtb"
	# The Pi bootloader asks for bcm2711-rpi-cm4.dtb, which Debian does not ship under that name.
	install -m 0644 "$dtb" "$OUT/bcm2711-rpi-cm4.dtb"
	printf '%s\n' "$KERNEL_VERSION" > "$OUT/kernel-version"
}

# The Pi 4 boot firmware from raspi-firmware (non-free-firmware), fetched on its own: it is not
# part of the initrd, so etc/cm4-provisioning-release and the initrd bytes stay the same.
copy_firmware() {
	local file root name path
	file=$(cd "$APT_DIR/print-uris" && private_apt apt-get -q --print-uris download raspi-firmware 2>/dev/null |
		sed -n "s/^'[^']*' \([^ ]*\.deb\) .*/\1/p")
	[ -n "$file" ] || die "raspi-firmware is not in the $ARCH package index even with the non-free-firmware component added to the host's sources (it needs a Debian 12 or newer mirror)"
	if [ ! -f "$CACHE/debs/$file" ]; then
		say "downloading $file"
		(cd "$CACHE/debs" && private_apt apt-get -q download raspi-firmware > "$APT_DIR/download.log" 2>&1) || {
			cat "$APT_DIR/download.log" >&2
			die "downloading raspi-firmware failed (see above)"
		}
	fi
	root=$(unpacked "$file")
	mkdir -p "$OUT/firmware" || die "cannot create $OUT/firmware"
	# Debian 12 puts them in usr/lib/raspi-firmware/; found by name so a moved folder still works.
	for name in $FIRMWARE_FILES; do
		path=$(find "$root" -type f -name "$name" | awk '{ print length, $0 }' | sort -n | head -n 1 | cut -d ' ' -f 2-)
		[ -n "$path" ] || die "${file%.deb} has no $name"
		install -m 0644 "$path" "$OUT/firmware/$name.partial"
		mv "$OUT/firmware/$name.partial" "$OUT/firmware/$name"
	done
	printf '%s\n' "${file%.deb}" > "$OUT/firmware/package"
	say "firmware: $FIRMWARE_FILES from ${file%.deb} ($(dirname "${path#"$root"/}")/)"
}

# ---------------------------------------------------------------- main

main() {
	local bytes unpacked_bytes
	check_host_tools
	[ -f "$CLIENT" ] || die "client script $CLIENT does not exist (--client PATH)"
	sh -n "$CLIENT" || die "client script $CLIENT does not parse as sh"
	[ -f "$HERE/init" ] || die "$HERE/init is missing"
	mkdir -p "$OUT" "$CACHE/debs" || die "cannot create $OUT or $CACHE"
	OUT=$(cd "$OUT" && pwd)
	# Builds that share a cache take turns (apt's lists and the unpacked packages).
	exec 9> "$CACHE/lock"
	flock 9 || die "could not lock $CACHE/lock"

	prepare_apt
	resolve_kernel_version
	say "kernel $KERNEL_VERSION, cache $CACHE"
	download_packages
	STAGE=$(mktemp -d "${TMPDIR:-/tmp}/cm4-initramfs.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	chmod 0755 "$STAGE"
	stage_busybox
	stage_elf_binaries
	stage_io_helper
	stage_gconv
	stage_modules
	stage_files
	unpacked_bytes=$(du -sb "$STAGE" | cut -f 1)
	pack_initrd
	copy_boot_files
	[ "$FIRMWARE" = no ] || copy_firmware
	bytes=$(stat -c %s "$OUT/initrd.img")
	say "wrote $OUT/initrd.img: $bytes bytes ($(mib "$bytes") MiB) compressed, $(mib "$unpacked_bytes") MiB unpacked, in $(($(date +%s) - STARTED)) s"
	say "also wrote kernel8.img, bcm2711-rpi-cm4-io.dtb and bcm2711-rpi-cm4.dtb (kernel $KERNEL_VERSION)"
	[ "$bytes" -le "$SIZE_TARGET" ] || say "warning: initrd.img is larger than the 12 MB target; TFTP from the Pi bootloader is slow"
}

main
