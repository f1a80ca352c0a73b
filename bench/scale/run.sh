#!/usr/bin/env bash
# Does the cost of enrollment and OCSP grow with the number of
# certificates in the store? For each store size (SIZES, default 1,000
# and 1,000,000) this script:
#   1. copies a CA made once with "nmos-certs ca init" into a fresh data
#      directory and fills its store with that many certificate records
#      (bench/scale/scaletool fill: random 159-bit serials and key hashes,
#      one leaf DER of about 725 bytes shared by every record);
#   2. measures the store itself, the appliance stopped (scaletool store):
#      CertificateStatus (the OCSP responder's lookup) for SAMPLE serials
#      spread over the store, PutCertificate alone (one transaction and
#      fsync each) and from 16 callers at once (group commit),
#      CountCertificates (the operator UI's status call), with the page
#      reads and writes each makes, and the b-trees' depth from dbstat;
#   3. starts "nmos-certs serve" on it (all sizes side by side, each on
#      its own ports; the time to ready is that of a second start, the
#      first one issuing the appliance's own certificates) and measures
#      OCSP GET latency for the sampled serials, first (a store lookup and
#      a signature) and again (cached); the UI's /api/v1/status (median of
#      3); enrollment with bench/est/estload (CLIENTS clients, DURATION
#      seconds, a new TLS connection per enrollment, a manufacturer device
#      certificate from bench/est/estpki), ROUNDS runs per size taking
#      turns, medians; OCSP again for the newest enrolled certificates;
#      and the appliance's resident memory idle and after the load.
# The last column of the table is the largest size over the smallest.
#
# Usage: bench/scale/run.sh
# Environment: SIZES ("1000 1000000"), DURATION (seconds per enrollment
# run, 8), ROUNDS (enrollment runs per size, 3), CLIENTS (4), SAMPLE
# (serials asked by OCSP, 1000), FILL_MODE (bulk, or put for
# store.PutCertificate from many goroutines: slower), PORT (19010; the
# i-th size uses PORT+10i for EST, +1 HTTP, +2 DNS, +3 metrics, +4 UI),
# NMOS_CERTS_BIN (a binary to measure instead of building one),
# REPORT_DIR (write scale.md and scale.json there).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
SIZES="${SIZES:-1000 1000000}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-4}"
SAMPLE="${SAMPLE:-1000}"
FILL_MODE="${FILL_MODE:-bulk}"
PORT="${PORT:-19010}"
HOST=est.studio.example.test
ISSUER=ecdsa-int-1

require_tools "(Debian packages: curl, jq; Go 1.26 from go.dev)" go curl jq
start_work

echo "building..."
(
	cd "$root"
	if [ -z "${NMOS_CERTS_BIN:-}" ]; then CGO_ENABLED=0 go build -trimpath -o "$work/nmos-certs" .; fi
	go build -o "$work/estload" ./bench/est/estload
	go build -o "$work/estpki" ./bench/est/estpki
	go build -o "$work/scaletool" ./bench/scale/scaletool
)
bin="${NMOS_CERTS_BIN:-$work/nmos-certs}"
"$work/estpki" -dir "$work/pki" -hostname "$HOST" >/dev/null

# One CA for every size, so that only the store differs.
appliance_config "$work/ca-data" "$PORT" on warn >"$work/ca.yaml"
"$bin" ca init --config "$work/ca.yaml" >/dev/null

ms_now() { echo $(($(date +%s%N) / 1000000)); }
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
read -r -a sizes <<<"$SIZES"
declare -A port pid

# 1. Fill each store and measure it, no appliance running.
i=0
for n in "${sizes[@]}"; do
	echo "== $n certificates"
	port[$n]=$((PORT + 10 * i))
	i=$((i + 1))
	data="$work/data-$n"
	cp -a "$work/ca-data" "$data"
	appliance_config "$data" "${port[$n]}" on warn >"$work/cfg-$n.yaml"
	db="$data/nmos-certs.db"
	"$work/scaletool" fill -db "$db" -n "$n" -issuer "$ISSUER" -mode "$FILL_MODE" -sample "$work/sample-$n.txt" -sample-n "$SAMPLE" >"$work/fill-$n.json"
	jq -r '"fill: \(.rows) records in \(.seconds) s (\(.rows_per_s)/s, \(.mode)), database \(.db_bytes / 1048576 | floor) MiB"' "$work/fill-$n.json"
	"$work/scaletool" store -db "$db" -issuer "$ISSUER" -serials "$work/sample-$n.txt" >"$work/store-$n.json"
	jq -r '"store: status lookup p50 \(.status.ms.p50) ms, insert p50 \(.put.ms.p50) ms, \(.burst.per_s)/s from \(.burst_clients) callers, count \(.count_ms) ms"' "$work/store-$n.json"
