#!/bin/sh
# provisioning-client.sh: runs on a netbooted CM4 (busybox ash + curl) and does what the
# provisioning server asks: write an image onto the eMMC (deploy) or upload the eMMC (backup).
#
#   register  POST /api/register-device            (mac, ip, serial, model, storage_bytes, emmc_cid)
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
#   STALL_TIMEOUT        120  seconds a transfer attempt may go without a byte written to (or read
#                             from) the target before it is stopped and counted as failed; the
#                             position moves a dd block (4 MiB) at a time, so keep it above the
#                             time one block takes at the slowest rate you accept
#   RATE_LIMIT           (none) cap per transfer, curl --limit-rate syntax (e.g. 20M), to share a LAN
#   DEPLOY_MODE          auto   auto: only the image's mapped chunks (zstd when available), each
#                               read back and checked; full: the whole image, one sha256
#   IO_HELPER            auto   auto: move the bytes with cm4prov-io when it is on the PATH (one
#                               process that writes, reads back with direct I/O and hashes, each
#                               chunk checked while the next is written); none: dd and sha256sum
#   DEVICE_SERIAL, DEVICE_MODEL   override what is read from the device tree / cpuinfo
#   EMMC_CID_FILE        /sys/block/<mmcblkN>/device/cid of TARGET_DEVICE   the eMMC's CID register
#                        (32 hex digits); a file target has none, and then none is sent
#   AFTER_JOB            exit   exit: end after one job with its status (the initramfs then reboots);
#                               poll: report it and wait for the next job (trials, a file as target)
#   LED_DIR              /sys/class/leds/ACT, else led0   the activity LED (see "activity LED")
#   LED_TRAIL            (none) a file that gets the name of each LED pattern shown (tests)
#
# After a job ends ok the order's finish applies (AFTER_JOB=exit only): reboot (exit 0), poweroff
# (exit 10: /init powers the device off), wait (LED steady on; keep polling for more work).
# Exit status: 0 after a successful action, 10 after one whose order says power off, 1 when the
# job failed, 2 on a bad setting.
# Uses only POSIX sh as busybox ash runs it (plus `local`, which ash and dash have), curl, and
# busybox applets.
# shellcheck disable=SC3043

set -eu

CLIENT_VERSION=0.4.0
CMDLINE_FILE=${PROVISIONING_CMDLINE:-/proc/cmdline}
DD_BLOCK=4M

log() { printf '%s provisioning: %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }
die() { log "ERROR: $1"; exit "${2:-1}"; } # message [exit status, default 1]

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

require_whole_number() { # name value: a whole number, or exit 2 with a sentence
	case $2 in
		'' | *[!0-9]*) die "$1 must be a whole number, not '$2'" 2 ;;
	esac
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
	STALL_TIMEOUT=${STALL_TIMEOUT:-120}
	require_whole_number POLL_INTERVAL "$POLL_INTERVAL"
	require_whole_number POLL_WAIT "$POLL_WAIT"
	require_whole_number PROGRESS_INTERVAL "$PROGRESS_INTERVAL"
	require_whole_number TRANSFER_RETRIES "$TRANSFER_RETRIES"
	require_whole_number RETRY_MAX_DELAY "$RETRY_MAX_DELAY"
	require_whole_number STALL_TIMEOUT "$STALL_TIMEOUT"
	[ "$STALL_TIMEOUT" -gt 0 ] || die "STALL_TIMEOUT must be at least 1 (seconds)" 2
	AFTER_JOB=${AFTER_JOB:-exit}
	case $AFTER_JOB in
		exit | poll) ;;
		*) die "AFTER_JOB must be exit or poll, not '$AFTER_JOB'" 2 ;;
	esac
	TRANSFER_OPTIONS="--connect-timeout 10 --speed-limit 1024 --speed-time 60${RATE_LIMIT:+ --limit-rate $RATE_LIMIT}"
	# zstd over an empty eMMC may put under 1 KiB/s on the wire for minutes: that upload's stall is
	# watched where the bytes start (dd's read position, watch_attempt), not by curl's speed limit.
	COMPRESSED_UPLOAD_OPTIONS="--connect-timeout 10${RATE_LIMIT:+ --limit-rate $RATE_LIMIT}"
	case ${IO_HELPER:-auto} in
		auto) if cm4prov-io --version >/dev/null 2>&1; then IO=helper; else IO=shell; fi ;;
		none) IO=shell ;;
		*) die "IO_HELPER must be auto or none, not '$IO_HELPER'" 2 ;;
	esac

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
	EMMC_CID=$(emmc_cid)
}

# The eMMC's CID as the kernel gives it, or nothing: a file target has none, and a value that is
# not 32 hex digits is left out (the server would refuse the registration over it).
emmc_cid() {
	local file="${EMMC_CID_FILE:-}" cid
	if [ -z "$file" ]; then
		[ -b "$TARGET_DEVICE" ] || return 0
		file=$(readlink -f "$TARGET_DEVICE")
		file="/sys/block/${file##*/}/device/cid"
	fi
	[ -r "$file" ] || return 0
	cid=$(head -c 100 "$file" | tr -d ' \n')
	case $cid in
		*[!0-9a-fA-F]*) log "ignoring $file: not a CID ('$cid')"; return 0 ;;
	esac
	if [ "${#cid}" -eq 32 ]; then echo "$cid"; else log "ignoring $file: not a CID ('$cid')"; fi
}

# ---------------------------------------------------------------- activity LED

# The CM4's activity LED tells a person at the line, from a distance, how the device is doing:
#   waiting  slow blink (1 s on, 1 s off)      registered, no job yet
#   working  fast blink (0.1 s on, 0.1 s off)  a job runs
#   done     steady on                         the last job ended ok
#   failed   short flash each second (0.2 s on, 0.8 s off)   the last job failed
# Set through the kernel's LED triggers (timer, none + brightness), so the pattern goes on while
# the client waits and after it exits, until the reboot or power-off. done and failed stay when
# the client starts again in the same boot (/init retries), until a new job starts. Best effort:
# a missing LED, or a trigger the kernel lacks, is logged once and never fails a job.
LED='' LED_SHOWN='' LED_REFUSED=''
FAILED_ON=200 FAILED_OFF=800

find_led() {
	local dir="${LED_DIR:-}"
	if [ -z "$dir" ]; then
		dir=/sys/class/leds/led0
		[ ! -e /sys/class/leds/ACT/trigger ] || dir=/sys/class/leds/ACT
	fi
	if [ -e "$dir/trigger" ] && [ -e "$dir/brightness" ]; then
		LED=$dir
		LED_MAX=$(cat "$dir/max_brightness" 2>/dev/null || true)
		require_led_number "${LED_MAX:-x}" || LED_MAX=1
		log "activity LED: $dir"
	else
		log "no activity LED at $dir (set LED_DIR); the LED shows nothing"
	fi
}

require_led_number() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

# led_write FILE VALUE: true when the kernel took it. The first refusal is logged, none fails.
led_write() {
	{ printf '%s\n' "$2" > "$LED/$1"; } 2>/dev/null && return 0
	[ -n "$LED_REFUSED" ] || log "the LED at $LED refused $1=$2 (a trigger this kernel lacks?); its patterns may not show"
	LED_REFUSED=yes
	return 1
}

led_blink() { # on_ms off_ms
	if led_write trigger timer; then
		led_write delay_on "$1" || :
		led_write delay_off "$2" || :
	fi
}

# led_show waiting|working|done|failed. LED_TRAIL (a file) gets each pattern's name: for tests.
led_show() {
	[ "$1" != "$LED_SHOWN" ] || return 0
	LED_SHOWN=$1
	if [ -n "${LED_TRAIL:-}" ]; then echo "$1" >> "$LED_TRAIL" 2>/dev/null || :; fi
	[ -n "$LED" ] || return 0
	case $1 in
		waiting) led_blink 1000 1000 ;;
		working) led_blink 100 100 ;;
		failed) led_blink "$FAILED_ON" "$FAILED_OFF" ;;
		done) if led_write trigger none; then led_write brightness "$LED_MAX" || :; fi ;;
	esac
	return 0
}

