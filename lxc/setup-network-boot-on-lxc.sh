#!/bin/sh
# setup-network-boot-on-lxc.sh: prepares the container that runs the cm4-provisioning server
# for network boot. eth0 is the WAN, eth1 the provisioning LAN where the server's dnsmasq
# answers DHCP and TFTP and devices reach the outside through NAT out of eth0.
#
#   lxc/setup-network-boot-on-lxc.sh [--wan IF] [--lan IF] [--address CIDR] [--dry-run] …
#   lxc/setup-network-boot-on-lxc.sh --package cm4-provisioning_VERSION_ARCH.deb …
#
# From a checkout it writes a unit that runs the checkout as root. With --package it installs
# the Debian package (its own user, unit and /etc/cm4-provisioning/config.json), writes the
# netboot settings into that config file and adds only the root-run LAN and NAT steps to the
# packaged unit, as a drop-in.
# Runs as root inside the container (see NETWORK-BOOT-LXC.md beside it for the LXC host side).
# Every step looks at the current state first and prints `ok: … (already)` or `changed: …`, so a
# second run changes nothing; --dry-run prints the commands a run would execute and changes
# nothing. Bad options: one sentence on stderr and exit 2; a failed step: exit 1.
# shellcheck disable=SC3043 # `local`, which dash and busybox ash have
set -eu

PROG=setup-network-boot-on-lxc.sh
HERE=$(cd "$(dirname "$0")" && pwd -P)
SERVICE=cm4-provisioning.service
DEFAULT_UNIT_DIR=/etc/systemd/system
PACKAGES='dnsmasq-base nftables'
DEB_NAME=cm4-provisioning
DEB_DATA_DIR=/var/lib/cm4-provisioning
DROP_IN_NAME=lxc-network-boot.conf
WRITTEN_BY='# Written by lxc/setup-network-boot-on-lxc.sh'

usage() {
	cat <<EOF
Usage: $0 [options]

Sets up this container for network boot of CM4s: the LAN address, packages, IPv4 forwarding,
NAT with nftables, the data dir and the $SERVICE systemd unit. Idempotent.
With --package, the server is the Debian package's: it is installed, the netboot settings go
into its config file and the LAN and NAT steps into a drop-in for its unit.

Options:
  --wan IF                 interface with the internet (default: eth0)
  --lan IF                 provisioning LAN interface (default: eth1)
  --address CIDR           this server's address on the LAN (default: 10.20.50.1/24)
  --dhcp-range FROM,TO     addresses handed out (default: 10.20.50.100,10.20.50.200)
  --data-dir DIR           server data: database, images, golden.img
                           (default: /var/lib/cm4-provisioning)
  --app-dir DIR            the cm4-provisioning checkout (default: the one holding this script)
  --package FILE.deb       install this cm4-provisioning package and use its unit instead of
                           running a checkout (the data dir is then $DEB_DATA_DIR)
  --config-file FILE       with --package: the settings file the server and cm4prov read
                           (default: /etc/cm4-provisioning/config.json)
  --port N                 HTTP port of the server (default: 5000)
  --systemd-unit-dir DIR   where the unit goes (default: $DEFAULT_UNIT_DIR); systemctl is
                           only run for the default
  --nft-table NAME         nftables table (family inet) of the NAT rules (default: cm4prov)
  --sysctl-dir DIR         persistent sysctl file goes here (default: /etc/sysctl.d)
  --nft-persist-dir DIR    NAT rules file the unit loads at start (default: /etc/nftables.d)
  --no-install             do not install missing packages with apt-get
  --dry-run                print what would be done and change nothing
  --help                   this text
EOF
}

fail_usage() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- options

WAN=eth0
LAN=eth1
ADDRESS=10.20.50.1/24
DHCP_RANGE=10.20.50.100,10.20.50.200
DATA_DIR=/var/lib/cm4-provisioning
APP_DIR=$HERE/..
APP_DIR_GIVEN=0
DATA_DIR_GIVEN=0
PACKAGE_FILE=''
CONFIG_FILE=/etc/cm4-provisioning/config.json
PORT=5000
UNIT_DIR=$DEFAULT_UNIT_DIR
NFT_TABLE=cm4prov
SYSCTL_DIR=/etc/sysctl.d
NFT_PERSIST_DIR=/etc/nftables.d
INSTALL=1
DRY_RUN=0

