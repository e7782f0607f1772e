#!/bin/sh
# provisioning-client.sh: runs on a netbooted CM4 (busybox ash + curl) and does what the
# provisioning server asks: write an image onto the eMMC (deploy) or upload the eMMC (backup).
#
#   register  POST /api/register-device            (mac, ip, serial, model, storage_bytes)
#   poll      GET  /api/device-action-poll?mac=…&format=env&wait=N   (long-poll)
#   deploy    GET  job image URL  → dd onto TARGET_DEVICE, read back, sha256 → result
#   backup    dd TARGET_DEVICE → PUT job upload URL (sha256 computed on the way) → result
#
# Settings (environment; the kernel command line can give provisioning_server=):
#   PROVISIONING_SERVER  http://10.20.50.1:5000   (else provisioning_server= on /proc/cmdline)
#   TARGET_DEVICE        /dev/mmcblk0             (a block device, or a file standing in for one)
#   DEVICE_MAC           the first wired interface's MAC
#   POLL_INTERVAL        5    seconds between polls when the server does not hold the poll
#   POLL_WAIT            30   seconds the server may hold a poll open (long-poll)
#   PROGRESS_INTERVAL    2    seconds between progress reports
#   TRANSFER_RETRIES     5    attempts per transfer before the job fails (network drops)
#   RETRY_MAX_DELAY      30   longest back-off between retries, seconds
#   RATE_LIMIT           (none) cap per transfer, curl --limit-rate syntax (e.g. 20M), to share a LAN
#   DEVICE_SERIAL, DEVICE_MODEL   override what is read from the device tree / cpuinfo
#
# Exit status: 0 after a successful action, 1 when the job failed, 2 on a bad setting.
# Uses only POSIX sh as busybox ash runs it (plus `local`, which ash and dash have), curl, and
# busybox applets.
# shellcheck disable=SC3043

set -eu

CLIENT_VERSION=0.2.0
CMDLINE_FILE=${PROVISIONING_CMDLINE:-/proc/cmdline}
DD_BLOCK=4M

log() { printf '%s provisioning: %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }
die() { log "ERROR: $*"; exit "${2:-1}"; }

# ---------------------------------------------------------------- settings and facts

cmdline_value() { # key → value of key= on the kernel command line, if any
	[ -r "$CMDLINE_FILE" ] || return 0
	tr ' ' '\n' < "$CMDLINE_FILE" | sed -n "s/^$1=//p" | head -n 1
}

first_wired_interface() {
	local dir name
	for dir in /sys/class/net/*; do
		name=${dir##*/}
		[ "$name" = lo ] && continue
		[ -d "$dir/wireless" ] || [ -d "$dir/phy80211" ] && continue
		[ "$(cat "$dir/type" 2>/dev/null)" = 1 ] || continue
		[ -e "$dir/device" ] || continue # physical NICs only, not bridges or veths
		echo "$name"
		return 0
	done
	return 1
}

interface_with_mac() {
	local dir
	for dir in /sys/class/net/*; do
		if [ "$(cat "$dir/address" 2>/dev/null)" = "$1" ]; then echo "${dir##*/}"; return 0; fi
	done
	return 1
}

ipv4_of() { # interface → its first IPv4 address, if any
	ip -4 -o addr show dev "$1" 2>/dev/null | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n 1
}

device_tree_text() { [ -r "/proc/device-tree/$1" ] && tr -d '\000' < "/proc/device-tree/$1"; }

cpuinfo_field() { sed -n "s/^$1[[:space:]]*: *//p" /proc/cpuinfo 2>/dev/null | head -n 1; }

target_size() {
	if [ -b "$TARGET_DEVICE" ]; then
		blockdev --getsize64 "$TARGET_DEVICE"
	elif [ -f "$TARGET_DEVICE" ]; then
		stat -L -c %s "$TARGET_DEVICE"
	else
		return 1
	fi
}