# True when the LED already shows done or failed: set by an earlier run of the client in this boot.
led_shows_outcome() {
	local trigger
	[ -n "$LED" ] || return 1
	trigger=$(cat "$LED/trigger" 2>/dev/null) || return 1
	case $trigger in *\[*\]*) trigger=${trigger#*\[}; trigger=${trigger%%\]*} ;; esac
	case $trigger in
		none) [ "$(cat "$LED/brightness" 2>/dev/null || echo 0)" != 0 ] ;;
		timer) [ "$(cat "$LED/delay_on" 2>/dev/null)/$(cat "$LED/delay_off" 2>/dev/null)" = "$FAILED_ON/$FAILED_OFF" ] ;;
		*) return 1 ;;
	esac
}

# ---------------------------------------------------------------- HTTP (the one place that talks to the server)

# http METHOD URL [curl options…]: the reply body goes to $WORK/body and the status to HTTP_STATUS.
# Returns 0 for 2xx, 1 for what is worth retrying (no connection, 5xx, 408, 429), 2 for a refusal (4xx).
http() {
	local method="$1" url="$2" rc=0
	shift 2
	HTTP_STATUS=$(curl -sS -X "$method" -o "$WORK/body" -w '%{http_code}' --connect-timeout 10 "$@" "$url" 2>"$WORK/http.err") || rc=$?
	classify_reply "$rc" "$WORK/http.err"
}

# classify_reply CURL_EXIT CURL_STDERR_FILE: sets HTTP_ERROR from the status in HTTP_STATUS and
# the reply in $WORK/body; returns 0 (2xx), 1 (worth retrying) or 2 (refused).
classify_reply() {
	if [ "$1" -ne 0 ]; then
		HTTP_ERROR="curl exit $1: $(cat "$2" 2>/dev/null)"
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
		--data-urlencode "storage_bytes=$TARGET_BYTES" --data-urlencode "client_version=$CLIENT_VERSION" \
		${EMMC_CID:+--data-urlencode "emmc_cid=$EMMC_CID"}
}

# What this client can do, offered in every poll: write chunks at offsets (`sparse`), and
# decompress zstd when the zstd program or cm4prov-io is there. DEPLOY_MODE=full asks for whole images.
client_features() {
	if [ "${DEPLOY_MODE:-auto}" = full ]; then
		echo none
	elif [ "$IO" = helper ] || command -v zstd >/dev/null 2>&1; then
		echo sparse,zstd
	else
		echo sparse
	fi
}

poll() {
	http GET "$SERVER/api/device-action-poll?mac=$MAC&format=env&wait=$POLL_WAIT&features=$FEATURES" --max-time $((POLL_WAIT + 30))
}

# Reads the KEY='value' lines of a poll reply into A_<KEY> variables, without eval.
read_action() {
	local line key value
	A_ACTION='' A_JOB='' A_URL='' A_UPLOAD_URL='' A_PROGRESS_URL='' A_RESULT_URL='' A_SIZE='' A_SHA256='' A_IMAGE='' A_MESSAGE=''
	A_MODE='' A_ENCODING='' A_MANIFEST_URL='' A_CHUNKS_URL='' A_FULL_MATCH='' A_FILES_URL=''
	A_FINISH=''
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
			MODE) A_MODE=$value ;; ENCODING) A_ENCODING=$value ;; MANIFEST_URL) A_MANIFEST_URL=$value ;;
			CHUNKS_URL) A_CHUNKS_URL=$value ;; FULL_MATCH) A_FULL_MATCH=$value ;;
			FILES_URL) A_FILES_URL=$value ;;
			FINISH) A_FINISH=$value ;;
		esac
	done < "$WORK/body"
}

# report_progress PHASE BYTES [FIELD=VALUE…]: best effort, except that a job the server has
# ended stops us. Extra fields: bytes_written, bytes_verified, rate, discarded. A report that
# says nothing new (the same as the last one, but for the rate) is not sent: repeating a
# position is no sign of life.
LAST_REPORT=''
report_progress() {
	local rc=0 phase="$1" bytes="$2" field extra='' news
	shift 2
	news="$phase $bytes"
	for field in "$@"; do
		extra="$extra --data-urlencode $field"
		case $field in rate=*) ;; *) news="$news $field" ;; esac
	done
	[ "$news" != "$LAST_REPORT" ] || return 0
	LAST_REPORT=$news
	# shellcheck disable=SC2086 # each extra field is one word (no spaces in names or numbers)
	http POST "$A_PROGRESS_URL" --max-time 10 --data-urlencode "phase=$phase" \
		--data-urlencode "bytes_done=$bytes" --data-urlencode "mac=$MAC" $extra || rc=$?
	if [ "$rc" -eq 2 ] && { [ "$HTTP_STATUS" = 410 ] || [ "$HTTP_STATUS" = 404 ]; }; then
		JOB_ENDED_BY_SERVER=$(reply_message)
		return 2
	fi
	return 0
}

# Tells the server that an attempt failed and another follows: a device that retries is alive,
# and the job shows why it is slow. Best effort; the caller's HTTP_* and reply body are kept.
report_retry() { # phase bytes message
	local status="$HTTP_STATUS" error="${HTTP_ERROR:-}"
	cp "$WORK/body" "$WORK/body.kept" 2>/dev/null || :
	http POST "$A_PROGRESS_URL" --max-time 10 --data-urlencode "phase=$1" --data-urlencode "bytes_done=$2" \
		--data-urlencode "problem=$3" --data-urlencode "mac=$MAC" || true
	mv "$WORK/body.kept" "$WORK/body" 2>/dev/null || :
	HTTP_STATUS=$status HTTP_ERROR=$error LAST_REPORT=''
}

send_result() { # status sha256 bytes error [ranges_sha256]
	http POST "$A_RESULT_URL" --max-time 120 --data-urlencode "status=$1" --data-urlencode "sha256=$2" \
		--data-urlencode "bytes=$3" --data-urlencode "error=$4" --data-urlencode "ranges_sha256=${5:-}" \
		${FILES_REPORT:+--data-urlencode "files=$FILES_REPORT"} \
		--data-urlencode "mac=$MAC"
}

# Reports the outcome (retrying through server restarts) and turns the server's verdict into ours.
finish_job() { # status sha256 bytes error [ranges_sha256]
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

# ---------------------------------------------------------------- transfer attempts in the background

# A transfer attempt is a few background processes joined by FIFOs: each started as `cmd & track $!`
# (the redirections must stay on the `cmd &` line: on a function call they would apply to this
# shell), each FIFO declared with link_fifo WRITER_PID READER_PID PATH, then watch_attempt.
BACKGROUND='' FIFO_LINKS='' RUNNING='' STATUSES=''
track() { BACKGROUND="$BACKGROUND $1"; LAST_PID=$1; }
link_fifo() { FIFO_LINKS="$FIFO_LINKS $1 $2 $3"; }

# The watch loop below runs four times a second next to the hot path (curl, zstd, dd): its
# probes read /proc with the shell's own `read`, no process per look.

# Sets PROBE to the byte position of a process's file descriptor (how far dd has read or
# written), or to nothing when there is none (yet) or it is below MINIMUM.
probe_fd_position() { # pid fd [minimum]
	local key value
	PROBE=''
	{ while read -r key value; do
		if [ "$key" = pos: ]; then PROBE=$value; break; fi
	done < "/proc/$1/fdinfo/$2"; } 2>/dev/null || true
	[ -z "${3:-}" ] || [ -z "$PROBE" ] || [ "$PROBE" -ge "$3" ] || PROBE=''
}

# True while PID runs (an exited child that is not reaped yet is a zombie, not running).
is_running() {
	local stat=''
	{ read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) } # after "pid (comm) ": the state letter
	case $stat in '' | Z* | X*) return 1 ;; esac
}

# Sets RUNNING to the attempt's processes that still run (" pid " each); false when none does.
note_running() {
	local pid
	RUNNING=''
	for pid in $BACKGROUND; do
		if is_running "$pid"; then RUNNING="$RUNNING $pid "; fi
	done
	[ -n "$RUNNING" ]
}

still_running() { case $RUNNING in *" $1 "*) return 0 ;; esac; return 1; }

# A FIFO whose one end has ended while the other still runs: the survivor may be blocked for ever
# opening it (curl failed before it opened its output, so dd waits for a writer that never
# comes). Opening the FIFO read-write here never blocks and lets that open return; closing it
# again leaves the survivor at end of file (a reader) or with a broken pipe (a writer). Done on
# every tick, as the survivor may reach its open later; harmless once both ends are open.
release_orphaned_fifos() {
	local writer reader path
	# shellcheck disable=SC2086 # triples of words: pids and $WORK paths have no spaces
	set -- $FIFO_LINKS
	while [ "$#" -ge 3 ]; do
		writer=$1 reader=$2 path=$3
		shift 3
		if still_running "$writer" && still_running "$reader"; then continue; fi
		if still_running "$writer" || still_running "$reader"; then
			if [ -p "$path" ]; then : <>"$path"; fi
		fi
	done
}