while [ $# -gt 0 ]; do
	option=$1
	case $option in
		--*=*) value=${option#*=}; option=${option%%=*}; shift; set -- "$option" "$value" "$@" ;;
	esac
	case $1 in
		--wan | --lan | --address | --dhcp-range | --data-dir | --app-dir | --port | --systemd-unit-dir | \
			--nft-table | --sysctl-dir | --nft-persist-dir | --package | --config-file)
			[ $# -ge 2 ] || fail_usage "option $1 needs a value (see --help)."
			case $1 in
				--wan) WAN=$2 ;;
				--lan) LAN=$2 ;;
				--address) ADDRESS=$2 ;;
				--dhcp-range) DHCP_RANGE=$2 ;;
				--data-dir) DATA_DIR=$2; DATA_DIR_GIVEN=1 ;;
				--app-dir) APP_DIR=$2; APP_DIR_GIVEN=1 ;;
				--package) PACKAGE_FILE=$2 ;;
				--config-file) CONFIG_FILE=$2 ;;
				--port) PORT=$2 ;;
				--systemd-unit-dir) UNIT_DIR=$2 ;;
				--nft-table) NFT_TABLE=$2 ;;
				--sysctl-dir) SYSCTL_DIR=$2 ;;
				--nft-persist-dir) NFT_PERSIST_DIR=$2 ;;
			esac
			shift 2 ;;
		--no-install) INSTALL=0; shift ;;
		--dry-run) DRY_RUN=1; shift ;;
		--help | -h) usage; exit 0 ;;
		*) fail_usage "unknown option '$1' (see --help)." ;;
	esac
done

# ---------------------------------------------------------------- validation

# Dotted quad → integer, or status 1. Leading zeros are refused: some tools read them as octal.
ipv4_to_int() (
	case $1 in '' | *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
	IFS=.
	# shellcheck disable=SC2086 # split on the dots on purpose
	set -- $1
	[ $# -eq 4 ] || return 1
	n=0
	for octet; do
		case $octet in 0?* | ????*) return 1 ;; esac
		[ "$octet" -le 255 ] || return 1
		n=$((n * 256 + octet))
	done
	echo "$n"
)

int_to_ipv4() { echo "$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }

check_interface() {
	case $2 in
		'' | *[!A-Za-z0-9_.-]* | ????????????????*) fail_usage "invalid $1 '$2': an interface name is 1 to 15 letters, digits, '_', '.' or '-'." ;;
	esac
	ip link show dev "$2" >/dev/null 2>&1 ||
		fail_usage "invalid $1 '$2': there is no network interface of that name here (see ip link)."
}

# Paths go into a systemd unit and nft files: absolute, and without characters that either
# would interpret (spaces, %, $, quotes, backslashes).
check_path() {
	case $2 in
		/*) ;;
		*) fail_usage "invalid $1 '$2': use an absolute path." ;;
	esac
	case $2 in
		*[!A-Za-z0-9/._+@:,-]*) fail_usage "invalid $1 '$2': use only letters, digits and / . _ + @ : , - (it goes into a systemd unit)." ;;
	esac
}

check_interface --wan "$WAN"
check_interface --lan "$LAN"
[ "$WAN" != "$LAN" ] || fail_usage "invalid --lan '$LAN': it must be another interface than --wan."

case $ADDRESS in
	*/*) ;;
	*) fail_usage "invalid --address '$ADDRESS': expected an IPv4 address with a prefix length, e.g. 10.20.50.1/24." ;;
esac
LAN_IP=${ADDRESS%/*}
PREFIX_LEN=${ADDRESS#*/}
IP_INT=$(ipv4_to_int "$LAN_IP") ||
	fail_usage "invalid --address '$ADDRESS': '$LAN_IP' is not an IPv4 address (four numbers from 0 to 255, e.g. 10.20.50.1/24)."
case $PREFIX_LEN in
	[1-9] | [12][0-9] | 30) ;;
	*) fail_usage "invalid --address '$ADDRESS': the prefix length must be a whole number from 1 to 30, e.g. 10.20.50.1/24." ;;
esac
MASK=$(((0xFFFFFFFF << (32 - PREFIX_LEN)) & 0xFFFFFFFF))
NETWORK_INT=$((IP_INT & MASK))
BROADCAST_INT=$((NETWORK_INT | (~MASK & 0xFFFFFFFF)))
SUBNET=$(int_to_ipv4 "$NETWORK_INT")/$PREFIX_LEN
if [ "$IP_INT" -eq "$NETWORK_INT" ] || [ "$IP_INT" -eq "$BROADCAST_INT" ]; then
	fail_usage "invalid --address '$ADDRESS': that is the network or broadcast address of $SUBNET; use a host address such as $(int_to_ipv4 $((NETWORK_INT + 1)))/$PREFIX_LEN."
