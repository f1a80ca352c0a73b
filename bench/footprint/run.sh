#!/usr/bin/env bash
# The appliance's footprint:
#   - the size of the binary "make build" makes (static, CGO_ENABLED=0,
#     stripped), checked to be static and stripped;
#   - start time with an existing CA: "nmos-certs ca init" first, one start
#     to let the appliance issue its own TLS certificates, then STARTS
#     starts, each timed from the exec until every listener answers (EST
#     and UI: a TLS handshake; HTTP: GET /ca/ecdsa-root-1.pem; metrics:
#     GET /metrics; DNS: an SOA query over UDP and over TCP), probed every
#     5 ms by bench/footprint/fptool, and how long it takes to stop on
#     SIGTERM;
#   - resident memory (VmRSS from /proc/<pid>/status): IDLE seconds after
#     start, right after a load (CLIENTS clients enrolling for LOAD
#     seconds with bench/est/estload, then 500 OCSP GETs for enrolled
#     certificates, twice each, and 20 DNS queries), and IDLE seconds after
#     that; with the Go heap in use from /metrics at each point.
#
# Usage: bench/footprint/run.sh
# Environment: STARTS (5), IDLE (seconds, 5), LOAD (seconds, 5),
# CLIENTS (4), PORT (19090; +1 HTTP, +2 DNS, +3 metrics, +4 UI),
# REPORT_DIR (write footprint.md and footprint.json there).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
STARTS="${STARTS:-5}"
IDLE="${IDLE:-5}"
LOAD="${LOAD:-5}"
CLIENTS="${CLIENTS:-4}"
PORT="${PORT:-19090}"
HOST=est.studio.example.test
ZONE=studio.example.test

require_tools "(Debian packages: make, curl, jq, bind9-dnsutils; Go 1.26 from go.dev)" go make curl jq dig
start_work

echo "building..."
make -s -C "$root" build BIN="$work/nmos-certs"
(
	cd "$root"
	go build -o "$work/fptool" ./bench/footprint/fptool
	go build -o "$work/estload" ./bench/est/estload
	go build -o "$work/estpki" ./bench/est/estpki
	go build -o "$work/scaletool" ./bench/scale/scaletool
)
"$work/fptool" binary "$work/nmos-certs" >"$work/binary.json"
if [ "$(jq -r '.static and .stripped' "$work/binary.json")" != true ]; then
	echo "run.sh: the binary of make build is not static and stripped:" >&2
	cat "$work/binary.json" >&2
	exit 1
fi
"$work/estpki" -dir "$work/pki" -hostname "$HOST" >/dev/null

# config LEVEL FORMAT: the configuration, with that logging.
config() { appliance_config "$work/data" "$PORT" on "$1" "$2"; }
# The timed starts log at level info in JSON, to set the appliance's own
# milestones against the exec; the memory run logs warnings only.
config info json >"$work/cfg-start.yaml"
config warn text >"$work/cfg.yaml"
"$work/nmos-certs" ca init --config "$work/cfg.yaml" >/dev/null

listeners=(-est "127.0.0.1:$PORT" -http "127.0.0.1:$((PORT + 1))" -dns "127.0.0.1:$((PORT + 2))"
	-metrics "127.0.0.1:$((PORT + 3))" -web "127.0.0.1:$((PORT + 4))" -zone "$ZONE")
# fpstart NAME: one start and stop, measured by fptool into NAME.json,
# with the appliance's log in NAME.log.
fpstart() {
	if ! "$work/fptool" start -bin "$work/nmos-certs" -config "$work/cfg-start.yaml" -log "$work/$1.log" -out "$work/$1.json" -stop "${listeners[@]}"; then
		echo "run.sh: the appliance's output:" >&2
		tail -20 "$work/$1.log" >&2
		return 1
	fi
}

fpstart first
for i in $(seq "$STARTS"); do
	fpstart "start-$i"
	jq -r --arg i "$i" '"start \($i): all listeners in \(.all_ms) ms, stopped in \(.stop_ms) ms"' "$work/start-$i.json"