# Stops the attempt: TERM, then KILL for what is still there after 2 s. A process stuck in the
# kernel (a dead eMMC) can outlive even that; it is left behind rather than waited for.
stop_attempt() {
	local pid signal tries
	for signal in TERM KILL; do
		note_running || return 0
		for pid in $RUNNING; do kill -s "$signal" "$pid" 2>/dev/null || true; done
		tries=0
		while note_running && [ "$tries" -lt 8 ]; do
			release_orphaned_fifos
			sleep 0.25 2>/dev/null || sleep 1
			tries=$((tries + 1))
		done
	done
	[ -z "$RUNNING" ] || log "could not stop process(es)$RUNNING; leaving them behind"
}

# Collects each process's exit status into STATUSES and forgets the attempt.
end_attempt() {
	local pid rc
	STATUSES=''
	note_running || true
	for pid in $BACKGROUND; do
		rc=255
		if ! still_running "$pid"; then
			rc=0
			wait "$pid" || rc=$?
		fi
		STATUSES="$STATUSES $pid:$rc"
	done
	BACKGROUND='' FIFO_LINKS=''
}

status_of() { # pid → its exit status in the attempt that just ended (255: left behind)
	local entry
	for entry in $STATUSES; do
		if [ "${entry%:*}" = "$1" ]; then echo "${entry#*:}"; return 0; fi
	done
	echo 255
}

kill_background() {
	local pid
	for pid in $BACKGROUND; do kill "$pid" 2>/dev/null || true; done
	BACKGROUND=''
}

# watch_attempt PHASE written|read FROM END PROBE_COMMAND [ARG…]: waits until every process of
# the attempt has ended, reporting PHASE progress from the byte position PROBE_COMMAND sets in PROBE
# (bytes written to, or read from, the target, going from FROM to END; nothing while there is
# none yet). Only a position that moved is reported. A position that has not moved for
# STALL_TIMEOUT seconds short of END ends the attempt; from END on, or once the process moving
# the bytes has ended, what is left (dd's fsync, the rest of the pipeline, the server's answer)
# ends by itself. A probe may also set PROBE_MORE (fields sent with each report; a change counts
# as movement too), PROBE_PHASE (the phase now, instead of PHASE) and PROBE_ALIVE (a number whose
# change alone counts as movement, at END too: the stall is then judged on it). Sets POSITION (the last
# position seen, empty if none) and STATUSES (see status_of). Returns 0 when the processes ended by themselves, 3 when the server ended the job
# (cancelled), 4 when the attempt stalled; in both cases after stopping it.
watch_attempt() {
	local phase="$1" what="$2" from="$3" end="$4" rc=0 pos now started moved_at seen='' reported="$3||" reported_at=0 fields onto=from ticks=0 reported_phase="$1"
	shift 4
	[ "$what" != written ] || onto=to
	POSITION='' PROBE_MORE='' PROBE_PHASE='' PROBE_ALIVE=''
	started=$(date +%s)
	moved_at=$started now=$started
	while note_running; do
		release_orphaned_fifos
		# Quarter-second ticks (busybox sleep takes fractions) so a short job is not kept waiting.
		sleep 0.25 2>/dev/null || sleep 1
		"$@" || true
		pos=$PROBE
		# The clock is read once a second: every look would be a process of its own.
		ticks=$((ticks + 1))
		[ $((ticks % 4)) -ne 0 ] || now=$(date +%s)
		if [ -n "$pos" ] && [ "$pos|$PROBE_MORE|$PROBE_ALIVE" != "$seen" ]; then
			POSITION=$pos seen="$pos|$PROBE_MORE|$PROBE_ALIVE" moved_at=$now
		elif [ -z "$pos" ] && [ -n "$POSITION" ]; then
			: # the process moving the bytes has ended; the rest ends at end of file or by curl's limits
		elif [ $((now - moved_at)) -ge "$STALL_TIMEOUT" ] && { [ "${POSITION:-0}" -lt "$end" ] || [ -n "$PROBE_ALIVE" ]; }; then
			STALL_ERROR="no byte was $what $onto $TARGET_DEVICE for $STALL_TIMEOUT s"
			[ "${POSITION:-0}" -lt "$end" ] || STALL_ERROR="nothing more went into the upload for $STALL_TIMEOUT s (all of $TARGET_DEVICE was read)"
			log "$STALL_ERROR; stopping this attempt"
			rc=4
			break
		fi
		# A new phase is told at once, so that the job's phase times start where it did.
		if [ -z "$POSITION" ] || [ "$seen" = "$reported" ]; then continue; fi
		[ $((now - reported_at)) -ge "$PROGRESS_INTERVAL" ] || [ "${PROBE_PHASE:-$phase}" != "$reported_phase" ] || continue
		reported=$seen reported_at=$now reported_phase=${PROBE_PHASE:-$phase}
		fields=$PROBE_MORE
		[ "$what" != written ] || fields="bytes_written=$POSITION rate=$(((POSITION - from) / (now > started ? now - started : 1))) $fields"
		# shellcheck disable=SC2086 # each field is one word
		if ! report_progress "${PROBE_PHASE:-$phase}" "$POSITION" $fields; then
			log "the server ended job $A_JOB: $JOB_ENDED_BY_SERVER"
			rc=3
			break
		fi
	done
	[ "$rc" -eq 0 ] || stop_attempt
	end_attempt
	return "$rc"
}

# ---------------------------------------------------------------- deploy


# Writes the image onto the target: curl → FIFO → dd, resuming with a Range request after a
# failed attempt (cut, refused with 5xx, stalled) from the first byte dd has not surely written.
write_image() {
	local offset=0 attempt=0 rc curl_rc dd_rc received range curl_pid dd_pid failure
	while [ "$offset" -lt "$A_SIZE" ]; do
		rm -f "$WORK/image.fifo" && mkfifo "$WORK/image.fifo"
		: > "$WORK/image.headers" && : > "$WORK/image.received"
		range=''
		[ "$offset" -eq 0 ] || range="--range $offset-"
		# shellcheck disable=SC2086 # option lists split into words on purpose
		curl -sS --fail $TRANSFER_OPTIONS $range \
			-D "$WORK/image.headers" -o "$WORK/image.fifo" -w '%{size_download}' "$A_URL" \
			>"$WORK/image.received" 2>"$WORK/image.err" &
		track $!
		curl_pid=$LAST_PID
		dd if="$WORK/image.fifo" of="$TARGET_DEVICE" bs=$DD_BLOCK seek="$offset" \
			iflag=fullblock oflag=seek_bytes conv=notrunc,fsync >/dev/null 2>"$WORK/dd.err" &
		track $!
		dd_pid=$LAST_PID
		link_fifo "$curl_pid" "$dd_pid" "$WORK/image.fifo"
		rc=0
		# dd's stdout is /dev/null until it has opened the target and gone to the offset: positions
		# below the offset are not the target's.
		watch_attempt writing written "$offset" "$A_SIZE" probe_fd_position "$dd_pid" 1 "$offset" || rc=$?
		[ "$rc" -ne 3 ] || exit 1
		curl_rc=$(status_of "$curl_pid")
		dd_rc=$(status_of "$dd_pid")
		if [ "$rc" -eq 4 ]; then
			# Both were stopped: what dd wrote is known up to the last position seen.
			offset=${POSITION:-$offset}
			failure=$STALL_ERROR
		else
			[ "$dd_rc" -eq 0 ] || fail_job "writing $TARGET_DEVICE failed: $(tail -n 1 "$WORK/dd.err")"
			# dd read to the end of what curl sent and wrote it all (busybox dd prints no byte count);
			# a curl that did not say how much it sent leaves the last position seen.
			received=$(cat "$WORK/image.received")
			if [ -n "$received" ]; then offset=$((offset + received)); else offset=${POSITION:-$offset}; fi
			[ "$curl_rc" -ne 0 ] || [ "$offset" -ge "$A_SIZE" ] || curl_rc=18 # a short body without an error
			[ "$curl_rc" -ne 0 ] || break
			failure=$(head -n 1 "$WORK/image.err")
			case $(sed -n 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$WORK/image.headers" | tail -n 1) in
				408 | 429) ;;
				4??) fail_job "the server refused the image download: $(grep '^HTTP/' "$WORK/image.headers" | tail -n 1 | tr -d '\r')" ;;
			esac
		fi
		attempt=$((attempt + 1))
		[ "$attempt" -lt "$TRANSFER_RETRIES" ] || fail_job "image download failed $attempt times (the last: ${failure:-curl exit $curl_rc})"
		log "image download cut at $offset of $A_SIZE bytes (${failure:-curl exit $curl_rc}); resuming"
		report_retry writing "$offset" "attempt $attempt of $TRANSFER_RETRIES: image download cut at $offset bytes (${failure:-curl exit $curl_rc}); resuming"
		sleep "$attempt"
	done
	[ "$offset" -eq "$A_SIZE" ] || fail_job "wrote $offset bytes but the image has $A_SIZE"
}

