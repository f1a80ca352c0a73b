#!/usr/bin/env bash
# Compares the appliance's DNS server (appliance/dns: metrics, errors and the
# nmoscerts plugin) with stock CoreDNS's file plugin serving the same records
# from a zone file, with dnsperf over loopback:
#   nmoscerts   the appliance's chain: bind, metrics, errors, nmoscerts
#   file        the same chain with file in place of nmoscerts
#   file-bare   file alone
# The servers run one at a time. With two CPUs or more, each server runs with
# GOMAXPROCS=1 pinned to CPU 0 and dnsperf to CPU 1, so that the figure is the
# server's throughput on one core rather than the scheduler's mood.
#
# Usage: bench/dnsperf/run.sh
# Environment: DURATION (seconds per run, 10), CLIENTS (dnsperf -c, 4),
# MAXQPS (dnsperf -Q, 500000), ROUNDS (runs per server, alternating, 2),
# DNSPERF_ARGS (extra dnsperf arguments, "-e": queries with EDNS0),
# OUR_PORT (15353), STOCK_PORT (15354).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-4}"
MAXQPS="${MAXQPS:-500000}"
ROUNDS="${ROUNDS:-2}"
DNSPERF_ARGS="${DNSPERF_ARGS--e}"
OUR_PORT="${OUR_PORT:-15353}"
STOCK_PORT="${STOCK_PORT:-15354}"

require_tools "" go dnsperf dig
start_work

echo "building..."
(cd "$here" && go build -o "$work/nmosdns" ./nmosdns && go build -o "$work/stockcoredns" ./stockcoredns)
"$work/nmosdns" -write-zone "$work/zone.db"

# wait_ready PORT: until the server answers the zone's SOA.
wait_ready() {
	for _ in $(seq 100); do
		if dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short studio.example.test SOA 2>/dev/null | grep -q hostmaster; then
			return 0
		fi
		sleep 0.1
	done
	echo "run.sh: server on port $1 does not answer" >&2
	return 1
}

# check PORT: the answers the benchmark relies on.
check() {
	local ptr
	ptr="$(dig @127.0.0.1 -p "$1" +short _nmos-certs._tcp.studio.example.test PTR | wc -l)"
	[ "$ptr" -eq 2 ] || { echo "run.sh: port $1 answers $ptr PTR records, want 2" >&2; return 1; }
}

# cpu_ticks PID: user and system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# bench NAME PORT PID: one dnsperf run; appends "NAME qps lost cpu-us-per-query".
# The server's CPU time per query is steadier than queries/s when other
# work shares the machine.
bench() {
	local out qps lost completed t0 t1
	t0="$(cpu_ticks "$3")"
	# shellcheck disable=SC2086 # DNSPERF_ARGS is a list of arguments
	out="$("${client_cpu[@]}" dnsperf -s 127.0.0.1 -p "$2" -d "$here/queries.txt" -l "$DURATION" -c "$CLIENTS" -Q "$MAXQPS" $DNSPERF_ARGS)"
	t1="$(cpu_ticks "$3")"
	qps="$(awk '/Queries per second:/ {print $4}' <<<"$out")"
	lost="$(awk '/Queries lost:/ {print $3}' <<<"$out")"
	completed="$(awk '/Queries completed:/ {print $3}' <<<"$out")"
	echo "$1 $qps $lost $(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$completed" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
}

server_cpu=()
client_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	server_cpu=(env GOMAXPROCS=1 taskset -c 0)
	client_cpu=(taskset -c 1)
fi

run_one() {
	case "$1" in
	nmoscerts)
		"${server_cpu[@]}" "$work/nmosdns" -listen "127.0.0.1:$OUR_PORT" >/dev/null &
		port=$OUR_PORT
		;;
	file)
		"${server_cpu[@]}" "$work/stockcoredns" -listen "127.0.0.1:$STOCK_PORT" -zone studio.example.test. -zonefile "$work/zone.db" >/dev/null &
		port=$STOCK_PORT
		;;
	file-bare)
		"${server_cpu[@]}" "$work/stockcoredns" -bare -listen "127.0.0.1:$STOCK_PORT" -zone studio.example.test. -zonefile "$work/zone.db" >/dev/null &
		port=$STOCK_PORT
		;;
	esac
	pid=$!
	pids=("$pid")
	wait_ready "$port"
	check "$port"
	bench "$1" "$port" "$pid" >>"$work/results"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pids=()
}