done

# Milestones of each start from its log, in ms after the exec: the first
# delegated OCSP responder key ready (one per CA generation, loaded from
# the data directory, or made and certified when none is kept or it is
# due for renewal), the responder ready ("issuers loaded"), and the first
# listener bound.
# shellcheck disable=SC2016 # a jq program
milestones='
	def t: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") | (.s + "Z" | fromdate) + ("0." + (.f // "0") | tonumber);
	def at(f): [.[] | select(f) | .time | t] | min;
	($start[0].exec | t) as $t0
	| [inputs | fromjson? // empty] as $log
	| def ms(x): if x == null then null else (x - $t0) * 1000 end;
	{
		first_responder_key: ms($log | at(.msg == "responder certificate loaded" or .msg == "responder certificate issued")),
		responder_ready: ms($log | at(.msg == "issuers loaded")),
		listening: ms($log | at(.msg == "listening"))
	}
'
for i in $(seq "$STARTS"); do
	jq -nR --slurpfile start "$work/start-$i.json" "$milestones" "$work/start-$i.log" >"$work/milestones-$i.json"
done

# The appliance that stays up for the memory figures; fptool is its parent
# and stops it when it gets SIGTERM.
"$work/fptool" start -bin "$work/nmos-certs" -config "$work/cfg.yaml" -log "$work/serve.log" -out "$work/ready.json" "${listeners[@]}" &
pid=$!
pids=("$pid")
for _ in $(seq 3000); do
	[ -s "$work/ready.json" ] && break
	kill -0 "$pid" 2>/dev/null || { echo "run.sh: the appliance did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
	sleep 0.01
done
spid="$(jq -r .pid "$work/ready.json")"
metrics="http://127.0.0.1:$((PORT + 3))/metrics"
# mem NAME: from /proc/<pid>/status, VmRSS, its anonymous and file-backed
# parts and VmHWM (KiB); from /metrics, the Go heap in use, the heap size
# at which the next collection starts, the heap memory the runtime keeps
# from the OS (in use or not, less what it released) and all the memory
# it ever obtained (bytes). As JSON.
mem() {
	curl -sf "$metrics" >"$work/metrics.txt"
	awk -v name="$1" '
		FILENAME ~ /metrics/ && $1 == "go_memstats_heap_inuse_bytes" {heap = $2}
		FILENAME ~ /metrics/ && $1 == "go_memstats_sys_bytes" {gosys = $2}
		FILENAME ~ /metrics/ && $1 == "go_memstats_next_gc_bytes" {goal = $2}
		FILENAME ~ /metrics/ && $1 == "go_memstats_heap_sys_bytes" {hsys = $2}
		FILENAME ~ /metrics/ && $1 == "go_memstats_heap_released_bytes" {hrel = $2}
		FILENAME ~ /status/ && $1 == "VmRSS:" {rss = $2}
		FILENAME ~ /status/ && $1 == "RssAnon:" {anon = $2}
		FILENAME ~ /status/ && $1 == "RssFile:" {file = $2}
		FILENAME ~ /status/ && $1 == "VmHWM:" {hwm = $2}
		END {
			printf "{\"point\": \"%s\", \"rss_kib\": %d, \"anon_kib\": %d, \"file_kib\": %d, \"hwm_kib\": %d, ", name, rss, anon, file, hwm
			printf "\"heap_inuse_bytes\": %.0f, \"heap_goal_bytes\": %.0f, \"heap_retained_bytes\": %.0f, \"go_sys_bytes\": %.0f}\n", heap, goal, hsys - hrel, gosys
		}
	' "$work/metrics.txt" "/proc/$spid/status"
}

sleep "$IDLE"
mem idle >"$work/mem-idle.json"

curl -sf -o "$work/root.pem" "http://127.0.0.1:$((PORT + 1))/ca/ecdsa-root-1.pem"
"$work/estload" -server "127.0.0.1:$PORT" -servername "$HOST" -cacert "$work/root.pem" \
	-cert "$work/pki/device.pem" -key-file "$work/pki/device.key" -label footprint -c "$CLIENTS" -curves P256 \
	-server-pid "$spid" -out json -d "${LOAD}s" -pool "$((LOAD * 900 + 2 * CLIENTS))" >"$work/enroll.json"
if [ "$(jq .error_count "$work/enroll.json")" != 0 ]; then
	echo "run.sh: enrollments failed: $(jq -r .first_error "$work/enroll.json")" >&2
	exit 1
fi
"$work/scaletool" serials -db "$work/data/nmos-certs.db" -newest 500 -out "$work/enrolled.txt" >/dev/null
"$work/scaletool" ocsp -base "http://127.0.0.1:$((PORT + 1))" -serials "$work/enrolled.txt" -rounds 1 >"$work/ocsp.json"
for _ in $(seq 10); do
	for proto in +notcp +tcp; do
		dig -p "$((PORT + 2))" @127.0.0.1 "$proto" +short PTR "_nmos-certs._tcp.$ZONE" >/dev/null
	done
done
mem load >"$work/mem-load.json"
sleep "$IDLE"
mem after >"$work/mem-after.json"
kill "$pid"
wait "$pid" || true
pids=()

jq -n --slurpfile bin "$work/binary.json" --slurpfile first "$work/first.json" \
	--slurpfile starts <(cat "$work"/start-*.json) --slurpfile milestones <(cat "$work"/milestones-*.json) --slurpfile mem <(cat "$work"/mem-idle.json "$work"/mem-load.json "$work"/mem-after.json) \
	--slurpfile enroll "$work/enroll.json" --slurpfile ocsp "$work/ocsp.json" \
	--argjson idle "$IDLE" --argjson load "$LOAD" --argjson clients "$CLIENTS" '
	def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	{
		binary: $bin[0],
		first_start_ms: $first[0].all_ms,
		start_ms: {median: ($starts | map(.all_ms) | median), min: ($starts | map(.all_ms) | min), max: ($starts | map(.all_ms) | max), runs: ($starts | map(.all_ms))},
		listener_ready_ms: ($starts[0].ready_ms | keys | map({key: ., value: (. as $k | $starts | map(.ready_ms[$k]) | median)}) | from_entries),
		milestones_ms: ($milestones[0] | keys | map({key: ., value: (. as $k | $milestones | map(.[$k]) | if any(. == null) then null else median end)}) | from_entries),
		stop_ms: ($starts | map(.stop_ms) | median),
		memory: ($mem | map({key: .point, value: {
			rss_mib: (.rss_kib / 1024), anon_mib: (.anon_kib / 1024), file_mib: (.file_kib / 1024), peak_rss_mib: (.hwm_kib / 1024),
			go_heap_inuse_mib: (.heap_inuse_bytes / 1048576), go_heap_goal_mib: (.heap_goal_bytes / 1048576), go_heap_retained_mib: (.heap_retained_bytes / 1048576), go_sys_mib: (.go_sys_bytes / 1048576)
		}}) | from_entries),
		idle_s: $idle, load: {seconds: $load, clients: $clients, enrollments: $enroll[0].enrollments, enroll_per_s: $enroll[0].enroll_per_s, ocsp_gets: ($ocsp[0].serials * 2)}
	}' >"$work/footprint.json"

table='
	def r(d): (. * pow(10; d) | round) / pow(10; d);
	def mem(m): "\(m.rss_mib | r(1)) = \(m.anon_mib | r(1)) + \(m.file_mib | r(1)); Go heap in use \(m.go_heap_inuse_mib | r(1)), retained \(m.go_heap_retained_mib | r(1)), goal \(m.go_heap_goal_mib | r(1))";
	[
		["binary (make build: static, stripped), MiB", (.binary.bytes / 1048576 | r(1) | tostring) + " (\(.binary.bytes) bytes)"],
		["start to all listeners ready, ms (median, min-max of \(.start_ms.runs | length))", "\(.start_ms.median | r(0)) (\(.start_ms.min | r(0))-\(.start_ms.max | r(0)))"],
		["  per listener, ms (median)", (.listener_ready_ms | to_entries | map("\(.key) \(.value | r(0))") | join(", "))],
		["  logged: first OCSP responder key / responder ready / listening, ms (median)", (.milestones_ms | [.first_responder_key, .responder_ready, .listening] | map(if . == null then "-" else r(0) | tostring end) | join(" / "))],
		["first start after ca init (issues its TLS certificates), ms", (.first_start_ms | r(0) | tostring)],
		["stop on SIGTERM, ms (median)", (.stop_ms | r(0) | tostring)],
		["RSS = anonymous + file-backed, MiB: idle \(.idle_s) s after start", mem(.memory.idle)],
		["  right after load", mem(.memory.load)],
		["  idle \(.idle_s) s after load", mem(.memory.after)],
		["peak RSS (VmHWM), MiB", (.memory.after.peak_rss_mib | r(1) | tostring)]
	][]
'
echo
jq -r "$table"' | @tsv' "$work/footprint.json" | column -t -s "$(printf '\t')"
jq -r '"(load: \(.load.clients) clients enrolling for \(.load.seconds) s: \(.load.enrollments) enrollments; \(.load.ocsp_gets) OCSP GETs; 20 DNS queries)"' "$work/footprint.json"

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	cp "$work/footprint.json" "$REPORT_DIR/footprint.json"
	{
		echo "## Footprint: binary, start time, memory"
		echo
		echo '```sh'
		echo "STARTS=$STARTS IDLE=$IDLE LOAD=$LOAD CLIENTS=$CLIENTS bash bench/footprint/run.sh"
		echo '```'
		echo
		echo "| | |"
		echo "| --- | --: |"
		jq -r "$table"' | "| " + join(" | ") + " |"' "$work/footprint.json"
		echo
		jq -r '
			def r(d): (. * pow(10; d) | round) / pow(10; d);
			.memory as $m
			| .milestones_ms as $s
			| "Starts are timed from the exec of `nmos-certs serve` with an existing CA until every listener answers (probed every 5 ms; binary and data in the OS page cache). "
			+ (if $s.responder_ready == null then "" else "The appliance binds its listeners once every service is built; among them the OCSP responder loads the delegated responder keys and certificates of the four CA generations, which the first start made and kept in the data directory: its first key is ready at \($s.first_responder_key | r(0)) ms and the responder at \($s.responder_ready | r(0)) ms, \(($s.responder_ready - $s.first_responder_key) / $s.listening * 100 | r(0))% of the \($s.listening | r(0)) ms until the listeners are bound (medians). " end)
			+ "Idle, \($m.idle.file_mib | r(1)) MiB of the \($m.idle.rss_mib | r(1)) MiB resident are pages of the binary and \($m.idle.anon_mib | r(1)) MiB are anonymous; after the load (\(.load.clients) clients enrolling for \(.load.seconds) s: \(.load.enrollments) certificates, then \(.load.ocsp_gets) OCSP GETs and 20 DNS queries) anonymous memory is \($m.after.anon_mib | r(1)) MiB and stays there while idle: the Go runtime keeps \($m.after.go_heap_retained_mib | r(1)) MiB of heap from the OS for \($m.after.go_heap_inuse_mib | r(1)) MiB in use, because it returns memory only above the size at which the next collection starts, \($m.after.go_heap_goal_mib | r(1)) MiB (GOGC=400 in `serve`: five times the live heap)."
		' "$work/footprint.json"
	} >"$REPORT_DIR/footprint.md"
	echo "wrote $REPORT_DIR/footprint.md and footprint.json"
fi