fi

case $DHCP_RANGE in
	*,*,*) RANGE_OK=0 ;;
	?*,?*) RANGE_OK=1 ;;
	*) RANGE_OK=0 ;;
esac
[ "$RANGE_OK" = 1 ] || fail_usage "invalid --dhcp-range '$DHCP_RANGE': expected FROM,TO, two addresses such as 10.20.50.100,10.20.50.200."
RANGE_FROM=${DHCP_RANGE%,*}
RANGE_TO=${DHCP_RANGE#*,}
for bound in "$RANGE_FROM" "$RANGE_TO"; do
	bound_int=$(ipv4_to_int "$bound") ||
		fail_usage "invalid --dhcp-range '$DHCP_RANGE': '$bound' is not an IPv4 address."
	if [ $((bound_int & MASK)) -ne "$NETWORK_INT" ] || [ "$bound_int" -eq "$NETWORK_INT" ] || [ "$bound_int" -eq "$BROADCAST_INT" ]; then
		fail_usage "invalid --dhcp-range '$DHCP_RANGE': $bound is not a host address inside $SUBNET, the subnet of --address."
	fi
done
FROM_INT=$(ipv4_to_int "$RANGE_FROM")
TO_INT=$(ipv4_to_int "$RANGE_TO")
[ "$FROM_INT" -le "$TO_INT" ] || fail_usage "invalid --dhcp-range '$DHCP_RANGE': $RANGE_FROM comes after $RANGE_TO."
[ "$IP_INT" -lt "$FROM_INT" ] || [ "$IP_INT" -gt "$TO_INT" ] ||
	fail_usage "invalid --dhcp-range '$DHCP_RANGE': it holds the server's own address $LAN_IP."

case $PORT in
	[1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9]) [ "$PORT" -le 65535 ] || PORT_OK=0 ;;
	*) PORT_OK=0 ;;
esac
[ "${PORT_OK:-1}" = 1 ] || fail_usage "invalid --port '$PORT': expected a whole number from 1 to 65535."

case $NFT_TABLE in
	[A-Za-z]*) ;;
	*) NFT_TABLE_BAD=1 ;;
esac
case $NFT_TABLE in
	*[!A-Za-z0-9_]* | ?????????????????????????????????*) NFT_TABLE_BAD=1 ;;
esac
[ -z "${NFT_TABLE_BAD:-}" ] || fail_usage "invalid --nft-table '$NFT_TABLE': use a letter then letters, digits or '_' (at most 32)."

if [ -n "$PACKAGE_FILE" ]; then
	[ "$APP_DIR_GIVEN" = 0 ] || fail_usage "invalid --app-dir '$APP_DIR': with --package the server is the package's, not a checkout."
	[ -f "$PACKAGE_FILE" ] || fail_usage "invalid --package '$PACKAGE_FILE': no such file."
	command -v dpkg-deb >/dev/null 2>&1 || fail_usage "invalid --package '$PACKAGE_FILE': dpkg-deb is missing (is this Debian?)."
	PACKAGE_FILE=$(cd "$(dirname "$PACKAGE_FILE")" && pwd -P)/$(basename "$PACKAGE_FILE")
	check_path --package "$PACKAGE_FILE"
	deb_name=$(dpkg-deb --field "$PACKAGE_FILE" Package 2>/dev/null) ||
		fail_usage "invalid --package '$PACKAGE_FILE': dpkg-deb cannot read it as a Debian package."
	[ "$deb_name" = "$DEB_NAME" ] || fail_usage "invalid --package '$PACKAGE_FILE': it is the package '$deb_name', not $DEB_NAME."
	PACKAGE_VERSION=$(dpkg-deb --field "$PACKAGE_FILE" Version)
	# The unit's StateDirectory= and the package's user own this folder; another one would need
	# the unit and cm4prov told separately. A bind mount onto it keeps the data elsewhere.
	if [ "$DATA_DIR_GIVEN" = 1 ] && [ "$(printf '%s\n' "$DATA_DIR" | sed 's:/*$::')" != "$DEB_DATA_DIR" ]; then
		fail_usage "invalid --data-dir '$DATA_DIR': with --package the data dir is $DEB_DATA_DIR (bind-mount another folder there)."
	fi
	check_path --config-file "$CONFIG_FILE"
