#!/usr/bin/env bash
# Compares EST enrollment throughput of nmos-certs with globalsign's
# reference EST server (github.com/globalsign/est/cmd/estserver, the
# version in go.mod), on loopback, with bench/est/estload:
#   nmos-certs   the appliance as "nmos-certs serve" runs it: policy checks,
#                ECDSA P-256 intermediate, every certificate stored durably
#                (SQLite, WAL, synced before COMMIT is answered) before it is returned
#   globalsign   estserver with its mock CA: an ECDSA P-256 intermediate
#                under an ECDSA P-384 root (the shape of ours), nothing stored
# Every enrollment is a new TCP connection and a full TLS 1.3 handshake
# with the same manufacturer device certificate (ECDSA P-256, trusted by
# both servers), a fresh ECDSA P-256 key and CSR (pre-generated), and a
# checked certs-only answer. See estload's documentation.
#
# The servers run at once, idle when not measured. For each client count
# they take turns (ROUNDS runs each, the order rotating every round), so
# that drift in the machine's load spreads over all of them; the summary
# gives medians. The server's CPU time per enrollment comes from
# /proc/<pid>/stat (utime+stime) over each timed run. With BASELINE_BIN,
# a second nmos-certs build (say, of the previous commit) is measured in
# the same rotation as "baseline", which is how to compare two builds on
# a machine whose load changes.
#
# TLS as alike as the reference server allows. Its TLS settings are fixed
# in its code: TLS 1.2 and 1.3, key exchange P-521/P-384/P-256 only,
# client certificates verified by crypto/tls when given. nmos-certs offers
# TLS 1.2 and 1.3, X25519/P-256/P-384, and verifies client certificates
# itself. By default the client offers P-256 alone (CURVES=P256), so both
# do the same key exchange; with CURVES= (Go's defaults, which lead with
# X25519MLKEM768 and X25519) the reference server answers every handshake
# with a HelloRetryRequest for P-256 and nmos-certs uses X25519. Other
# differences: the reference server writes a log line per request (to a
# file here) where nmos-certs at log level warn writes none; it stores
# nothing and checks no policy.
#
# CPUs: by default the servers and estload share the machine's CPUs, as
# one machine running both does. With PIN=1 (and two CPUs or more), every
# server runs on CPU 0 and estload on CPU 1: each server then has one
# whole core, as with the devices on other machines, at the price of
# single-CPU scheduling (GOMAXPROCS 1), under which every blocking system
# call of the store hands the CPU to another thread.
#
# Usage: bench/est/run.sh
# Environment: DURATION (seconds per run, 10), CLIENTS ("4 16 64"), PIN (0),
# REPORT_NAME (est: the name of the REPORT_DIR files),
# STEAL_MAX (5: a run with more of the CPUs stolen by the hypervisor, in %,
# is run again), RETRY_BUDGET (6: how many runs may be run again in all),
# ROUNDS (runs per server and client count, 2), CURVES (P256),
# NMOS_CERTS_BIN (an nmos-certs binary to measure instead of building one),
# BASELINE_BIN (other nmos-certs binaries to measure alongside, space-separated,
# each PATH or LABEL=PATH),
# OUR_PORT (28443; +1 HTTP, +2 DNS; the baselines use +10 to +12, +20 to +22 ...),
# REF_PORT (28450).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-4 16 64}"
ROUNDS="${ROUNDS:-2}"
CURVES="${CURVES-P256}"
PIN="${PIN:-0}"
STEAL_MAX="${STEAL_MAX:-5}"
RETRY_BUDGET="${RETRY_BUDGET:-6}"
REPORT_NAME="${REPORT_NAME:-est}"
OUR_PORT="${OUR_PORT:-28443}"
REF_PORT="${REF_PORT:-28450}"
HOST=est.studio.example.test

require_tools "" go jq curl

server_cpu=()
load_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	server_cpu=(taskset -c 0)
	load_cpu=(taskset -c 1)
fi

start_work