done

# 2. Start an appliance on each (they run side by side, so that the
# measurements below can take turns). The first start issues the
# appliance's own TLS and OCSP responder certificates; the time to ready
# is that of a second start.
# start N: start the appliance on store N and wait for its HTTP listener.
start() {
	local n="$1" http="http://127.0.0.1:$((port[$1] + 1))" t0
	if curl -s -o /dev/null --max-time 1 "$http/"; then
		echo "run.sh: something answers on ${http#http://} already; set PORT" >&2
		exit 1
	fi
	t0=$(ms_now)
	"$bin" serve --config "$work/cfg-$n.yaml" >>"$work/serve-$n.log" 2>&1 &
	pid[$n]=$!
	pids+=("$!")
	for _ in $(seq 2000); do
		curl -sf -o /dev/null "$http/ca/ecdsa-root-1.pem" && break
		kill -0 "${pid[$n]}" 2>/dev/null || { cat "$work/serve-$n.log" >&2; exit 1; }
		sleep 0.005
	done
	curl -sf -o "$work/root.pem" "$http/ca/ecdsa-root-1.pem" || { echo "run.sh: the appliance did not start" >&2; cat "$work/serve-$n.log" >&2; exit 1; }
	echo $(($(ms_now) - t0)) >"$work/ready-$n.txt"
}
for n in "${sizes[@]}"; do
	start "$n"
	kill "${pid[$n]}"
	wait "${pid[$n]}" || true
	start "$n"
done
sleep 2
for n in "${sizes[@]}"; do vm "${pid[$n]}" VmRSS >"$work/rss-idle-$n.txt"; done

# 3. OCSP for the sampled records, and the UI's status call.
for n in "${sizes[@]}"; do
	"$work/scaletool" ocsp -base "http://127.0.0.1:$((port[$n] + 1))" -issuer "$ISSUER" -serials "$work/sample-$n.txt" -pid "${pid[$n]}" >"$work/ocsp-$n.json"
	jq -r --arg n "$n" '"\($n): OCSP first GET p50 \(.first_ms.p50) ms, cached p50 \(.again_ms.p50) ms, good \(.good), errors \(.errors)"' "$work/ocsp-$n.json"
done
for _ in 1 2 3; do
	for n in "${sizes[@]}"; do
		curl -sk -o /dev/null -w '%{time_total}\n' "https://127.0.0.1:$((port[$n] + 4))/api/v1/status" >>"$work/ui-$n.txt"
	done
done

# The operator UI's pages and searches: server time (first byte less
# the time to send the request, over a kept TLS connection), median of
# three. No account exists, so loopback reads as a viewer.
ui_pages() {
	local n="$1" half serial
	half=$(printf '%07d' $((n / 2)))
	serial=$(head -1 "$work/sample-$n.txt")
	cat <<-PAGES
		dashboard	/
		requests	/requests
		certificates, first page	/certificates
		certificates, a page from the middle	/certificates?before=r$((n / 2))
		search by name	/certificates?name=node-$half.studio.example.test
		search by name prefix (10 match at 1M)	/certificates?name=node-00001*
		search by name prefix (all match)	/certificates?name=node-*
		search by serial	/certificates?serial=$serial
		search by issuer	/certificates?issuer=$ISSUER
		search revoked	/certificates?status=revoked
		search valid	/certificates?status=valid
		search expired (none are)	/certificates?status=expired
		certificate detail	/certificates/$serial
		names	/names
		CA	/ca
		audit	/audit
		API certificates by name	/api/v1/certificates?name=node-$half.studio.example.test
		API status	/api/v1/status
	PAGES
}
for n in "${sizes[@]}"; do
	ui="https://127.0.0.1:$((port[$n] + 4))"
	: >"$work/ui-pages-$n.tsv"
	while IFS=$'\t' read -r label path; do
		ms=$(for _ in 1 2 3; do
			curl -sk -o /dev/null -w '%{time_starttransfer} %{time_pretransfer} %{http_code}\n' "$ui$path"
		done | awk '$3 != 200 {print "run.sh: " $3 > "/dev/stderr"; exit 1} {print ($1 - $2) * 1000}' | sort -n | sed -n 2p)
		[ -n "$ms" ] || { echo "run.sh: the UI failed on $path" >&2; exit 1; }
		printf '%s\t%.1f\n' "$label" "$ms" >>"$work/ui-pages-$n.tsv"
	done < <(ui_pages "$n")
	{
		curl -sk -o /dev/null -w '%{size_download}\n' "$ui/"
		curl -sk -o /dev/null -w '%{size_download}\n' "$ui/style.css"
	} | awk '{s += $1} END {printf "%.1f\n", s / 1024}' >"$work/ui-weight-$n.txt"