else
	[ -d "$APP_DIR" ] || fail_usage "invalid --app-dir '$APP_DIR': no such directory."
	APP_DIR=$(cd "$APP_DIR" && pwd -P)
	[ -f "$APP_DIR/bin/cm4prov.js" ] || fail_usage "invalid --app-dir '$APP_DIR': it holds no bin/cm4prov.js (expected a cm4-provisioning checkout)."
	check_path --app-dir "$APP_DIR"
fi
check_path --data-dir "$DATA_DIR"
check_path --systemd-unit-dir "$UNIT_DIR"
check_path --sysctl-dir "$SYSCTL_DIR"
check_path --nft-persist-dir "$NFT_PERSIST_DIR"
strip_slash() { case $1 in /) echo / ;; *) printf '%s\n' "$1" | sed 's:/*$::' ;; esac; }
DATA_DIR=$(strip_slash "$DATA_DIR")
UNIT_DIR=$(strip_slash "$UNIT_DIR")
SYSCTL_DIR=$(strip_slash "$SYSCTL_DIR")
NFT_PERSIST_DIR=$(strip_slash "$NFT_PERSIST_DIR")

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
	die "run this as root: it changes interfaces, sysctls, nftables and systemd units (--dry-run only shows the steps)."
fi

UNIT_FILE=$UNIT_DIR/$SERVICE
DROP_IN_FILE=$UNIT_DIR/$SERVICE.d/$DROP_IN_NAME
SYSCTL_FILE=$SYSCTL_DIR/90-cm4-provisioning.conf
NFT_FILE=$NFT_PERSIST_DIR/$NFT_TABLE.nft
PUBLIC_URL=http://$LAN_IP:$PORT

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cm4prov-setup.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- reporting and doing

ok() { printf 'ok: %s (already)\n' "$1"; }
skipped() { printf 'skipped: %s\n' "$1"; }
note() { printf 'note: %s\n' "$1"; }

# A change is announced by `changing WHAT`, done with `run` (a dry run only prints the command)
# and confirmed by `changed`.
CHANGING=''
changing() {
	CHANGING=$1
	if [ "$DRY_RUN" = 1 ]; then printf 'would change: %s\n' "$1"; fi
}
changed() {
	if [ "$DRY_RUN" = 0 ]; then printf 'changed: %s\n' "$CHANGING"; fi
}

# The command as a shell would read it back: arguments with special characters single-quoted.
quote_command() {
	local out='' arg
	for arg; do
		case $arg in
			'' | *[!A-Za-z0-9_./=:,+@%-]*) arg="'$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'" ;;
		esac
		out="$out${out:+ }$arg"
	done
	printf '%s\n' "$out"
}

run() {
	if [ "$DRY_RUN" = 1 ]; then
		printf '    %s\n' "$(quote_command "$@")"
		return 0
	fi
	"$@" || die "$CHANGING: '$(quote_command "$@")' failed."
}

# install_file DEST WHAT < content: writes DEST (mode 0644, atomically by rename) only when its
# content differs. Status 0 when it changed (or would), 1 when it was already right.
install_file() {
	local dest="$1" what="$2" new="$WORK/new"
	cat >"$new"
	if [ -f "$dest" ] && cmp -s "$new" "$dest"; then
		ok "$what"
		return 1
	fi
	changing "$what"
	if [ "$DRY_RUN" = 1 ]; then
		printf '    write %s (mode 0644):\n' "$dest"
		sed 's/^/    | /' "$new"
		return 0
	fi
	mkdir -p "$(dirname "$dest")" || die "$what: cannot create the directory of $dest."
	if ! { cp "$new" "$dest.tmp.$$" && chmod 0644 "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"; }; then
		rm -f "$dest.tmp.$$"
		die "$what: cannot write $dest."
	fi
	changed
	return 0
}


# ---------------------------------------------------------------- 1. LAN address

lan_has_address() {
	ip -o -4 addr show dev "$LAN" | awk -v want="$ADDRESS" '$3 == "inet" && $4 == want { found = 1 } END { exit !found }'
}
lan_is_up() {
	ip -o link show dev "$LAN" | awk '{ exit !($3 ~ /[<,]UP[,>]/) }'
}

step_lan_address() {
	local others
	if lan_has_address && lan_is_up; then
		ok "$LAN is up with $ADDRESS"
	else
		changing "$LAN is up with $ADDRESS"
		run ip link set dev "$LAN" up
		# replace, not add: a run after a partial one must not fail on (or duplicate) the address
		run ip addr replace "$ADDRESS" brd + dev "$LAN"
		changed
	fi
	others=$(ip -o -4 addr show dev "$LAN" | awk -v want="$ADDRESS" '$3 == "inet" && $4 != want { printf " %s", $4 }')
	if [ -n "$others" ]; then note "$LAN also has$others (left alone)"; fi
}