echo "dnsperf -s 127.0.0.1 -p PORT -d queries.txt -l $DURATION -c $CLIENTS -Q $MAXQPS $DNSPERF_ARGS ($(grep -c . "$here/queries.txt") query kinds), $ROUNDS rounds"
if [ "${#server_cpu[@]}" -gt 0 ]; then echo "server: ${server_cpu[*]}; dnsperf: ${client_cpu[*]}"; fi
for _ in $(seq "$ROUNDS"); do
	run_one nmoscerts
	run_one file
	run_one file-bare
done

echo
printf '%-10s %12s %8s %16s\n' server "queries/s" lost "CPU us/query"
while read -r name qps lost cpu; do
	printf '%-10s %12.0f %8s %16s\n' "$name" "$qps" "$lost" "$cpu"
done <"$work/results"
awk '{q[$1] += $2; c[$1] += $4; n[$1]++} END {
	printf "\nmean            queries/s   CPU us/query\n"
	split("nmoscerts file file-bare", names, " ")
	for (i = 1; i <= 3; i++) {
		s = names[i]
		printf "%-10s %14.0f %14.1f\n", s, q[s] / n[s], c[s] / n[s]
	}
	printf "nmoscerts/file: %.2fx queries/s, %.2fx CPU per query; nmoscerts/file-bare: %.2fx, %.2fx\n",
		(q["nmoscerts"] / n["nmoscerts"]) / (q["file"] / n["file"]), (c["nmoscerts"] / n["nmoscerts"]) / (c["file"] / n["file"]),
		(q["nmoscerts"] / n["nmoscerts"]) / (q["file-bare"] / n["file-bare"]), (c["nmoscerts"] / n["nmoscerts"]) / (c["file-bare"] / n["file-bare"])
}' "$work/results"

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	awk -v duration="$DURATION" -v clients="$CLIENTS" -v rounds="$ROUNDS" '
		{q[$1] += $2; c[$1] += $4; n[$1]++}
		END {
			printf "{\"duration_s\": %d, \"clients\": %d, \"rounds\": %d, \"servers\": {", duration, clients, rounds
			split("nmoscerts file file-bare", names, " ")
			for (i = 1; i <= 3; i++) {
				s = names[i]
				printf "%s\"%s\": {\"qps\": %.0f, \"cpu_us_per_query\": %.2f}", (i > 1 ? ", " : ""), s, q[s] / n[s], c[s] / n[s]
			}
			printf "}, \"ratio\": %.4f, \"ratio_bare\": %.4f}\n", (q["nmoscerts"] / n["nmoscerts"]) / (q["file"] / n["file"]),
				(q["nmoscerts"] / n["nmoscerts"]) / (q["file-bare"] / n["file-bare"])
		}' "$work/results" >"$REPORT_DIR/dnsperf.json"
	pinned="all on the machine's CPUs"
	if [ "${#server_cpu[@]}" -gt 0 ]; then pinned="each server with GOMAXPROCS=1 on CPU 0, dnsperf on CPU 1"; fi
	{
		echo "## DNS-SD"
		echo
		echo "\`bench/dnsperf/run.sh\` (defaults: \`DURATION=$DURATION CLIENTS=$CLIENTS ROUNDS=$ROUNDS\`): dnsperf"
		echo "\`-c $CLIENTS -Q $MAXQPS $DNSPERF_ARGS\` over UDP on loopback with the queries of \`bench/dnsperf/queries.txt\`"
		echo "(PTR, SRV, TXT, A, AAAA, SOA, NXDOMAIN). nmoscerts is the appliance's DNS server (CoreDNS"
		echo "v1.15.0 with the nmoscerts plugin, metrics and errors); file is stock CoreDNS v1.15.0 with the"
		echo "same chain and the same records from a zone file; file-bare is the file plugin alone. The"
		echo "servers run one at a time, $pinned; means of $ROUNDS runs."
		echo
		echo "| server | queries/s | server CPU µs/query | vs file |"
		echo "| --- | --- | --- | --- |"
		jq -r '.servers as $s | ["nmoscerts", "file", "file-bare"][] as $n
			| "| \($n) | \($s[$n].qps) | \($s[$n].cpu_us_per_query) | \($s[$n].qps / $s.file.qps * 100 | round / 100)x |"' \
			"$REPORT_DIR/dnsperf.json"
		echo
		echo "The answers for the service's names are built when the configuration is loaded and copied"
		echo "out with the query's ID and flags; the file plugin looks the records up in its zone tree and"
		echo "builds each answer."
	} >"$REPORT_DIR/dnsperf.md"
fi