# Sets READ_BACK_SHA256 to the sha256 of the target's first BYTES, read from the device itself
# (not the page cache). Not run in $(…): it reports progress and may end the job.
read_back() { # bytes phase
	local rc=0 sum_pid dd_pid
	if [ "$IO" = helper ]; then
		io_read_back "$@"
		return 0
	fi
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
	dd_pid=$LAST_PID
	link_fifo "$dd_pid" "$sum_pid" "$WORK/verify.fifo"
	watch_attempt "$2" read 0 "$1" probe_fd_position "$dd_pid" 0 || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	[ "$rc" -ne 4 ] || fail_job "reading back $TARGET_DEVICE stopped: $STALL_ERROR"
	[ "$(status_of "$dd_pid")" -eq 0 ] || fail_job "reading back $TARGET_DEVICE failed: $(tail -n 1 "$WORK/verify.err")"
	[ "$(status_of "$sum_pid")" -eq 0 ] || fail_job "hashing what was read back from $TARGET_DEVICE failed"
	READ_BACK_SHA256=$(cut -d ' ' -f 1 < "$WORK/verify.sha")
}

run_deploy() {
	FILES_REPORT=''
	[ -z "$A_FILES_URL" ] || fetch_files_list # before any byte is written: the tools are here
	if [ "$A_MODE" = sparse ]; then
		run_sparse_deploy
		return
	fi
	log "job $A_JOB: deploy ${A_IMAGE:-image} ($A_SIZE bytes, sha256 $A_SHA256) onto $TARGET_DEVICE"
	if [ -z "$A_URL" ] || [ -z "$A_SIZE" ]; then fail_job "the server's deploy order has no url or size"; fi
	if [ "$A_SIZE" -gt "$TARGET_BYTES" ]; then
		fail_job "the image ($A_SIZE bytes) is larger than $TARGET_DEVICE ($TARGET_BYTES bytes)"
	fi
	report_progress writing 0 bytes_written=0 || exit 1
	write_image
	report_progress writing "$A_SIZE" "bytes_written=$A_SIZE" || exit 1
	log "written; reading back to verify"
	read_back "$A_SIZE" verifying
	report_progress verifying "$A_SIZE" || exit 1
	[ "$READ_BACK_SHA256" = "$A_SHA256" ] || log "read-back sha256 $READ_BACK_SHA256 differs from the image's $A_SHA256"
	[ -z "$A_FILES_URL" ] || write_device_files
	finish_job ok "$READ_BACK_SHA256" "$A_SIZE" ""
}

# ---------------------------------------------------------------- sparse deploy (mapped chunks only)

# Fetches the chunk list: M_* settings, and $WORK/chunks with "IDX OFFSET LENGTH SHA256 ZOFF ZLEN".
fetch_manifest() {
	local rc=0 key value
	with_retries "$TRANSFER_RETRIES" "fetching the chunk list" http GET "$A_MANIFEST_URL" --max-time 120 || rc=$?
	[ "$rc" -eq 0 ] || fail_job "could not fetch the chunk list: $HTTP_ERROR"
	sed -n 's/^chunk //p' "$WORK/body" > "$WORK/chunks"
	M_CHUNKS=0 M_IMAGE_SIZE='' M_SPARSE_SHA256='' M_MAPPED=0
	while IFS='=' read -r key value; do
		case $key in
			CHUNKS) M_CHUNKS=$value ;; IMAGE_SIZE) M_IMAGE_SIZE=$value ;;
			SPARSE_SHA256) M_SPARSE_SHA256=$value ;; MAPPED_BYTES) M_MAPPED=$value ;;
		esac
	done < "$WORK/body"
	[ "$(wc -l < "$WORK/chunks")" -eq "$M_CHUNKS" ] || fail_job "the chunk list is incomplete"
}

# Discards the whole target first, so that ranges the image leaves empty read as an eMMC reads
# discarded blocks (see docs): zeros on most eMMCs (EXT_CSD ERASED_MEM_CONT=0), 0xff on others.
# A file standing in for an eMMC is emptied and regrown, which reads as zeros.
discard_target() {
	DISCARDED=0
	if [ -b "$TARGET_DEVICE" ]; then
		if blkdiscard "$TARGET_DEVICE" 2>"$WORK/discard.err"; then DISCARDED=1; else log "the target cannot discard: $(cat "$WORK/discard.err")"; fi
	elif [ -f "$TARGET_DEVICE" ]; then
		truncate -s 0 "$TARGET_DEVICE" && truncate -s "$TARGET_BYTES" "$TARGET_DEVICE" && DISCARDED=1
	fi
}

# Writes chunks FROM on, reading their decoded bytes in order from stdin: one dd per chunk at
# its offset, the chunk as one record (busybox dd reads a whole record from a pipe with
# iflag=fullblock; chunks are at most 4 MiB). A chunk counts as written only when dd wrote the
# whole record ("1+0 records out"); a stream that ends early ends the writing there.
write_chunks() { # from
	local idx off len sha rest total=0
	while read -r idx off len sha rest <&3; do
		[ "$idx" -ge "$1" ] || continue
		if ! dd of="$TARGET_DEVICE" bs="$len" count=1 seek="$off" iflag=fullblock \
			oflag=seek_bytes conv=notrunc 2>"$WORK/chunk.err"; then
			cat "$WORK/chunk.err" >> "$WORK/write.err"
			return 1
		fi
		whole_record_written "$WORK/chunk.err" || return 0
		echo "$idx $len" >> "$WORK/written"
		total=$((total + len))
		echo "$total" > "$WORK/written.total"
	done 3< "$WORK/chunks"
}

# True when dd's report (FILE) says it wrote one whole record; read with the shell's `read`,
# as this runs once per chunk on the hot path.
whole_record_written() { # file
	local line
	while read -r line; do
		case $line in "1+0 records out"*) return 0 ;; esac
	done < "$1"
	return 1
}

# Sets PROBE to the bytes of whole chunks written so far, as write_chunks last noted them (a
# moment's empty file while it rewrites the note reads as no news).
probe_chunks_written() {
	local total=''
	{ read -r total < "$WORK/written.total"; } 2>/dev/null || true
	if [ -n "$total" ]; then PROBE=$((WRITTEN_BEFORE + total)); else PROBE=$POSITION; fi
}

# Bytes of whole chunks written so far (the chunk in flight counts once dd has written it all).
chunks_written() {
	echo $((WRITTEN_BEFORE + $(awk '{ s += $2 } END { print s + 0 }' "$WORK/written")))
}

# Starts curl fetching chunks FROM..last into FIFO: with zstd, one Range request into the
# compressed chunk stream from chunk FROM's frame on; without, the image's own ranges, one request
# each, over one connection (curl --next blocks, each repeating the options, which --next resets).
# Sets CURL_PID.
start_chunk_fetch() { # from fifo
	if [ "$A_ENCODING" = zstd ]; then
		# shellcheck disable=SC2086 # option list split into words on purpose
		curl -sS --fail $TRANSFER_OPTIONS -r "$(awk -v from="$1" '$1 == from { print $5 }' "$WORK/chunks")-" \
			-o "$2" "$A_CHUNKS_URL" 2>"$WORK/chunks.err" &
	else
		awk -v from="$1" -v url="$A_URL" -v limit="${RATE_LIMIT:-}" '$1 >= from {
			if (n++) print "next"
			printf "silent\nshow-error\nfail\nconnect-timeout = 10\nspeed-limit = 1024\nspeed-time = 60\n"
			if (limit != "") printf "limit-rate = %s\n", limit
			printf "url = \"%s\"\nrange = \"%d-%d\"\n", url, $2, $2 + $3 - 1 }' "$WORK/chunks" > "$WORK/ranges.cfg"
		curl -K "$WORK/ranges.cfg" > "$2" 2>"$WORK/chunks.err" &
	fi
	track $!
	CURL_PID=$LAST_PID
}