# ---------------------------------------------------------------- 2. packages

package_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

step_packages() {
	local package missing=''
	if ! command -v dpkg-query >/dev/null 2>&1; then
		skipped "packages $PACKAGES: no dpkg-query here (not Debian?); install them by hand"
		return 0
	fi
	for package in $PACKAGES; do
		package_installed "$package" || missing="$missing $package"
	done
	if [ -z "$missing" ]; then
		ok "packages $PACKAGES installed"
	elif [ "$INSTALL" = 0 ]; then
		skipped "installing$missing (--no-install)"
	else
		changing "packages$missing installed"
		export DEBIAN_FRONTEND=noninteractive
		# shellcheck disable=SC2086 # the package list split into words on purpose
		if [ "$DRY_RUN" = 1 ]; then
			run apt-get install -y --no-install-recommends $missing
		elif ! apt-get install -y --no-install-recommends $missing; then
			# a container made from an image often has no package lists yet
			run apt-get update
			run apt-get install -y --no-install-recommends $missing
		fi
		changed
	fi
	if package_installed dnsmasq; then
		note "the dnsmasq package (a system service) is installed: its own DHCP server would compete with the server's on $LAN; consider 'systemctl disable --now dnsmasq'"
	fi
}

# With --package: the .deb itself, when that version is not installed yet. apt-get resolves its
# dependencies (nodejs 20 must come from a source that has it: Debian 12's own is 18).
PACKAGE_CHANGED=0
step_package_deb() {
	local what="package $DEB_NAME $PACKAGE_VERSION installed"
	if [ "$(dpkg-query -W -f='${Status} ${Version}' "$DEB_NAME" 2>/dev/null || true)" = "install ok installed $PACKAGE_VERSION" ]; then
		ok "$what"
	elif [ "$INSTALL" = 0 ]; then
		skipped "installing $DEB_NAME $PACKAGE_VERSION from $PACKAGE_FILE (--no-install)"
	else
		changing "$what"
		export DEBIAN_FRONTEND=noninteractive
		run apt-get install -y "$PACKAGE_FILE"
		PACKAGE_CHANGED=1
		changed
	fi
}

# ---------------------------------------------------------------- 3. IPv4 forwarding

step_forwarding() {
	if [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]; then
		ok "IPv4 forwarding is on: net.ipv4.ip_forward = 1"
	else
		changing "IPv4 forwarding is on: net.ipv4.ip_forward = 1"
		# /proc/sys/net belongs to the container's own network namespace (writable under LXC's
		# proc:mixed), so this changes the container only, not the LXC host.
		if command -v sysctl >/dev/null 2>&1; then
			run sysctl -q -w net.ipv4.ip_forward=1
		elif [ "$DRY_RUN" = 1 ]; then
			printf '    echo 1 > /proc/sys/net/ipv4/ip_forward\n'
		else
			echo 1 >/proc/sys/net/ipv4/ip_forward || die "cannot write /proc/sys/net/ipv4/ip_forward."
		fi
		changed
	fi
	install_file "$SYSCTL_FILE" "IPv4 forwarding at boot: $SYSCTL_FILE" <<EOF || true
# Written by lxc/setup-network-boot-on-lxc.sh (cm4-provisioning); re-run it rather than editing.
# Devices on the provisioning LAN ($LAN, $SUBNET) reach the outside through NAT out of $WAN.
net.ipv4.ip_forward = 1
EOF
}

# ---------------------------------------------------------------- 4. NAT with nftables

# The table exactly as `nft list table` prints it (nftables 1.0), so that comparing the two tells
# whether the live table is already right. Only this table is ever created or replaced.
nft_table() {
	cat <<EOF
table inet $NFT_TABLE {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "$WAN" ip saddr $SUBNET masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "$LAN" oifname "$WAN" ip saddr $SUBNET accept
		iifname "$WAN" oifname "$LAN" ct state established,related accept
		iifname "$WAN" oifname "$LAN" drop
	}
}
EOF
}