done

# 4. Enrollment, the stores taking turns, the order rotating each round.
for r in $(seq "$ROUNDS"); do
	k=${#sizes[@]}
	for j in $(seq 0 $((k - 1))); do
		n="${sizes[$(((r - 1 + j) % k))]}"
		kill -0 "${pid[$n]}" 2>/dev/null || { echo "run.sh: the appliance on $n certificates stopped" >&2; cat "$work/serve-$n.log" >&2; exit 1; }
		f="$work/enroll-$n-$r.json"
		"$work/estload" -server "127.0.0.1:${port[$n]}" -servername "$HOST" -cacert "$work/root.pem" \
			-cert "$work/pki/device.pem" -key-file "$work/pki/device.key" -label "$n" -c "$CLIENTS" -curves P256 \
			-server-pid "${pid[$n]}" -out json -d "${DURATION}s" -warmup "$((4 * CLIENTS))" -pool "$((DURATION * 900 + 4 * CLIENTS))" >"$f"
		jq -r '"\(.label): \(.enroll_per_s | round)/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, server CPU \(.server_cpu_ms_per_enroll) ms/enroll, errors \(.error_count)"' "$f"
		if [ "$(jq .error_count "$f")" != 0 ]; then
			echo "run.sh: enrollments failed:" >&2
			jq -r '.errors, .first_error' "$f" >&2
			exit 1
		fi
	done
done

# 5. OCSP for the newest enrolled certificates; memory after the load.
for n in "${sizes[@]}"; do
	"$work/scaletool" serials -db "$work/data-$n/nmos-certs.db" -issuer "$ISSUER" -newest "$SAMPLE" -out "$work/enrolled-$n.txt" >"$work/serials-$n.json"
	"$work/scaletool" ocsp -base "http://127.0.0.1:$((port[$n] + 1))" -issuer "$ISSUER" -serials "$work/enrolled-$n.txt" -pid "${pid[$n]}" >"$work/ocsp-enrolled-$n.json"
	jq -r --arg n "$n" '"\($n): OCSP (enrolled) first GET p50 \(.first_ms.p50) ms, cached p50 \(.again_ms.p50) ms, good \(.good), errors \(.errors)"' "$work/ocsp-enrolled-$n.json"
	vm "${pid[$n]}" VmRSS >"$work/rss-load-$n.txt"
	vm "${pid[$n]}" VmHWM >"$work/rss-peak-$n.txt"
done
stop_pids

for n in "${sizes[@]}"; do
	for f in ocsp ocsp-enrolled; do
		if [ "$(jq .errors "$work/$f-$n.json")" != 0 ]; then
			echo "run.sh: wrong OCSP answers: $(jq -r .first_error "$work/$f-$n.json")" >&2
			exit 1
		fi
	done
	jq -n --argjson n "$n" --argjson ready "$(cat "$work/ready-$n.txt")" \
		--argjson rss_idle "$(cat "$work/rss-idle-$n.txt")" --argjson rss_load "$(cat "$work/rss-load-$n.txt")" --argjson hwm "$(cat "$work/rss-peak-$n.txt")" \
		--slurpfile fill "$work/fill-$n.json" --slurpfile store "$work/store-$n.json" --slurpfile ocsp "$work/ocsp-$n.json" \
		--slurpfile enrolled "$work/ocsp-enrolled-$n.json" --slurpfile serials "$work/serials-$n.json" \
		--slurpfile runs <(cat "$work"/enroll-"$n"-*.json) --rawfile ui "$work/ui-$n.txt" \
		--rawfile pages "$work/ui-pages-$n.tsv" --argjson weight "$(cat "$work/ui-weight-$n.txt")" '
		def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		{
			certificates: $n, fill: $fill[0], store: $store[0], ready_ms: $ready,
			rss_idle_mib: ($rss_idle / 1024), rss_after_load_mib: ($rss_load / 1024), rss_peak_mib: ($hwm / 1024),
			ocsp_sampled: $ocsp[0], ocsp_enrolled: $enrolled[0], enrolled_der_bytes_avg: $serials[0].der_bytes_avg,
			enroll: {
				rounds: ($runs | length), enrollments: ($runs | map(.enrollments) | add),
				enroll_per_s: ($runs | map(.enroll_per_s) | median),
				latency_ms: {p50: ($runs | map(.latency_ms.p50) | median), p99: ($runs | map(.latency_ms.p99) | median)},
				server_cpu_ms_per_enroll: ($runs | map(.server_cpu_ms_per_enroll) | median),
				runs: $runs
			},
			ui_status_ms: ($ui | split("\n") | map(select(. != "") | tonumber * 1000) | median),
			ui_pages_max_ms: ($pages | split("\n") | map(select(. != "") | split("\t")[1] | tonumber) | max),
			ui_weight_kib: $weight
		}' >"$work/result-$n.json"
done

results=()
for n in "${sizes[@]}"; do results+=("$work/result-$n.json"); done
jq -s --argjson duration "$DURATION" --argjson clients "$CLIENTS" --argjson rounds "$ROUNDS" \
	'{duration_s: $duration, clients: $clients, rounds: $rounds, sizes: .}' \
	"${results[@]}" >"$work/scale.json"

# The table: one row per figure, one column per size, and the ratio of
# the largest size to the smallest.
# shellcheck disable=SC2016 # a jq program
rows='
	def r(d): if . == null then null else (. * pow(10; d) | round) / pow(10; d) end;
	def cells(d): map(r(d) | tostring) | join(" / ");
	def fmt: tostring | until(test("^[0-9]{4}") | not; sub("(?<a>[0-9])(?<b>[0-9]{3})(?<c>$|,)"; "\(.a),\(.b)\(.c)"));
	def depth(n): [.store.btrees[] | select(.name == n) | .depth][0];
	def rows: [
		["database size, MiB", [.fill.db_bytes / 1048576], 1],
		["b-tree depth: table / serial index / key index", [depth("certificates"), depth("sqlite_autoindex_certificates_1"), depth("sqlite_autoindex_certificates_2")], 0],
		["store: status lookup p50 / p99, ms", [.store.status.ms.p50, .store.status.ms.p99], 3],
		["store: same serials again p50 / p99, ms", [.store.status_again.ms.p50, .store.status_again.ms.p99], 3],
		["store: page reads (pread) per status lookup", [.store.status.read_calls], 1],
		["store: insert alone p50 / p99, ms", [.store.put.ms.p50, .store.put.ms.p99], 2],
		["store: inserts from \(.store.burst_clients) callers, per s", [.store.burst.per_s], 0],
		["store: CPU per insert from \(.store.burst_clients) callers, us", [.store.burst.cpu_us], 0],
		["store: reads / writes per insert from \(.store.burst_clients) callers", [.store.burst.read_calls, .store.burst.write_calls], 1],
		["store: KiB written per insert from \(.store.burst_clients) callers", [.store.burst.write_bytes / 1024], 1],
		["store: CountCertificates, ms", [.store.count_ms], 1],
		["restart to HTTP ready, ms", [.ready_ms], 0],
		["OCSP first GET p50 / p99, ms", [.ocsp_sampled.first_ms.p50, .ocsp_sampled.first_ms.p99], 3],
		["OCSP: server read calls per first GET (socket and pages)", [.ocsp_sampled.server_read_calls_per_first], 1],
		["OCSP cached GET p50 / p99, ms", [.ocsp_sampled.again_ms.p50, .ocsp_sampled.again_ms.p99], 3],
		["OCSP first GET, enrolled, p50 / p99, ms", [.ocsp_enrolled.first_ms.p50, .ocsp_enrolled.first_ms.p99], 3],
		["enrollment p50 / p99, ms", [.enroll.latency_ms.p50, .enroll.latency_ms.p99], 2],
		["enrollments/s", [.enroll.enroll_per_s], 0],
		["server CPU per enrollment, ms", [.enroll.server_cpu_ms_per_enroll], 2],
		["UI /api/v1/status, ms", [.ui_status_ms], 1],
		["RSS idle / after load, MiB", [.rss_idle_mib, .rss_after_load_mib], 1]
	];
	.sizes as $s
	| ($s | map(rows)) as $per
	| (["", ($s[] | "\(.certificates | fmt) certificates"), "ratio"]),
	  (range($per[0] | length) as $i
		| [$per[0][$i][0]]
		+ [$per[][$i] | .[1] | cells($per[0][$i][2])]
		+ [[$per[0][$i][1], $per[-1][$i][1]] as [$a, $b]
			| [range($a | length) as $k | if ($a[$k] // 0) == 0 or $b[$k] == null then "-" else ($b[$k] / $a[$k] * 100 | round / 100 | tostring) + "x" end]
			| join(" / ")])
'
echo
jq -r "$rows"' | @tsv' "$work/scale.json" | column -t -s "$(printf '\t')"

# The UI's table: server time per page, one column per size.
ui_table() {
	local sep="$1" header="page" n
	for n in "${sizes[@]}"; do header+="${sep}$n certificates, ms"; done
	echo "$header"
	paste "$work/ui-pages-${sizes[0]}.tsv" $(for n in "${sizes[@]:1}"; do echo "$work/ui-pages-$n.tsv"; done) |
		awk -F '\t' -v sep="$sep" '{line = $1; for (i = 2; i <= NF; i += 2) line = line sep $i; print line}'
	printf 'dashboard page weight (HTML and CSS), KiB'
	for n in "${sizes[@]}"; do printf '%s%s' "$sep" "$(cat "$work/ui-weight-$n.txt")"; done
	echo
}
echo
ui_table "$(printf '\t')" | column -t -s "$(printf '\t')"

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	cp "$work/scale.json" "$REPORT_DIR/scale.json"
	{
		echo "## Store size: enrollment and OCSP with ${SIZES// / vs } certificates in the store"
		echo
		echo '```sh'
		echo "SIZES=\"$SIZES\" DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS SAMPLE=$SAMPLE bash bench/scale/run.sh"
		echo '```'
		echo
		jq -r "$rows"' | "| " + join(" | ") + " |"' "$work/scale.json" | sed '1a\| --- |'"$(for _ in $SIZES; do printf ' --: |'; done)"' --: |'
		echo
		jq -r '
			def r(d): (. * pow(10; d) | round) / pow(10; d);
			def x(f): "\((.[1] | f) / (.[0] | f) | r(2))x";
			def depth(n): [.store.btrees[] | select(.name == n) | .depth][0];
			.sizes[0] as $a | .sizes[-1] as $b | [$a, $b] as $p
			| "From \($a.certificates) to \($b.certificates) certificates, per request: server CPU per enrollment \($p | x(.enroll.server_cpu_ms_per_enroll)), enrollment p50 \($p | x(.enroll.latency_ms.p50)), OCSP first GET p50 \($p | x(.ocsp_sampled.first_ms.p50)) and cached GET p50 \($p | x(.ocsp_sampled.again_ms.p50)) (the load generator shares the two CPUs with the appliance and other work, so latencies carry that noise). "
			+ "Underneath, the serial index deepens from \($a | depth("sqlite_autoindex_certificates_1")) to \($b | depth("sqlite_autoindex_certificates_1")) levels and the b-trees outgrow SQLite'"'"'s page cache (about 2 MB per connection): a status lookup makes \($b.store.status.read_calls) page reads from the OS page cache instead of \($a.store.status.read_calls) (\($a.store.status.ms.p50) to \($b.store.status.ms.p50) ms, a small part of an OCSP answer), and an insert from \($b.store.burst_clients) callers makes \($b.store.burst.read_calls) reads and writes \($b.store.burst.write_bytes / 1024 | r(1)) KiB instead of \($a.store.burst.read_calls) and \($a.store.burst.write_bytes / 1024 | r(1)) KiB (the synthetic records have random serials, and every key hash is random: each lands on its own index leaf page, which the WAL and its checkpoints then copy; serials the CA issues start with the time and land at the end of their index), so the group-commit rate goes from \($a.store.burst.per_s) to \($b.store.burst.per_s) inserts/s, still \($b.store.burst.per_s / $b.enroll.enroll_per_s | r(0))x the enrollment rate measured here. "
			+ "CountCertificates, which the operator UI'"'"'s status call makes every 10 s while the UI is open, reads per-issuer counts that triggers keep: \($a.store.count_ms) ms at \($a.certificates) certificates, \($b.store.count_ms) ms at \($b.certificates)."
		' "$REPORT_DIR/scale.json"
		echo
		echo "Records are synthetic (random serials and key hashes, one shared $(jq -r '.sizes[-1].fill.der_bytes' "$work/scale.json")-byte leaf DER; enrolled leaves are $(jq -r '.sizes[-1].enrolled_der_bytes_avg' "$work/scale.json") bytes); the database is in the OS page cache, as it is on an appliance that has been running. Enrollment: $CLIENTS clients, $ROUNDS runs of ${DURATION} s per size taking turns (medians), a new TLS connection each."
		echo
		echo "### The operator UI with ${SIZES// / and } certificates"
		echo
		echo "Server time of each page and search (curl's first byte less the time to send the request, median of three), and the dashboard's weight."
		echo
		ui_table ' | ' | sed 's/^/| /; s/$/ |/' | sed '1a\| --- |'"$(for _ in $SIZES; do printf ' --: |'; done)"
	} >"$REPORT_DIR/scale.md"
	echo "wrote $REPORT_DIR/scale.md and scale.json"
fi