echo "building..."
(
	cd "$root"
	if [ -z "${NMOS_CERTS_BIN:-}" ]; then go build -o "$work/nmos-certs" .; fi
	go build -o "$work/estserver" github.com/globalsign/est/cmd/estserver
	go build -o "$work/estload" ./bench/est/estload
	go build -o "$work/estpki" ./bench/est/estpki
)
nmos_bin="${NMOS_CERTS_BIN:-$work/nmos-certs}"
"$work/estpki" -dir "$work/pki" -hostname "$HOST"

declare -A port anchor pid
names=(nmos-certs globalsign)

# start_nmos NAME BINARY EST_PORT: a fresh CA in a temporary data directory.
start_nmos() {
	local name="$1" bin="$2" p="$3"
	appliance_config "$work/$name-data" "$p" off warn >"$work/$name.yaml"
	"${server_cpu[@]}" "$bin" serve --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
	pid[$name]=$!
	pids+=("$!")
	port[$name]=$p
	anchor[$name]="$work/$name-root.pem"
}
start_nmos nmos-certs "$nmos_bin" "$OUR_PORT"
# BASELINE_BIN: one or more builds, space-separated, each PATH or
# LABEL=PATH; a bare PATH is labelled baseline (baseline2, baseline3 ...
# after the first). Each gets ports 10 apart from the one before.
n_base=0
for spec in ${BASELINE_BIN:-}; do
	n_base=$((n_base + 1))
	label=baseline
	if [ "$n_base" -gt 1 ]; then label="baseline$n_base"; fi
	if [[ "$spec" == *=* ]]; then label="${spec%%=*}" spec="${spec#*=}"; fi
	if [ -n "${port[$label]:-}" ] || [ "$label" = globalsign ] || [[ "$label" == *[!A-Za-z0-9_.-]* ]]; then
		echo "run.sh: BASELINE_BIN label '$label' is taken or not a plain word" >&2
		exit 1
	fi
	if [ ! -x "$spec" ]; then
		echo "run.sh: BASELINE_BIN $spec is not an executable file" >&2
		exit 1
	fi
	start_nmos "$label" "$spec" "$((OUR_PORT + 10 * n_base))"
	names+=("$label")
done

# The reference server: its mock CA and TLS certificate from estpki, the
# manufacturer root as its client CA, no rate limit.
cat >"$work/estserver.json" <<EOF
{
  "mock_ca": {"certificates": "$work/pki/ref-ca.pem", "private_key": "$work/pki/ref-ca.key"},
  "tls": {
    "listen_address": "127.0.0.1:$REF_PORT",
    "certificates": "$work/pki/ref-server.pem",
    "private_key": "$work/pki/ref-server.key",
    "client_cas": ["$work/pki/mfr-root.pem"]
  },
  "healthcheck_password": "bench",
  "rate_limit": 0,
  "timeout": 30,
  "log_file": "$work/estserver.log"
}
EOF
"${server_cpu[@]}" "$work/estserver" -config "$work/estserver.json" >"$work/estserver.out" 2>&1 &
pid[globalsign]=$!
pids+=("$!")
port[globalsign]=$REF_PORT
anchor[globalsign]="$work/pki/ref-root.pem"