# `nft -f` runs a file as one transaction: the table is created if missing, deleted and made anew,
# all or nothing. The same file is loaded by the unit at every start (ExecStartPre), which is how
# the rules come back after a reboot without touching /etc/nftables.conf.
nft_file() {
	cat <<EOF
#!/usr/sbin/nft -f
# Written by lxc/setup-network-boot-on-lxc.sh (cm4-provisioning); re-run it rather than editing.
# NAT for the provisioning LAN: $SUBNET on $LAN reaches the outside masqueraded out of $WAN.
# Forwarding LAN -> WAN and the replies back are accepted; connections opened from $WAN into
# the LAN are dropped. Loaded by $SERVICE at start; other tables are never touched.
table inet $NFT_TABLE
delete table inet $NFT_TABLE
EOF
	nft_table
}

normalize() { sed -e 's/^[[:space:]]*//' -e '/^$/d'; }

step_nat() {
	local what="nftables table inet $NFT_TABLE: masquerade $SUBNET out of $WAN"
	nft_table | normalize >"$WORK/want.nft"
	nft_file >"$WORK/apply.nft"
	# The file first: the live table is then loaded from it, exactly as the unit does at start.
	install_file "$NFT_FILE" "NAT rules at boot: $NFT_FILE, loaded by $SERVICE" <"$WORK/apply.nft" || true
	if command -v nft >/dev/null 2>&1; then
		if nft list table inet "$NFT_TABLE" 2>/dev/null | normalize >"$WORK/have.nft" && cmp -s "$WORK/want.nft" "$WORK/have.nft"; then
			ok "$what"
		else
			changing "$what"
			if [ "$DRY_RUN" = 1 ]; then
				printf '    nft -f %s\n' "$NFT_FILE"
			else
				nft -f "$NFT_FILE" || die "$what: 'nft -f $NFT_FILE' was refused (are the nf_tables, nft_chain_nat and nft_masq modules loaded on the LXC host?)."
			fi
			changed
		fi
	elif [ "$DRY_RUN" = 1 ]; then
		changing "$what"
		printf '    nft -f %s\n' "$NFT_FILE"
	else
		die "nft is not installed (Debian package nftables): install it or run without --no-install."
	fi
}

# ---------------------------------------------------------------- 5. data dir

step_data_dir() {
	if [ -n "$PACKAGE_FILE" ] && [ ! -d "$DATA_DIR" ]; then
		# postinst makes it (owned by the package's user), and the unit's StateDirectory= at start.
		skipped "data dir $DATA_DIR: the package makes it"
	elif [ -d "$DATA_DIR" ]; then
		ok "data dir $DATA_DIR"
	elif [ -e "$DATA_DIR" ]; then
		die "data dir $DATA_DIR exists but is not a directory."
	else
		changing "data dir $DATA_DIR, created with mode 0750"
		run mkdir -p -m 0750 "$DATA_DIR"
		changed
	fi
	if [ ! -f "$DATA_DIR/golden.img" ]; then
		note "no $DATA_DIR/golden.img yet: put the default image there (or bind-mount it from the LXC host) or add one with 'cm4prov image add'"
	fi
}

# ---------------------------------------------------------------- 6. settings (--package)

# The netboot settings go into the config file the packaged unit names (CM4PROV_CONFIG), which
# cm4prov also reads: the server and the commands run beside it agree on port and public URL.
# Other settings in it are kept; the result is written only when it differs.
CONFIG_CHANGED=0
merged_config() {
	# shellcheck disable=SC2016 # JavaScript, not shell
	node -e '
		const fs = require("fs");
		const [file, base, ...pairs] = process.argv.slice(1);
		const from = fs.existsSync(file) ? file : base;
		const settings = from ? JSON.parse(fs.readFileSync(from, "utf8")) : {};
		for (let i = 0; i < pairs.length; i += 2) {
			const key = pairs[i];
			const twin = key.replace(/-([a-z])/g, (_, c) => c.toUpperCase()); // dataDir for data-dir
			if (twin !== key) delete settings[twin];
			settings[key] = key === "port" ? Number(pairs[i + 1]) : pairs[i + 1];
		}
		process.stdout.write(JSON.stringify(settings, null, 2) + "\n");
	' "$CONFIG_FILE" "$1" port "$PORT" netboot-interface "$LAN" netboot-address "$ADDRESS" \
		dhcp-range "$DHCP_RANGE" public-url "$PUBLIC_URL"
}