load_settings() {
	SERVER=${PROVISIONING_SERVER:-$(cmdline_value provisioning_server)}
	[ -n "$SERVER" ] || die "no server: set PROVISIONING_SERVER or provisioning_server= on the kernel command line" 2
	SERVER=${SERVER%/}
	TARGET_DEVICE=${TARGET_DEVICE:-$(cmdline_value target_device)}
	TARGET_DEVICE=${TARGET_DEVICE:-/dev/mmcblk0}
	POLL_INTERVAL=${POLL_INTERVAL:-5}
	POLL_WAIT=${POLL_WAIT:-30}
	PROGRESS_INTERVAL=${PROGRESS_INTERVAL:-2}
	TRANSFER_RETRIES=${TRANSFER_RETRIES:-5}
	RETRY_MAX_DELAY=${RETRY_MAX_DELAY:-30}
	TRANSFER_OPTIONS="--connect-timeout 10 --speed-limit 1024 --speed-time 60${RATE_LIMIT:+ --limit-rate $RATE_LIMIT}"

	if [ -n "${DEVICE_MAC:-}" ]; then
		MAC=$(echo "$DEVICE_MAC" | tr 'A-F-' 'a-f:')
		IFACE=$(interface_with_mac "$MAC" || true)
	else
		IFACE=$(first_wired_interface) || die "no wired network interface found; set DEVICE_MAC" 2
		MAC=$(cat "/sys/class/net/$IFACE/address")
	fi
	DEVICE_IP=${DEVICE_IP:-}
	[ -n "$DEVICE_IP" ] || [ -z "$IFACE" ] || DEVICE_IP=$(ipv4_of "$IFACE")
	SERIAL=${DEVICE_SERIAL:-$(device_tree_text serial-number || cpuinfo_field Serial)}
	MODEL=${DEVICE_MODEL:-$(device_tree_text model || cpuinfo_field Model)}
	TARGET_BYTES=$(target_size) || die "target $TARGET_DEVICE is neither a block device nor a file" 2
}

# ---------------------------------------------------------------- HTTP (the one place that talks to the server)

# http METHOD URL [curl options…]: the reply body goes to $WORK/body and the status to HTTP_STATUS.
# Returns 0 for 2xx, 1 for what is worth retrying (no connection, 5xx, 408, 429), 2 for a refusal (4xx).
http() {
	local method="$1" url="$2" rc=0
	shift 2
	HTTP_STATUS=$(curl -sS -X "$method" -o "$WORK/body" -w '%{http_code}' --connect-timeout 10 "$@" "$url" 2>"$WORK/curl.err") || rc=$?
	classify_reply "$rc"
}

# classify_reply CURL_EXIT: sets HTTP_ERROR and returns 0 (2xx), 1 (worth retrying) or 2 (refused).
classify_reply() {
	if [ "$1" -ne 0 ]; then
		HTTP_ERROR="curl exit $1: $(cat "$WORK/curl.err" 2>/dev/null)"
		return 1
	fi
	case $HTTP_STATUS in
		2??) return 0 ;;
		408 | 429 | 5??) HTTP_ERROR="HTTP $HTTP_STATUS: $(reply_message)"; return 1 ;;
		*) HTTP_ERROR="HTTP $HTTP_STATUS: $(reply_message)"; return 2 ;;
	esac
}

# The server's error sentence (JSON "message"), or the start of the body.
reply_message() {
	local message
	message=$(json_field message)
	[ -n "$message" ] || message=$(head -c 200 "$WORK/body" 2>/dev/null)
	printf '%s' "$message"
}

json_field() { # name → value of "name":"…" or "name":123 in the reply body (\" shown as ')
	sed -e "s/\\\\\"/'/g" "$WORK/body" 2>/dev/null |
		sed -n -e "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" -e "t" -e "s/.*\"$1\":\([0-9a-z.]*\).*/\1/p" | head -n 1
}

# Retries a call while it fails for reasons worth retrying, with capped exponential back-off.
# Gives up after $1 attempts (0 = never); returns the call's last status.
with_retries() {
	local attempts="$1" what="$2" tried=0 delay=1 rc
	shift 2
	while :; do
		rc=0
		"$@" || rc=$?
		[ "$rc" -eq 1 ] || return "$rc"
		tried=$((tried + 1))
		if [ "$attempts" -gt 0 ] && [ "$tried" -ge "$attempts" ]; then return 1; fi
		log "$what failed ($HTTP_ERROR); retrying in ${delay}s"
		sleep "$delay"
		delay=$((delay * 2))
		[ "$delay" -le "$RETRY_MAX_DELAY" ] || delay=$RETRY_MAX_DELAY
	done
}

register() {
	http POST "$SERVER/api/register-device" --max-time 30 \
		--data-urlencode "mac=$MAC" --data-urlencode "ip=$DEVICE_IP" \
		--data-urlencode "serial=$SERIAL" --data-urlencode "model=$MODEL" \
		--data-urlencode "storage_bytes=$TARGET_BYTES" --data-urlencode "client_version=$CLIENT_VERSION"
}

poll() {
	http GET "$SERVER/api/device-action-poll?mac=$MAC&format=env&wait=$POLL_WAIT" --max-time $((POLL_WAIT + 30))
}