# Streams chunks FROM..last onto the target. Sets STREAM_OK=yes when every byte arrived.
stream_chunks() { # from
	local from="$1" rc=0 curl_rc decode_rc=0 writer_rc curl_pid decoder_pid='' writer_pid
	rm -f "$WORK/z.fifo" "$WORK/raw.fifo" "$WORK/written" "$WORK/written.total" && : > "$WORK/written"
	mkfifo "$WORK/raw.fifo"
	if [ "$A_ENCODING" = zstd ]; then
		mkfifo "$WORK/z.fifo"
		start_chunk_fetch "$from" "$WORK/z.fifo"
		curl_pid=$CURL_PID
		zstd -dcq < "$WORK/z.fifo" > "$WORK/raw.fifo" 2>"$WORK/zstd.err" &
		track $!
		decoder_pid=$LAST_PID
		link_fifo "$curl_pid" "$decoder_pid" "$WORK/z.fifo"
	else
		start_chunk_fetch "$from" "$WORK/raw.fifo"
		curl_pid=$CURL_PID
	fi
	write_chunks "$from" < "$WORK/raw.fifo" &
	track $!
	writer_pid=$LAST_PID
	link_fifo "${decoder_pid:-$curl_pid}" "$writer_pid" "$WORK/raw.fifo"
	watch_attempt writing written "$WRITTEN_BEFORE" "$M_MAPPED" probe_chunks_written || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	curl_rc=$(status_of "$curl_pid")
	[ -z "$decoder_pid" ] || decode_rc=$(status_of "$decoder_pid")
	writer_rc=$(status_of "$writer_pid")
	WRITTEN_BEFORE=$(chunks_written)
	STREAM_OK=no
	if [ "$rc" -eq 0 ] && [ "$curl_rc" -eq 0 ] && [ "$decode_rc" -eq 0 ] && [ "$writer_rc" -eq 0 ]; then STREAM_OK=yes; fi
	STREAM_ERROR="$(cat "$WORK/chunks.err" "$WORK/zstd.err" 2>/dev/null | head -n 3 | tr '\n' ' ')"
	if [ "$rc" -eq 4 ]; then
		STREAM_ERROR=$STALL_ERROR
	elif [ "$writer_rc" -ne 0 ] && [ "$curl_rc" -eq 0 ]; then
		fail_job "writing $TARGET_DEVICE failed: $(tail -n 1 "$WORK/write.err")"
	fi
}

# report_progress, ending the client when the server has ended the job (cancelled).
progress_or_stop() { # phase bytes [field…]
	report_progress "$@" && return 0
	log "the server ended job $A_JOB: $JOB_ENDED_BY_SERVER"
	exit 1
}

rate_since() { # started_epoch bytes → bytes per second
	local seconds=$(($(date +%s) - $1))
	[ "$seconds" -gt 0 ] || seconds=1
	echo $(($2 / seconds))
}

# Reads chunks FROM..last back from the target and checks each sha256 (bmap semantics). Verified
# hashes go to $WORK/verified; FIRST_BAD is the first chunk that did not match, empty if none.
verify_chunks() { # from
	local idx off len sha rest got ticks=0 started
	FIRST_BAD=''
	started=$(date +%s)
	progress_or_stop syncing "$WRITTEN_BEFORE"
	sync
	if [ -b "$TARGET_DEVICE" ]; then echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; fi
	progress_or_stop verifying "$VERIFIED" "bytes_verified=$VERIFIED"
	while read -r idx off len sha rest; do
		[ "$idx" -ge "$1" ] || continue
		got=$(dd if="$TARGET_DEVICE" bs=$DD_BLOCK skip="$off" count="$len" iflag=skip_bytes,count_bytes 2>/dev/null | sha256sum | cut -d ' ' -f 1)
		if [ "$got" != "$sha" ]; then
			FIRST_BAD=$idx BAD_OFFSET=$off BAD_LENGTH=$len BAD_GOT=$got BAD_WANT=$sha
			return 0
		fi
		echo "$sha" >> "$WORK/verified"
		VERIFIED=$((VERIFIED + len))
		ticks=$((ticks + 1))
		[ $((ticks % 16)) -eq 0 ] || continue
		progress_or_stop verifying "$VERIFIED" "bytes_verified=$VERIFIED" "rate=$(rate_since "$started" "$VERIFIED")"
	done < "$WORK/chunks"
}

# ---------------------------------------------------------------- cm4prov-io (IO=helper)

# Sets PROBE from cm4prov-io's status file ("FIRST SECOND PHASE": bytes written and verified in
# this attempt; or bytes read and bytes written into the upload), and for a deploy (written)
# PROBE_MORE and PROBE_PHASE, for a backup (uploaded) PROBE_ALIVE.
probe_io_status() { # written|read|uploaded
	local first='' second='' phase=''
	{ read -r first second phase < "$WORK/io.status"; } 2>/dev/null || true
	PROBE=''
	[ -n "$phase" ] || return 0
	case $1 in
		read) PROBE=$first; return 0 ;;
		# It reads up to ~50 MiB ahead of what the upload takes (its buffers, zstd's jobs): the
		# upload is alive while its output moves, until it has written everything.
		uploaded) [ "$phase" = "done" ] || PROBE=$first PROBE_ALIVE=$second; return 0 ;;
	esac
	PROBE=$((WRITTEN_BEFORE + first))
	PROBE_MORE="bytes_verified=$((VERIFIED + second))"
	case $phase in verifying | syncing) PROBE_PHASE=$phase ;; *) PROBE_PHASE='' ;; esac
}

# stream_chunks and verify_chunks in one: curl → cm4prov-io, which writes each chunk, reads it
# back with direct I/O and checks its sha256 while the next ones are written. Sets the same
# STREAM_OK, STREAM_ERROR and FIRST_BAD (the first chunk not verified, empty when all are).
io_stream_chunks() { # from
	local from="$1" rc=0 curl_rc io_rc curl_pid io_pid decode='' written=0 verified=0 phase
	rm -f "$WORK/raw.fifo" "$WORK/io.status" "$WORK/io.out"
	mkfifo "$WORK/raw.fifo"
	[ "$A_ENCODING" != zstd ] || decode=--zstd
	start_chunk_fetch "$from" "$WORK/raw.fifo"
	curl_pid=$CURL_PID
	cm4prov-io write --chunks "$WORK/chunks" --from "$from" --target "$TARGET_DEVICE" --verified "$WORK/verified" \
		--status "$WORK/io.status" $decode < "$WORK/raw.fifo" > "$WORK/io.out" 2>"$WORK/io.err" &
	track $!
	io_pid=$LAST_PID
	link_fifo "$curl_pid" "$io_pid" "$WORK/raw.fifo"
	watch_attempt writing written "$WRITTEN_BEFORE" "$M_MAPPED" probe_io_status written || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	curl_rc=$(status_of "$curl_pid")
	io_rc=$(status_of "$io_pid")
	{ read -r written verified phase < "$WORK/io.status"; } 2>/dev/null || true
	WRITTEN_BEFORE=$((WRITTEN_BEFORE + written)) VERIFIED=$((VERIFIED + verified))
	STREAM_OK=no
	if [ "$rc" -eq 0 ] && [ "$curl_rc" -eq 0 ] && [ "$io_rc" -eq 0 ]; then STREAM_OK=yes; fi
	STREAM_ERROR="$(cat "$WORK/chunks.err" "$WORK/io.err" 2>/dev/null | head -n 3 | tr '\n' ' ')"
	[ "$rc" -ne 4 ] || STREAM_ERROR=$STALL_ERROR
	case $io_rc in
		4)
			# A chunk that arrived whole was written and reads back otherwise: the target is at fault.
			read -r _ BAD_INDEX BAD_OFFSET BAD_LENGTH BAD_GOT BAD_WANT < "$WORK/io.out"
			fail_job "range $BAD_INDEX (offset $BAD_OFFSET, length $BAD_LENGTH) reads back as sha256 $BAD_GOT, not $BAD_WANT"
			;;
		0 | 3) ;; # done, or the stream ended early
		*) [ "$rc" -eq 4 ] || [ "$curl_rc" -ne 0 ] || fail_job "writing $TARGET_DEVICE failed: $(tail -n 1 "$WORK/io.err")" ;;
	esac
	# Chunks are verified in order, from 0: the next one to write is the count of verified ones.
	FIRST_BAD=$(wc -l < "$WORK/verified")
	[ "$FIRST_BAD" -lt "$M_CHUNKS" ] || FIRST_BAD=''
}