step_config() {
	local what="netboot settings in $CONFIG_FILE" base=''
	if ! command -v node >/dev/null 2>&1; then
		if [ "$DRY_RUN" = 1 ] || [ "$INSTALL" = 0 ]; then
			skipped "$what: set port $PORT, netboot-interface $LAN, netboot-address $ADDRESS, dhcp-range $DHCP_RANGE, public-url $PUBLIC_URL once the package (and its nodejs) is installed"
			return 0
		fi
		die "$what: node is missing although $DEB_NAME is installed."
	fi
	# Before the package is installed, its own config file is the starting point.
	if [ ! -f "$CONFIG_FILE" ]; then
		base=$WORK/packaged-config.json
		dpkg-deb --fsys-tarfile "$PACKAGE_FILE" | tar -xOf - ./etc/cm4-provisioning/config.json >"$base" 2>/dev/null || base=''
	fi
	merged_config "$base" >"$WORK/config.json" || die "$what: cannot read $CONFIG_FILE as JSON."
	if install_file "$CONFIG_FILE" "$what" <"$WORK/config.json"; then CONFIG_CHANGED=1; fi
}

# ---------------------------------------------------------------- 7. systemd unit

unit_file() {
	cat <<EOF
# Written by lxc/setup-network-boot-on-lxc.sh (cm4-provisioning); re-run it rather than editing
# (or add a drop-in with 'systemctl edit cm4-provisioning').
[Unit]
Description=CM4 provisioning server (HTTP :$PORT, DHCP and TFTP on $LAN)
Documentation=file://$APP_DIR/lxc/NETWORK-BOOT-LXC.md
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
WorkingDirectory=$APP_DIR
# The LAN address and the NAT table come back at every start (both idempotent), so a reboot of
# the container needs nothing else. IPv4 forwarding comes from $SYSCTL_FILE.
ExecStartPre=/sbin/ip link set dev $LAN up
ExecStartPre=/sbin/ip addr replace $ADDRESS brd + dev $LAN
ExecStartPre=/usr/sbin/nft -f $NFT_FILE
ExecStart=/usr/bin/env node $APP_DIR/bin/cm4prov.js serve --host 0.0.0.0 --port $PORT --data-dir $DATA_DIR --netboot-interface $LAN --netboot-address $ADDRESS --dhcp-range $DHCP_RANGE --public-url $PUBLIC_URL
Restart=on-failure
RestartSec=5
# Runs as root. The dnsmasq it starts needs CAP_NET_BIND_SERVICE for the DHCP (67) and TFTP (69)
# ports, CAP_NET_RAW for raw sockets (the ICMP check that an address is free before offering it)
# and CAP_NET_ADMIN for the ARP entry that lets a reply reach a client with no address yet and
# to bind to $LAN. As another user, add:
#   User=cm4prov
#   AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW
# (the ExecStartPre lines then need a '+' prefix to run as root).

[Install]
WantedBy=multi-user.target
EOF
}

# With --package: added to the packaged unit. Its server runs as the package's user with the
# network capabilities dnsmasq needs; the address and NAT steps need root: the '+' prefix.
drop_in_file() {
	cat <<EOF
$WRITTEN_BY (cm4-provisioning); re-run it rather than editing.
# Adds to the packaged $SERVICE what netboot from this container needs at every start: the
# LAN address and the NAT table (both idempotent, run as root). IPv4 forwarding comes from
# $SYSCTL_FILE; the netboot settings are in $CONFIG_FILE.
[Unit]
Description=CM4 provisioning server (HTTP :$PORT, DHCP and TFTP on $LAN)

[Service]
ExecStartPre=+/sbin/ip link set dev $LAN up
ExecStartPre=+/sbin/ip addr replace $ADDRESS brd + dev $LAN
ExecStartPre=+/usr/sbin/nft -f $NFT_FILE
EOF
}

# remove_ours FILE WHY: deletes a file this script wrote (its first line says so) that the other
# mode replaces. Status 0 when it was there (and is, or would be, gone).
remove_ours() {
	[ -f "$1" ] || return 1
	head -n 1 "$1" | grep -q "^$WRITTEN_BY" ||
		die "$1 was not written by this script and would $2: move it away first."
	changing "removed $1 (it would $2)"
	run rm -f "$1"
	changed
}

