#!/bin/sh
# Usage: scripts/apt-install.sh [--no-service-start] LABEL PACKAGE...
# Installs the Debian packages of that list that are missing, from the machine's own apt
# sources (an `apt-get update` only when the first try fails). Idempotent. With
# --no-service-start a package's service is not started by its post-install (policy-rc.d,
# honoured by invoke-rc.d): for daemons whose binary is all we need.
set -eu

no_service_start=''
if [ "${1:-}" = --no-service-start ]; then
	no_service_start=yes
	shift
fi
label=$1
shift

missing=''
for package in "$@"; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -z "$missing" ]; then
	echo "$label dependencies: all installed ($*)"
	exit 0
fi

as_root=''
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "need root (or sudo) to install:$missing" >&2; exit 1; }
	as_root=sudo
fi
echo "$label dependencies: installing$missing"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
added_policy=''
if [ -n "$no_service_start" ] && [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
	$as_root chmod 755 "$policy"
	added_policy=yes
fi
status=0
# shellcheck disable=SC2086 # package list split into words on purpose
$as_root apt-get install -y --no-install-recommends $missing || {
	$as_root apt-get update
	$as_root apt-get install -y --no-install-recommends $missing
} || status=$?
[ -z "$added_policy" ] || $as_root rm -f "$policy"
exit "$status"
