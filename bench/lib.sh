# shellcheck shell=bash
# Helpers shared by the benchmark scripts (bench/*/run.sh), which source
# this file first:
#
#   . "$(dirname "$0")/../lib.sh"
#
# Sourcing it sets here (the directory of the running script) and root
# (the repository), whatever the current directory.

# shellcheck disable=SC2034 # here and root are the sourcing script's
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC2034
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# require_tools HINT TOOL...: exits with an error naming the first TOOL
# that is not on PATH, followed by HINT (how to install it) unless HINT is
# empty.
require_tools() {
	local hint="$1" tool
	shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed${hint:+ $hint}" >&2; exit 1; }
	done
}

# start_work: a temporary directory, $work, and an empty list of background
# processes, $pids, to which the script adds those it starts. When the
# script exits, the processes still listed are stopped (stop_pids) and
# $work is removed; if the script defines a function on_failure, it runs
# first when the exit status is not 0.
start_work() {
	work="$(mktemp -d)"
	pids=()
	trap finish_work EXIT
}

# finish_work: what start_work has run on exit.
finish_work() {
	local status=$?
	if [ "$status" -ne 0 ] && declare -F on_failure >/dev/null; then
		on_failure || true
	fi
	stop_pids
	rm -rf "$work"
}

# stop_pids: sends SIGTERM to every process in $pids, waits for them all
# and empties the list.
stop_pids() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	pids=()
}

# appliance_config DATA_DIR PORT UI LEVEL [FORMAT]: the YAML configuration
# of an appliance for the domain studio.example.test, named $HOST (the
# calling script's), its data in DATA_DIR, listening on loopback: EST on
# PORT, HTTP on PORT+1, DNS on PORT+2 and, when UI is "on", metrics on
# PORT+3 and the web UI on PORT+4 (with UI "off", neither). EST clients
# are trusted under the manufacturer root that bench/est/estpki writes in
# $work/pki. Logging at LEVEL, in FORMAT when given.
# shellcheck disable=SC2154 # HOST is the calling script's
appliance_config() {
	local data="$1" p="$2" metrics='"off"' web='"off"'
	if [ "$3" = on ]; then
		metrics="127.0.0.1:$((p + 3))"
		web="127.0.0.1:$((p + 4))"
	fi
	cat <<EOF
domain: studio.example.test
hostname: $HOST
addresses: [127.0.0.1]
data_dir: $data
listen:
  est: 127.0.0.1:$p
  http: 127.0.0.1:$((p + 1))
  dns: 127.0.0.1:$((p + 2))
  metrics: $metrics
  web: $web
est:
  trusted_client_roots: [$work/pki/mfr-root.pem]
log:
  level: $4
EOF
	if [ -n "${5:-}" ]; then
		echo "  format: $5"
	fi
}