SERVICE_STATE='not managed here'
step_unit() {
	local unit_changed=0 where
	if [ -n "$PACKAGE_FILE" ]; then
		if remove_ours "$UNIT_FILE" "hide the packaged unit"; then unit_changed=1; fi
		drop_in_file >"$WORK/unit"
		if install_file "$DROP_IN_FILE" "systemd drop-in $DROP_IN_FILE" <"$WORK/unit"; then unit_changed=1; fi
		where="drop-in written to $DROP_IN_FILE"
		if [ "$DRY_RUN" = 1 ] && [ "$unit_changed" = 1 ]; then where="drop-in would be written to $DROP_IN_FILE"; fi
		if [ "$PACKAGE_CHANGED" = 1 ] || [ "$CONFIG_CHANGED" = 1 ]; then unit_changed=1; fi
	else
		if remove_ours "$DROP_IN_FILE" "add the package's steps to the checkout's unit"; then unit_changed=1; fi
		unit_file >"$WORK/unit"
		if install_file "$UNIT_FILE" "systemd unit $UNIT_FILE" <"$WORK/unit"; then unit_changed=1; fi
		where="unit written to $UNIT_FILE"
		if [ "$DRY_RUN" = 1 ] && [ "$unit_changed" = 1 ]; then where="unit would be written to $UNIT_FILE"; fi
	fi
	if [ ! -d /run/systemd/system ]; then
		skipped "systemd is not running ($where)"
		SERVICE_STATE="not started: systemd is not running ($where)"
		return 0
	fi
	if [ "$UNIT_DIR" != "$DEFAULT_UNIT_DIR" ]; then
		skipped "systemctl daemon-reload and enable --now: --systemd-unit-dir is not $DEFAULT_UNIT_DIR ($where)"
		SERVICE_STATE="not started: $where"
		return 0
	fi
	if [ "$unit_changed" = 1 ]; then
		changing "systemd reloaded its units"
		run systemctl daemon-reload
		changed
	fi
	if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null && systemctl is-active --quiet "$SERVICE"; then
		if [ "$unit_changed" = 1 ]; then
			changing "$SERVICE restarted with the new unit or settings"
			run systemctl restart "$SERVICE"
			changed
		else
			ok "$SERVICE enabled and running"
		fi
	else
		changing "$SERVICE enabled and started"
		run systemctl enable --now "$SERVICE"
		changed
	fi
	SERVICE_STATE="$(systemctl is-active "$SERVICE" 2>/dev/null || true), $(systemctl is-enabled "$SERVICE" 2>/dev/null || true)"
}

# ---------------------------------------------------------------- 8. summary

summary() {
	local addresses link forward nat route cli=cm4prov told=''
	# The packaged cm4prov finds port and data dir in the config file; a checkout's is told.
	if [ -z "$PACKAGE_FILE" ]; then
		cli="node $APP_DIR/bin/cm4prov.js"
		told=" --data-dir $DATA_DIR --server http://127.0.0.1:$PORT"
	fi
	addresses=$(ip -o -4 addr show dev "$LAN" | awk '$3 == "inet" { printf "%s%s", sep, $4; sep = " " }')
	link=down
	if lan_is_up; then link=up; fi
	forward=$(cat /proc/sys/net/ipv4/ip_forward)
	if command -v nft >/dev/null 2>&1 && nft list table inet "$NFT_TABLE" 2>/dev/null | normalize | cmp -s - "$WORK/want.nft"; then
		nat="table inet $NFT_TABLE masquerades $SUBNET out of $WAN"
	elif command -v nft >/dev/null 2>&1 && nft list table inet "$NFT_TABLE" >/dev/null 2>&1; then
		nat="table inet $NFT_TABLE exists but differs from what this script writes"
	else
		nat="no table inet $NFT_TABLE"
	fi
	route=$(ip -4 route show default dev "$WAN" 2>/dev/null | head -n 1)
	cat <<EOF

summary$( [ "$DRY_RUN" = 0 ] || printf ' (as it is now: a dry run changed nothing)'):
  LAN       $LAN (link $link): ${addresses:-no IPv4 address}
  WAN       $WAN: ${route:-no default route (devices on the LAN will not reach the outside)}
  forward   net.ipv4.ip_forward = $forward
  NAT       $nat
  service   $SERVICE: $SERVICE_STATE
check it:
  curl 'http://$LAN_IP:$PORT/api/device-action-poll?mac=dc:a6:32:00:00:01'   # {"action":"none"}
  $cli netboot events MAC$told   # a booting CM4's DHCP and TFTP stages
  journalctl -u cm4-provisioning -f     # the server's own log
  ip addr show dev $LAN; sysctl net.ipv4.ip_forward; nft list table inet $NFT_TABLE
EOF
}

if [ "$DRY_RUN" = 1 ]; then echo "dry run: nothing is changed"; fi
step_lan_address
step_packages
if [ -n "$PACKAGE_FILE" ]; then step_package_deb; fi
step_forwarding
step_nat
step_data_dir
if [ -n "$PACKAGE_FILE" ]; then step_config; fi
step_unit
summary