# wait_ok URL [curl options]: until it answers 200.
wait_ok() {
	local url="$1"
	shift
	for _ in $(seq 150); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" || true)" = 200 ]; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: $url does not answer" >&2
	cat "$work"/*.log "$work/estserver.out" >&2 || true
	return 1
}
for name in "${names[@]}"; do
	if [ "$name" = globalsign ]; then continue; fi
	wait_ok "http://127.0.0.1:$((port[$name] + 1))/ca/ecdsa-root-1.pem"
	curl -s -o "${anchor[$name]}" "http://127.0.0.1:$((port[$name] + 1))/ca/ecdsa-root-1.pem"
done
wait_ok "https://$HOST:$REF_PORT/.well-known/est/cacerts" --cacert "$work/pki/ref-root.pem" --resolve "$HOST:$REF_PORT:127.0.0.1"

# load NAME CLIENTS OUT [estload flags]: one run against NAME.
load() {
	local name="$1" clients="$2" out="$3"
	shift 3
	if ! kill -0 "${pid[$name]}" 2>/dev/null; then
		echo "run.sh: the $name server (pid ${pid[$name]}) is no longer running" >&2
		exit 1
	fi
	"${load_cpu[@]}" "$work/estload" -server "127.0.0.1:${port[$name]}" -servername "$HOST" -cacert "${anchor[$name]}" \
		-cert "$work/pki/device.pem" -key-file "$work/pki/device.key" \
		-label "$name" -c "$clients" -curves "$CURVES" -server-pid "${pid[$name]}" -out json "$@" >"$out"
}

# timed NAME CLIENTS OUT: one timed run of the rotation. Room for 2500
# enrollments a second in the key pool (estload makes keys inline past
# that, on the clock, and says how many in "inline keygen").
timed() {
	load "$1" "$2" "$3" -d "${DURATION}s" -warmup "$((2 * $2))" -pool "$((DURATION * 2500 + 2 * $2))"
}

# A short check of each server (and a warm-up): no errors allowed.
for name in "${names[@]}"; do
	load "$name" 2 "$work/check-$name.json" -n 40
	if [ "$(jq .error_count "$work/check-$name.json")" != 0 ]; then
		echo "run.sh: $name fails enrollments:" >&2
		jq -r '.errors, .first_error' "$work/check-$name.json" >&2
		exit 1
	fi
	echo "$name: $(jq -r .tls "$work/check-$name.json")"
done

retry_budget="$RETRY_BUDGET"
repeated=0
echo "estload -c C -d ${DURATION}s -curves '${CURVES}' (ECDSA P-256 keys, new TLS connection per enrollment), $ROUNDS rounds"
for c in $CLIENTS; do
	for r in $(seq "$ROUNDS"); do
		n=${#names[@]}
		for k in $(seq 0 $((n - 1))); do
			name="${names[$(((r - 1 + k) % n))]}"
			f="$work/run-$name-$c-$r.json"
			timed "$name" "$c" "$f"
			# A run during which the hypervisor took more than STEAL_MAX %
			# of the CPUs is run again (twice at most, RETRY_BUDGET in all),
			# and the attempt with the least stolen is kept.
			tries=0
			while [ "$tries" -lt 2 ] && [ "$retry_budget" -gt 0 ] && jq -e --argjson max "$STEAL_MAX" '(.machine_steal_pct // 0) > $max' "$f" >/dev/null; do
				tries=$((tries + 1)) retry_budget=$((retry_budget - 1)) repeated=$((repeated + 1))
				echo "  ($name c=$c: $(jq .machine_steal_pct "$f")% of the CPUs stolen, over STEAL_MAX=$STEAL_MAX: run again)"
				timed "$name" "$c" "$work/retry.json"
				if jq -n -e --slurpfile a "$f" --slurpfile b "$work/retry.json" '($b[0].machine_steal_pct // 0) < ($a[0].machine_steal_pct // 0)' >/dev/null; then
					mv "$work/retry.json" "$f"
				else
					rm -f "$work/retry.json"
				fi
			done
			jq -r '"  \(.label) c=\(.clients): \(.enroll_per_s)/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, server CPU \(.server_cpu_ms_per_enroll) ms/enroll, errors \(.error_count), inline keygen \(.inline_keygen), estload CPU \(.client_cpu_ms_per_enroll) ms/enroll, TCP segments \(.tcp_segments_per_enroll), machine idle \(.machine_idle_pct)%, stolen \(.machine_steal_pct)%"' "$f"
		done
	done
done

summary='
	def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def median_or_null(f): map(f // empty) | if length > 0 then median else null end;
	group_by([.clients, .label]) | map({
		label: .[0].label, clients: .[0].clients,
		rate: (map(.enroll_per_s) | median), p50: (map(.latency_ms.p50) | median),
		p99: (map(.latency_ms.p99) | median), cpu: (map(.server_cpu_ms_per_enroll) | median),
		client_cpu: (map(.client_cpu_ms_per_enroll) | median),
		segments: median_or_null(.tcp_segments_per_enroll),
		idle: median_or_null(.machine_idle_pct),
		steal: median_or_null(.machine_steal_pct),
		errors: (map(.error_count) | add)
	})'
jq -s "$summary"' | group_by(.clients) | map(
		(map(select(.label == "globalsign"))[0]) as $g
		| map(. + {ratio: (if $g then .rate / $g.rate else null end), cpu_ratio: (if $g then $g.cpu / .cpu else null end)}))
	| flatten | sort_by(.clients, .label)' "$work"/run-*.json >"$work/summary.json"
table() {
	printf '| server | clients | enroll/s | p50 ms | p99 ms | server CPU ms/enroll | estload CPU ms/enroll | TCP segments/enroll | machine idle %% | stolen %% | enroll/s vs globalsign | errors |\n'
	printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
	jq -r '.[] | "| \(.label) | \(.clients) | \(.rate | round) | \(.p50 * 10 | round / 10) | \(.p99 * 10 | round / 10) | \(.cpu * 100 | round / 100) | \(.client_cpu * 100 | round / 100) | \(if .segments then (.segments * 10 | round / 10) else "" end) | \(if .idle then (.idle | round) else "" end) | \(if .steal then (.steal * 10 | round / 10) else "" end) | \(if .label == "globalsign" then "" else "\(.ratio * 100 | round / 100)x" end) | \(.errors) |"' "$work/summary.json"
}
echo
table
pinned="The servers and estload share the machine's CPUs"
if [ ${#server_cpu[@]} -gt 0 ]; then pinned="Each server runs alone on CPU 0, estload on CPU 1"; fi
repeats="no run had more than ${STEAL_MAX} % of the CPUs stolen by the hypervisor"
if [ "$repeated" -gt 0 ]; then repeats="runs with more than ${STEAL_MAX} % of the CPUs stolen by the hypervisor were made again ($repeated extra runs), keeping the attempt with the least"; fi
echo "(medians of $ROUNDS runs of ${DURATION}s each; ${pinned,}; server CPU: the server process's utime+stime per successful enrollment; $repeats)"

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	jq --arg pinned "$pinned" --arg curves "$CURVES" --argjson rounds "$ROUNDS" --argjson duration "$DURATION" \
		--argjson repeated "$repeated" --argjson steal_max "$STEAL_MAX" \
		'{pinned: $pinned, curves: $curves, rounds: $rounds, duration_s: $duration, steal_max_pct: $steal_max, repeated_runs: $repeated, results: .}' \
		"$work/summary.json" >"$REPORT_DIR/$REPORT_NAME.json"
	{
		if [ "$REPORT_NAME" = est ]; then echo "## EST enrollment"; else echo "### EST enrollment, each server alone on one CPU"; fi
		echo
		echo "\`DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=\"$CLIENTS\" CURVES=$CURVES PIN=$PIN bench/est/run.sh\`."
		echo "Each enrollment is a new TCP connection and a full TLS 1.3 handshake with a manufacturer device"
		echo "certificate, then \`simpleenroll\` with a fresh ECDSA P-256 key's CSR; the answer is checked."
		echo "nmos-certs runs as \`nmos-certs serve\` does and commits every certificate to SQLite, its WAL"
		echo "synced to disk, before answering; globalsign's \`estserver\` (v1.0.6, its mock CA) stores"
		echo "nothing. Both present an ECDSA P-256 server certificate and sign with a P-256 intermediate"
		echo "under a P-384 root; key exchange P-256. $pinned. The servers take turns; medians of $ROUNDS"
		echo "runs of ${DURATION} s. Server CPU is the process's utime+stime per successful enrollment, estload"
		echo "CPU the load generator's own; TCP segments are all those the machine sent (both ends, on"
		echo "loopback) per enrollment. Machine idle and stolen are the shares of the CPUs' time, over"
		echo "the run, that nobody used and that the hypervisor gave to other machines; $repeats."
		echo
		table
		echo
		echo "One enrollment, by hand: \`go build ./bench/est/estload\`, then"
		echo "\`estload -server 127.0.0.1:8443 -servername est.studio.example.test -cacert root.pem -cert device.pem -key-file device.key -c 16 -d 10s\`."
	} >"$REPORT_DIR/$REPORT_NAME.md"
fi