# read_back with cm4prov-io hash: one direct-I/O pass, sha256 on a thread of its own.
io_read_back() { # bytes phase
	local rc=0 io_pid
	rm -f "$WORK/io.status"
	cm4prov-io hash --target "$TARGET_DEVICE" --bytes "$1" --status "$WORK/io.status" > "$WORK/verify.sha" 2>"$WORK/verify.err" &
	track $!
	io_pid=$LAST_PID
	watch_attempt "$2" read 0 "$1" probe_io_status read || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	[ "$rc" -ne 4 ] || fail_job "reading back $TARGET_DEVICE stopped: $STALL_ERROR"
	[ "$(status_of "$io_pid")" -eq 0 ] || fail_job "reading back $TARGET_DEVICE failed: $(tail -n 1 "$WORK/verify.err")"
	READ_BACK_SHA256=$(cut -d ' ' -f 1 < "$WORK/verify.sha")
}

# Full byte match asked: the ranges the image leaves empty must read as zeros, and the whole
# target (image size) must hash to the image with those ranges as zeros.
match_full_image() {
	local end=0 idx off len rest
	if [ "$DISCARDED" = 1 ] && [ -f "$TARGET_DEVICE" ]; then
		log "the target file was emptied: unmapped ranges are zeros already"
	else
		log "zeroing the unmapped ranges (full byte match asked)"
		while read -r idx off len rest; do
			[ "$off" -le "$end" ] || dd if=/dev/zero of="$TARGET_DEVICE" bs=$DD_BLOCK seek="$end" count=$((off - end)) \
				iflag=count_bytes oflag=seek_bytes conv=notrunc 2>/dev/null || fail_job "zeroing $TARGET_DEVICE failed"
			end=$((off + len))
		done < "$WORK/chunks"
		[ "$end" -ge "$M_IMAGE_SIZE" ] || dd if=/dev/zero of="$TARGET_DEVICE" bs=$DD_BLOCK seek="$end" count=$((M_IMAGE_SIZE - end)) \
			iflag=count_bytes oflag=seek_bytes conv=notrunc 2>/dev/null || fail_job "zeroing $TARGET_DEVICE failed"
	fi
	read_back "$M_IMAGE_SIZE" verifying-full
	[ "$READ_BACK_SHA256" = "$M_SPARSE_SHA256" ] || log "the whole target hashes to $READ_BACK_SHA256, not $M_SPARSE_SHA256"
}

# Deploy by block map: discard, write only the mapped chunks (zstd frames or plain ranges),
# read each back and check its sha256. A cut stream resumes at the first chunk that does not
# verify, not at byte 0; a chunk that arrived whole but reads back wrong fails the job by name.
run_sparse_deploy() {
	local next=0 attempt=0 ranges
	log "job $A_JOB: deploy ${A_IMAGE:-image} ($A_SIZE bytes; mapped chunks only, $A_ENCODING) onto $TARGET_DEVICE"
	if [ "$A_SIZE" -gt "$TARGET_BYTES" ]; then
		fail_job "the image ($A_SIZE bytes) is larger than $TARGET_DEVICE ($TARGET_BYTES bytes)"
	fi
	fetch_manifest
	discard_target
	report_progress writing 0 "discarded=$DISCARDED" || exit 1
	WRITTEN_BEFORE=0 VERIFIED=0
	: > "$WORK/verified"
	while :; do
		if [ "$IO" = helper ]; then
			io_stream_chunks "$next"
		else
			stream_chunks "$next"
			verify_chunks "$next"
		fi
		[ -n "$FIRST_BAD" ] || break
		if [ "$STREAM_OK" = yes ]; then
			fail_job "range $FIRST_BAD (offset $BAD_OFFSET, length $BAD_LENGTH) reads back as sha256 $BAD_GOT, not $BAD_WANT"
		fi
		attempt=$((attempt + 1))
		[ "$attempt" -lt "$TRANSFER_RETRIES" ] || fail_job "the chunk download failed $attempt times: $STREAM_ERROR"
		log "chunk stream cut at range $FIRST_BAD of $M_CHUNKS ($STREAM_ERROR); resuming from it"
		report_retry writing "$WRITTEN_BEFORE" "attempt $attempt of $TRANSFER_RETRIES: chunk stream cut at range $FIRST_BAD ($STREAM_ERROR); resuming"
		sleep "$attempt"
		next=$FIRST_BAD
	done
	report_progress verifying "$M_MAPPED" "bytes_written=$M_MAPPED" "bytes_verified=$M_MAPPED" || exit 1
	ranges=$(sha256sum < "$WORK/verified" | cut -d ' ' -f 1)
	READ_BACK_SHA256=''
	[ "$A_FULL_MATCH" != 1 ] || match_full_image
	log "all $M_CHUNKS mapped ranges ($M_MAPPED bytes) verified"
	[ -z "$A_FILES_URL" ] || write_device_files
	finish_job ok "$READ_BACK_SHA256" "" "" "$ranges"
}

# ---------------------------------------------------------------- per-device files (written without mounting)

# After the image is written and verified, a deploy may write per-device files (cloud-init
# seed, hostname, keys…) into the image's partitions. No mount: mtools (FAT) and debugfs (ext4)
# write through the partition's byte offset, the same on /dev/mmcblk0 as on a file standing in
# for it, and need no file-system module in the kernel. Each file is read back with the same tool
# and its sha256 reported (files=IDX:SHA256,…); the server compares them with what it rendered.
# A file whose MODE starts with `a` or `f` is not replaced: the text is appended to the image's
# own file (at its end, or to its first line: cmdline.txt); the client composes the new file,
# compares what it reads back with it, and reports IDX:SHA256:LENGTH of the whole file.
FILES_REPORT=''

# The poll features plus `files` and `files_append` when mtools is here.
files_feature() { # features
	command -v mcopy >/dev/null 2>&1 || { echo "$1"; return 0; }
	case $1 in none | none,*) echo "files,files_append${1#none}" ;; *) echo "$1,files,files_append" ;; esac
}

# Fetches the list into $WORK/files ("IDX PARTITION FS MODE LENGTH SHA256 PATH" lines; MODE is
# octal, prefixed a or f for a file appended to) and checks, before any byte is written, that
# the tool each file system needs is here.
fetch_files_list() {
	local rc=0 idx part fs rest
	with_retries "$TRANSFER_RETRIES" "fetching the per-device file list" http GET "$A_FILES_URL" --max-time 60 || rc=$?
	[ "$rc" -eq 0 ] || fail_job "could not fetch the per-device file list: $HTTP_ERROR"
	sed -n 's/^file //p' "$WORK/body" > "$WORK/files"
	[ "$(wc -l < "$WORK/files")" = "$(sed -n 's/^FILES=//p' "$WORK/body")" ] || fail_job "the per-device file list is incomplete"
	while read -r idx part fs rest; do
		case $fs in
			vfat) command -v mcopy >/dev/null 2>&1 || fail_job "per-device file $idx is for a FAT partition, and mtools (mcopy) is not on this device" ;;
			ext4) command -v debugfs >/dev/null 2>&1 || fail_job "per-device file $idx is for an ext4 partition, and debugfs is not on this device" ;;
			*) fail_job "per-device file $idx is for file system '$fs', which this client cannot write" ;;
		esac
	done < "$WORK/files"
}

# Sets PART_OFFSET to the byte offset of MBR primary partition N of the target: entries at byte
# 446, 16 bytes each, type at +4, first sector (little-endian, 512-byte sectors) at +8.
partition_offset() { # N
	local n="$1"
	dd if="$TARGET_DEVICE" of="$WORK/mbr" bs=512 count=1 2>/dev/null || fail_job "reading the partition table of $TARGET_DEVICE failed"
	# shellcheck disable=SC2046 # od's numbers split into words on purpose
	set -- $(od -A n -t u1 -v -j 510 -N 2 "$WORK/mbr")
	[ "${1:-}/${2:-}" = 85/170 ] || fail_job "the image has no partition table (no MBR signature), so it has no partition $n for the per-device files"
	# shellcheck disable=SC2046
	set -- $(od -A n -t u1 -v -j $((446 + (n - 1) * 16)) -N 16 "$WORK/mbr")
	[ "$5" != 238 ] || fail_job "the image has a GPT partition table; per-device files need an MBR (DOS) partition table"
	PART_OFFSET=$(((${9} + ${10} * 256 + ${11} * 65536 + ${12} * 16777216) * 512))
	if [ "$5" = 0 ] || [ "$PART_OFFSET" -eq 0 ]; then fail_job "the image has no partition $n for the per-device files"; fi
}