# Reads the KEY='value' lines of a poll reply into A_<KEY> variables, without eval.
read_action() {
	local line key value
	A_ACTION='' A_JOB='' A_URL='' A_UPLOAD_URL='' A_PROGRESS_URL='' A_RESULT_URL='' A_SIZE='' A_SHA256='' A_IMAGE='' A_MESSAGE=''
	while IFS= read -r line || [ -n "$line" ]; do
		key=${line%%=*}
		value=${line#*=}
		value=${value#\'}
		value=${value%\'}
		value=$(printf '%s' "$value" | sed "s/'\\\\''/'/g")
		case $key in
			ACTION) A_ACTION=$value ;; JOB) A_JOB=$value ;; URL) A_URL=$value ;;
			UPLOAD_URL) A_UPLOAD_URL=$value ;; PROGRESS_URL) A_PROGRESS_URL=$value ;;
			RESULT_URL) A_RESULT_URL=$value ;; SIZE) A_SIZE=$value ;; SHA256) A_SHA256=$value ;;
			IMAGE) A_IMAGE=$value ;; MESSAGE) A_MESSAGE=$value ;;
		esac
	done < "$WORK/body"
}

# report_progress PHASE BYTES: best effort, except that a job the server has ended stops us.
report_progress() {
	local rc=0
	http POST "$A_PROGRESS_URL" --max-time 10 --data-urlencode "phase=$1" \
		--data-urlencode "bytes_done=$2" --data-urlencode "mac=$MAC" || rc=$?
	if [ "$rc" -eq 2 ] && { [ "$HTTP_STATUS" = 410 ] || [ "$HTTP_STATUS" = 404 ]; }; then
		JOB_ENDED_BY_SERVER=$(reply_message)
		return 2
	fi
	return 0
}

send_result() { # status sha256 bytes error
	http POST "$A_RESULT_URL" --max-time 120 --data-urlencode "status=$1" --data-urlencode "sha256=$2" \
		--data-urlencode "bytes=$3" --data-urlencode "error=$4" --data-urlencode "mac=$MAC"
}

# Reports the outcome (retrying through server restarts) and turns the server's verdict into ours.
finish_job() { # status sha256 bytes error
	local rc=0 state
	with_retries 0 "reporting the result" send_result "$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		log "the server did not take the result: $HTTP_ERROR"
		return 1
	fi
	state=$(json_field state)
	if [ "$state" = ok ]; then
		log "job $A_JOB ok"
		return 0
	fi
	log "job $A_JOB ${state:-not accepted}: $(json_field error)"
	return 1
}

fail_job() { # message → report failure, exit 1
	log "job $A_JOB failed: $1"
	finish_job failed "" "" "$1" || true
	exit 1
}

# ---------------------------------------------------------------- progress of background transfers

# Byte position of a process's file descriptor: how far dd has read or written.
fd_position() { sed -n 's/^pos:[[:space:]]*//p' "/proc/$1/fdinfo/$2" 2>/dev/null || true; }