# Writes a file into the FAT file system at PART_OFFSET, making its folders first.
write_vfat_file() { # local path mode
	local image="$TARGET_DEVICE@@$PART_OFFSET" rest="${2#/}" dir=''
	while :; do
		case $rest in */*) ;; *) break ;; esac
		dir="$dir/${rest%%/*}"
		rest=${rest#*/}
		MTOOLS_SKIP_CHECK=1 mdir -i "$image" "::$dir" >/dev/null 2>&1 || MTOOLS_SKIP_CHECK=1 mmd -i "$image" "::$dir" 2>>"$WORK/files.err" || return 1
	done
	MTOOLS_SKIP_CHECK=1 mcopy -o -i "$image" "$1" "::$2" 2>>"$WORK/files.err"
}

read_vfat_file() { # path local
	rm -f "$2"
	MTOOLS_SKIP_CHECK=1 mcopy -i "$TARGET_DEVICE@@$PART_OFFSET" "::$1" "$2" 2>>"$WORK/files.err"
}

# The same into ext4 with debugfs (which exits 0 even when a command fails: the read-back tells).
write_ext4_file() { # local path mode
	local image="$TARGET_DEVICE?offset=$PART_OFFSET" rest="${2#/}" dir=''
	: > "$WORK/debugfs.cmd"
	while :; do
		case $rest in */*) ;; *) break ;; esac
		dir="$dir/${rest%%/*}"
		rest=${rest#*/}
		echo "mkdir $dir" >> "$WORK/debugfs.cmd"
	done
	printf 'rm %s\nwrite %s %s\nsif %s mode 0100%s\nsif %s uid 0\nsif %s gid 0\n' "$2" "$1" "$2" "$2" "${3#0}" "$2" "$2" >> "$WORK/debugfs.cmd"
	debugfs -w -f "$WORK/debugfs.cmd" "$image" >/dev/null 2>>"$WORK/files.err"
}

read_ext4_file() { # path local
	debugfs -R "cat $1" "$TARGET_DEVICE?offset=$PART_OFFSET" > "$2" 2>>"$WORK/files.err"
}

# Reads the image's own file PATH (already on the target) into $WORK/existing-file, failing the
# job with a sentence naming it when the partition has no such file.
read_existing_file() { # fs path partition
	: > "$WORK/files.err"
	if ! "read_${1}_file" "$2" "$WORK/existing-file" < /dev/null || grep -q 'not found' "$WORK/files.err"; then
		grep -q 'not found' "$WORK/files.err" &&
			fail_job "per-device file $2 is to be appended to, but partition $3 ($1) of the image has no file $2"
		fail_job "reading $2 from partition $3 ($1) to append to it failed: $(tail -n 1 "$WORK/files.err")"
	fi
}

# Composes $WORK/appended-file: $WORK/existing-file with the text (file $2) appended at its end
# (`end`), or to its first line after one space (`first_line`): the Raspberry Pi firmware reads
# cmdline.txt's first line as the kernel command line. That line's ending is kept as it was.
compose_appended() { # where text
	local first ending='' cr
	if [ "$1" = end ]; then
		cat "$WORK/existing-file" "$2" > "$WORK/appended-file"
		return
	fi
	cr=$(printf '\r')
	first=$(head -n 1 "$WORK/existing-file")
	case $first in *"$cr") first=${first%"$cr"} ending=$cr ;; esac
	while :; do
		case $first in *' ' | *'	') first=${first%?} ;; *) break ;; esac
	done
	{
		printf '%s' "$first"
		[ -z "$first" ] || printf ' '
		cat "$2"
		printf '%s' "$ending"
		if [ "$(wc -l < "$WORK/existing-file")" -gt 0 ]; then
			printf '\n'
			tail -n +2 "$WORK/existing-file"
		fi
	} > "$WORK/appended-file"
}

# Fetches, writes and reads back each file of the list; sets FILES_REPORT. The read-back comes
# from the device itself, not the page cache (as for the image).
write_device_files() {
	local idx part fs mode len sha path url sum count=0 append source expect
	while read -r idx part fs mode len sha path <&3; do
		url="${A_FILES_URL%%\?*}/$idx?${A_FILES_URL#*\?}"
		with_retries "$TRANSFER_RETRIES" "fetching per-device file $path" http GET "$url" --max-time 60 ||
			fail_job "could not fetch per-device file $path: $HTTP_ERROR"
		cp "$WORK/body" "$WORK/device-file"
		sum=$(sha256sum < "$WORK/device-file" | cut -d ' ' -f 1)
		if [ "$sum" != "$sha" ] || [ "$(wc -c < "$WORK/device-file")" -ne "$len" ]; then
			fail_job "per-device file $path arrived as sha256 $sum, not $sha"
		fi
		partition_offset "$part"
		case $mode in
			a*) append=end mode=${mode#a} ;;
			f*) append=first_line mode=${mode#f} ;;
			*) append='' ;;
		esac
		source="$WORK/device-file"
		if [ -n "$append" ]; then
			read_existing_file "$fs" "$path" "$part"
			compose_appended "$append" "$WORK/device-file"
			source="$WORK/appended-file"
		fi
		: > "$WORK/files.err"
		"write_${fs}_file" "$source" "$path" "$mode" < /dev/null ||
			fail_job "writing $path into partition $part ($fs) failed: $(tail -n 1 "$WORK/files.err")"
		sync
		if [ -b "$TARGET_DEVICE" ]; then echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || :; fi
		"read_${fs}_file" "$path" "$WORK/read-back-file" < /dev/null ||
			fail_job "reading $path back from partition $part ($fs) failed: $(tail -n 1 "$WORK/files.err")"
		sum=$(sha256sum < "$WORK/read-back-file" | cut -d ' ' -f 1)
		if [ -n "$append" ]; then
			# The server never read the image's file: this client checks the result it composed.
			expect=$(sha256sum < "$source" | cut -d ' ' -f 1)
			[ "$sum" = "$expect" ] ||
				fail_job "per-device file $path (partition $part) reads back as sha256 $sum, not $expect (the image's file with the text appended)"
			sum="$sum:$(wc -c < "$WORK/read-back-file" | tr -d ' ')"
		fi
		FILES_REPORT="$FILES_REPORT${FILES_REPORT:+,}$idx:$sum"
		count=$((count + 1))
	done 3< "$WORK/files"
	log "$count per-device files written (or appended to) and read back"
}

# ---------------------------------------------------------------- backup

# Starts the upload's curl, reading its body from $WORK/upload.fifo. zstd on the wire: the size is
# not known in advance, so the body goes chunked (the raw size is the job's); plain: the length is
# known, so it goes with Content-Length instead of chunks. The checksum follows in the result.
start_upload() {
	if [ "$A_ENCODING" = zstd ]; then
		# shellcheck disable=SC2086 # option list split into words on purpose
		curl -sS -T - -H 'Content-Encoding: zstd' -H 'Expect:' -H 'X-Checksum-Follows: sha256' $COMPRESSED_UPLOAD_OPTIONS \
			-o "$WORK/upload.body" -w '%{http_code}' "$A_UPLOAD_URL" < "$WORK/upload.fifo" > "$WORK/upload.status" 2>"$WORK/upload.err" &
	else
		# shellcheck disable=SC2086 # option list split into words on purpose
		curl -sS -T - -H "Content-Length: $TARGET_BYTES" -H 'Transfer-Encoding:' -H 'Expect:' \
			-H 'X-Checksum-Follows: sha256' $TRANSFER_OPTIONS \
			-o "$WORK/upload.body" -w '%{http_code}' "$A_UPLOAD_URL" < "$WORK/upload.fifo" > "$WORK/upload.status" 2>"$WORK/upload.err" &
	fi
	track $!
	UPLOAD_PID=$LAST_PID
}