# True while PID runs (an exited child that is not reaped yet is a zombie, not running).
is_running() {
	local state
	state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

# Waits for PID while reporting PHASE progress from its fd FD; returns the process's exit status,
# or 3 when the server ended the job meanwhile (cancelled), after stopping the transfer.
watch_transfer() { # pid fd phase
	local pid="$1" fd="$2" phase="$3" ticks=0 pos rc=0
	while is_running "$pid"; do
		# Quarter-second ticks (busybox sleep takes fractions) so a short job is not kept waiting.
		sleep 0.25 2>/dev/null || sleep 1
		ticks=$((ticks + 1))
		[ $((ticks % (PROGRESS_INTERVAL * 4))) -eq 0 ] || continue
		pos=$(fd_position "$pid" "$fd")
		[ -n "$pos" ] || continue
		if ! report_progress "$phase" "$pos"; then
			log "the server ended job $A_JOB: $JOB_ENDED_BY_SERVER"
			kill_background
			return 3
		fi
	done
	wait "$pid" || rc=$?
	return "$rc"
}

# Remembers a background process (`cmd & track $!`) so that it is stopped with the client. The
# redirections must stay on the `cmd &` line: on a function call they would apply to this shell.
BACKGROUND=''
track() { BACKGROUND="$BACKGROUND $1"; LAST_PID=$1; }
kill_background() {
	local pid
	for pid in $BACKGROUND; do kill "$pid" 2>/dev/null || true; done
	BACKGROUND=''
}

# ---------------------------------------------------------------- deploy

# Writes the image from OFFSET on, resuming with a Range request after a network drop.
write_image() {
	local offset=0 attempt=0 curl_rc dd_rc written range curl_pid
	while [ "$offset" -lt "$A_SIZE" ]; do
		rm -f "$WORK/image.fifo" && mkfifo "$WORK/image.fifo"
		range=''
		[ "$offset" -eq 0 ] || range="--range $offset-"
		# shellcheck disable=SC2086 # option lists split into words on purpose
		curl -sS --fail $TRANSFER_OPTIONS $range \
			-D "$WORK/image.headers" -o "$WORK/image.fifo" -w '%{size_download}' "$A_URL" \
			>"$WORK/image.received" 2>"$WORK/curl.err" &
		track $!
		curl_pid=$LAST_PID
		dd if="$WORK/image.fifo" of="$TARGET_DEVICE" bs=$DD_BLOCK seek="$offset" \
			iflag=fullblock oflag=seek_bytes conv=notrunc,fsync 2>"$WORK/dd.err" &
		track $!
		dd_rc=0
		watch_transfer "$LAST_PID" 1 writing || dd_rc=$?
		[ "$dd_rc" -ne 3 ] || exit 1
		curl_rc=0
		wait "$curl_pid" || curl_rc=$?
		BACKGROUND=''
		[ "$dd_rc" -eq 0 ] || fail_job "writing $TARGET_DEVICE failed: $(tail -n 1 "$WORK/dd.err")"
		# dd wrote all that curl received (busybox dd does not print a byte count).
		written=$(cat "$WORK/image.received" 2>/dev/null)
		offset=$((offset + ${written:-0}))
		[ "$curl_rc" -ne 0 ] || [ "$offset" -ge "$A_SIZE" ] || curl_rc=18 # a short body without an error
		[ "$curl_rc" -ne 0 ] || break
		case $(sed -n 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$WORK/image.headers" | tail -n 1) in
			404 | 409 | 410 | 403) fail_job "the server refused the image download: $(head -n 1 "$WORK/image.headers")" ;;
		esac
		attempt=$((attempt + 1))
		[ "$attempt" -lt "$TRANSFER_RETRIES" ] || fail_job "image download failed $attempt times: $(cat "$WORK/curl.err")"
		log "image download cut at $offset of $A_SIZE bytes ($(cat "$WORK/curl.err")); resuming"
		sleep "$attempt"
	done
	[ "$offset" -eq "$A_SIZE" ] || fail_job "wrote $offset bytes but the image has $A_SIZE"
}

# Sets READ_BACK_SHA256 to the sha256 of the target's first BYTES, read from the device itself
# (not the page cache). Not run in $(…): it reports progress and may end the job.
read_back() { # bytes phase
	local rc=0 sum_pid
	sync
	if [ -b "$TARGET_DEVICE" ]; then
		echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || log "could not drop the page cache; reading back may hit RAM"
	fi
	rm -f "$WORK/verify.fifo" && mkfifo "$WORK/verify.fifo"
	sha256sum < "$WORK/verify.fifo" > "$WORK/verify.sha" &
	track $!
	sum_pid=$LAST_PID
	dd if="$TARGET_DEVICE" of="$WORK/verify.fifo" bs=$DD_BLOCK count="$1" iflag=count_bytes 2>"$WORK/verify.err" &
	track $!
	watch_transfer "$LAST_PID" 0 "$2" || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	wait "$sum_pid" || true
	BACKGROUND=''
	[ "$rc" -eq 0 ] || fail_job "reading back $TARGET_DEVICE failed: $(tail -n 1 "$WORK/verify.err")"
	READ_BACK_SHA256=$(cut -d ' ' -f 1 < "$WORK/verify.sha")
}

run_deploy() {
	log "job $A_JOB: deploy ${A_IMAGE:-image} ($A_SIZE bytes, sha256 $A_SHA256) onto $TARGET_DEVICE"
	if [ -z "$A_URL" ] || [ -z "$A_SIZE" ]; then fail_job "the server's deploy order has no url or size"; fi
	if [ "$A_SIZE" -gt "$TARGET_BYTES" ]; then
		fail_job "the image ($A_SIZE bytes) is larger than $TARGET_DEVICE ($TARGET_BYTES bytes)"
	fi
	report_progress writing 0 || exit 1
	write_image
	report_progress writing "$A_SIZE" || exit 1
	log "written; reading back to verify"
	read_back "$A_SIZE" verifying
	report_progress verifying "$A_SIZE" || exit 1
	[ "$READ_BACK_SHA256" = "$A_SHA256" ] || log "read-back sha256 $READ_BACK_SHA256 differs from the image's $A_SHA256"
	finish_job ok "$READ_BACK_SHA256" "$A_SIZE" ""
}

# ---------------------------------------------------------------- backup

# One attempt: dd → tee → (sha256sum, curl upload). Returns 0, 1 (worth retrying) or 2 (refused).
upload_once() {
	local dd_rc=0 curl_rc=0 tee_pid curl_pid
	rm -f "$WORK/read.fifo" "$WORK/hash.fifo" "$WORK/upload.fifo"
	mkfifo "$WORK/read.fifo" "$WORK/hash.fifo" "$WORK/upload.fifo"
	sha256sum < "$WORK/hash.fifo" > "$WORK/backup.sha" &
	track $!
	# The length is known, so send Content-Length instead of chunks; the checksum follows in the result.
	# shellcheck disable=SC2086 # option list split into words on purpose
	curl -sS -T - -H "Content-Length: $TARGET_BYTES" -H 'Transfer-Encoding:' -H 'Expect:' \
		-H 'X-Checksum-Follows: sha256' $TRANSFER_OPTIONS \
		-o "$WORK/body" -w '%{http_code}' "$A_UPLOAD_URL" < "$WORK/upload.fifo" > "$WORK/upload.status" 2>"$WORK/curl.err" &
	track $!
	curl_pid=$LAST_PID
	tee "$WORK/hash.fifo" < "$WORK/read.fifo" > "$WORK/upload.fifo" &
	track $!
	tee_pid=$LAST_PID
	dd if="$TARGET_DEVICE" of="$WORK/read.fifo" bs=$DD_BLOCK 2>"$WORK/dd.err" &
	track $!
	watch_transfer "$LAST_PID" 0 uploading || dd_rc=$?
	[ "$dd_rc" -ne 3 ] || exit 1
	wait "$tee_pid" || true
	wait "$curl_pid" || curl_rc=$?
	kill_background
	HTTP_STATUS=$(cat "$WORK/upload.status" 2>/dev/null || echo 000)
	# A cut upload also breaks the pipe dd writes into: judge the network before the read.
	classify_reply "$curl_rc" || return $?
	[ "$dd_rc" -eq 0 ] || fail_job "reading $TARGET_DEVICE failed: $(tail -n 1 "$WORK/dd.err")"
}

run_backup() {
	local rc=0 sha received
	log "job $A_JOB: backup of $TARGET_DEVICE ($TARGET_BYTES bytes)"
	[ -n "$A_UPLOAD_URL" ] || fail_job "the server's backup order has no upload_url"
	with_retries "$TRANSFER_RETRIES" "backup upload" upload_once || rc=$?
	[ "$rc" -eq 0 ] || fail_job "backup upload failed: $HTTP_ERROR"
	report_progress uploading "$TARGET_BYTES" || exit 1
	sha=$(cut -d ' ' -f 1 < "$WORK/backup.sha")
	received=$(json_field received_sha256)
	[ -z "$received" ] || [ "$received" = "$sha" ] || log "the server received sha256 $received, the device read $sha"
	finish_job ok "$sha" "$TARGET_BYTES" ""
}

# ---------------------------------------------------------------- main loop

cleanup() {
	kill_background
	[ -z "${WORK:-}" ] || rm -rf "$WORK"
}

main() {
	local rc started
	load_settings
	WORK=$(mktemp -d /tmp/provisioning.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	log "client $CLIENT_VERSION: server $SERVER, device $MAC ${DEVICE_IP:+($DEVICE_IP) }serial ${SERIAL:-?}, target $TARGET_DEVICE ($TARGET_BYTES bytes)"

	with_retries 0 "registering" register || die "the server refused the registration: $HTTP_ERROR"
	log "registered; waiting for the operator (Deploy or Backup on the dashboard)"
	while :; do
		started=$(date +%s)
		rc=0
		with_retries 0 "polling" poll || rc=$?
		if [ "$rc" -ne 0 ]; then
			log "poll refused: $HTTP_ERROR"
			sleep "$POLL_INTERVAL"
			continue
		fi
		read_action
		case $A_ACTION in
			deploy) run_deploy; exit $? ;;
			backup) run_backup; exit $? ;;
			none)
				[ -z "$A_MESSAGE" ] || log "$A_MESSAGE"
				# A server that answered at once (no long-poll) is asked again after POLL_INTERVAL.
				[ $(($(date +%s) - started)) -ge "$POLL_INTERVAL" ] || sleep "$POLL_INTERVAL"
				;;
			*) log "unknown action '$A_ACTION' from the server; ignoring"; sleep "$POLL_INTERVAL" ;;
		esac
	done
}

main "$@"