# Starts the reading side with the shell's tools: dd → tee → (sha256sum, [zstd →] the upload).
# Sets READER_PID (whose fd 0 position is the bytes read) and HASHER_PID.
start_shell_reader() {
	local sum_pid tee_pid zstd_pid='' into=upload.fifo
	mkfifo "$WORK/read.fifo" "$WORK/hash.fifo"
	sha256sum < "$WORK/hash.fifo" > "$WORK/backup.sha" &
	track $!
	sum_pid=$LAST_PID
	if [ "$A_ENCODING" = zstd ]; then
		mkfifo "$WORK/plain.fifo"
		into=plain.fifo
		zstd -q -c -3 -T0 < "$WORK/plain.fifo" > "$WORK/upload.fifo" 2>"$WORK/zstd.err" &
		track $!
		zstd_pid=$LAST_PID
	fi
	tee "$WORK/hash.fifo" < "$WORK/read.fifo" > "$WORK/$into" &
	track $!
	tee_pid=$LAST_PID
	dd if="$TARGET_DEVICE" of="$WORK/read.fifo" bs=$DD_BLOCK 2>"$WORK/read.err" &
	track $!
	READER_PID=$LAST_PID
	link_fifo "$READER_PID" "$tee_pid" "$WORK/read.fifo"
	link_fifo "$tee_pid" "$sum_pid" "$WORK/hash.fifo"
	if [ -n "$zstd_pid" ]; then
		link_fifo "$tee_pid" "$zstd_pid" "$WORK/plain.fifo"
		link_fifo "$zstd_pid" "$UPLOAD_PID" "$WORK/upload.fifo"
	else
		link_fifo "$tee_pid" "$UPLOAD_PID" "$WORK/upload.fifo"
	fi
	HASHER_PID=$sum_pid
}

# The same with cm4prov-io backup: one process reads (direct I/O), hashes and compresses.
start_io_reader() {
	local compress=''
	rm -f "$WORK/io.status"
	[ "$A_ENCODING" != zstd ] || compress='--zstd 3'
	# shellcheck disable=SC2086 # option words
	cm4prov-io backup --target "$TARGET_DEVICE" --bytes "$TARGET_BYTES" --status "$WORK/io.status" \
		--sha256-to "$WORK/backup.sha" $compress > "$WORK/upload.fifo" 2>"$WORK/read.err" &
	track $!
	READER_PID=$LAST_PID HASHER_PID=''
	link_fifo "$READER_PID" "$UPLOAD_PID" "$WORK/upload.fifo"
}

# The shell's upload is watched where dd reads (the pipes behind it hold little).
probe_bytes_read() {
	if [ "$IO" = helper ]; then probe_io_status uploaded; else probe_fd_position "$READER_PID" 0; fi
}

# One attempt: the target read, hashed and [compressed] into the upload. Returns 0, 1 (worth
# retrying: a network failure, a 5xx, an upload that stopped moving) or 2 (refused).
upload_once() {
	local rc=0
	rm -f "$WORK/read.fifo" "$WORK/hash.fifo" "$WORK/upload.fifo" "$WORK/plain.fifo" "$WORK/upload.status" "$WORK/upload.body"
	mkfifo "$WORK/upload.fifo"
	start_upload
	if [ "$IO" = helper ]; then start_io_reader; else start_shell_reader; fi
	watch_attempt uploading read 0 "$TARGET_BYTES" probe_bytes_read || rc=$?
	[ "$rc" -ne 3 ] || exit 1
	if [ "$rc" -eq 4 ]; then
		HTTP_ERROR="the upload stopped moving: $STALL_ERROR"
		return 1
	fi
	HTTP_STATUS=$(cat "$WORK/upload.status" 2>/dev/null || echo 000)
	# Progress reports use $WORK/body meanwhile: the upload's reply has its own file until now.
	cp "$WORK/upload.body" "$WORK/body" 2>/dev/null || : > "$WORK/body"
	# A cut upload also breaks the pipe the reader writes into: judge the network before the read.
	classify_reply "$(status_of "$UPLOAD_PID")" "$WORK/upload.err" || return $?
	[ "$(status_of "$READER_PID")" -eq 0 ] || fail_job "reading $TARGET_DEVICE failed: $(tail -n 1 "$WORK/read.err")"
	[ -z "$HASHER_PID" ] || [ "$(status_of "$HASHER_PID")" -eq 0 ] || fail_job "hashing what was read from $TARGET_DEVICE failed"
}

# upload_once, and a word to the server when it failed in a way worth another attempt.
upload_attempt() {
	local rc=0
	upload_once || rc=$?
	[ "$rc" -ne 1 ] || report_retry uploading 0 "backup upload failed ($HTTP_ERROR); starting again"
	return "$rc"
}

run_backup() {
	local rc=0 sha received
	log "job $A_JOB: backup of $TARGET_DEVICE ($TARGET_BYTES bytes${A_ENCODING:+, $A_ENCODING on the wire})"
	[ -n "$A_UPLOAD_URL" ] || fail_job "the server's backup order has no upload_url"
	with_retries "$TRANSFER_RETRIES" "backup upload" upload_attempt || rc=$?
	[ "$rc" -eq 0 ] || fail_job "backup upload failed: $HTTP_ERROR"
	received=$(json_field received_sha256)
	report_progress uploading "$TARGET_BYTES" || exit 1
	sha=$(cut -d ' ' -f 1 < "$WORK/backup.sha")
	[ -z "$received" ] || [ "$received" = "$sha" ] || log "the server received sha256 $received, the device read $sha"
	finish_job ok "$sha" "$TARGET_BYTES" ""
}

# ---------------------------------------------------------------- main loop

# A job exits the shell when it fails (fail_job), so with AFTER_JOB=poll it runs in a subshell with
# its own work folder and its own clean-up; its exit status comes back here.
run_job_and_return() { # deploy|backup
	local rc job_work="$WORK/job"
	rm -rf "$job_work"
	mkdir "$job_work"
	set +e
	(
		set -e
		# shellcheck disable=SC2030 # the job's own folder, for this subshell only
		WORK=$job_work
		BACKGROUND=''
		trap kill_background EXIT
		"run_$1"
	)
	rc=$?
	set -e
	rm -rf "$job_work"
	return "$rc"
}

cleanup() {
	kill_background
	# A job that ends the client (fail_job, a cancel, a signal) leaves the LED saying so.
	[ "$LED_SHOWN" != working ] || led_show failed
	# shellcheck disable=SC2031 # the main shell's folder (a job subshell has its own)
	[ -z "${WORK:-}" ] || rm -rf "$WORK"
}

# What the device does once its job ended ok, as the order says (clients told `finish`; AFTER_JOB=exit).
EXIT_POWEROFF=10
finish_as_ordered() {
	case ${A_FINISH:-reboot} in
		reboot) exit 0 ;;
		poweroff)
			log "job $A_JOB ok; the order says power off: exit status $EXIT_POWEROFF (the initramfs powers the device off)"
			exit "$EXIT_POWEROFF"
			;;
		wait) log "job $A_JOB ok; the order says wait: staying up with the LED steady on (unplug the device, or order more)" ;;
		*) log "job $A_JOB ok; unknown finish '$A_FINISH' from the server: ending as for reboot"; exit 0 ;;
	esac
}

main() {
	local rc started
	load_settings
	find_led
	FEATURES=$(client_features),finish
	FEATURES=$(files_feature "$FEATURES")
	WORK=$(mktemp -d /tmp/provisioning.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	log "client $CLIENT_VERSION: server $SERVER, device $MAC ${DEVICE_IP:+($DEVICE_IP) }serial ${SERIAL:-?}, target $TARGET_DEVICE ($TARGET_BYTES bytes)"
	if [ "$IO" = helper ]; then log "data path: $(cm4prov-io --version)"; else log "data path: dd and sha256sum (no cm4prov-io)"; fi

	with_retries 0 "registering" register || die "the server refused the registration: $HTTP_ERROR"
	log "registered; waiting for the operator (Deploy or Backup on the dashboard)"
	led_shows_outcome || led_show waiting
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
			deploy | backup)
				led_show working
				if [ "$AFTER_JOB" = exit ]; then
					# A failed job exits here (status 1); the clean-up shows failed on the LED.
					"run_$A_ACTION"
					led_show "done"
					finish_as_ordered
					continue
				fi
				rc=0
				run_job_and_return "$A_ACTION" || rc=$?
				if [ "$rc" -eq 0 ]; then led_show "done"; else led_show failed; fi
				log "AFTER_JOB=poll: job $A_JOB ended with status $rc; waiting for the next job"
				;;
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
