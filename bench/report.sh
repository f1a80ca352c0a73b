#!/usr/bin/env bash
# Runs every benchmark of the project and writes docs/benchmarks.md:
# the machine, the Go benchmarks of the hot paths, the cost floor of an
# enrollment, then the load comparisons of bench/ (EST against globalsign's
# reference server, OCSP against cfssl ocspserve, DNS-SD against stock
# CoreDNS) and the CRL, scale and footprint measurements, each with the
# command that reproduces it. `make bench` runs it.
#
# Usage: bench/report.sh
# Environment: OUT (docs/benchmarks.md), SKIP (space-separated sections
# to leave out: go floor est ocsp dnsperf crl scale pg footprint).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
OUT="${OUT:-$root/docs/benchmarks.md}"
SKIP="${SKIP:-}"

rep="$(mktemp -d)"
trap 'rm -rf "$rep"' EXIT
export REPORT_DIR="$rep"
started=$(date +%s)
# Named before anything is measured or written: the report itself changes the tree.
commit=$(git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null || echo unknown)
cd "$root"

skip() { [[ " $SKIP " == *" $1 "* ]]; }
section() { printf '\n==== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

# The hot paths, as Go benchmarks (regressions show here first).
if ! skip go; then
	section "Go benchmarks"
	gobench=(go test -run '^$' -benchmem -bench 'Issue|Check$|CreateCertificate|PutCertificate|DecodeCSR|EncodeCertsOnly|EnrollTLS|ServeDNS|CachedGET|POST|Nonce'
		./ca/ ./ca/policy/ ./ca/store/ ./est/ ./ocsp/ ./plugins/nmoscerts/)
	"${gobench[@]}" | tee "$rep/go.txt"
	{
		echo "## Go benchmarks of the hot paths"
		echo
		echo "\`go test -run '^\$' -benchmem -bench '${gobench[6]}' ${gobench[*]:7}\`"
		echo
		echo "| benchmark | time/op | B/op | allocs/op |"
		echo "| --- | --- | --- | --- |"
		awk '/^pkg:/ {pkg=$2; sub(".*/nmos-certs/", "", pkg)}
			/^Benchmark/ {
				name=$1; sub(/-[0-9]+$/, "", name); t=""; bytes=""; allocs=""
				for (i = 3; i < NF; i++) {
					if ($(i+1) == "ns/op") t=$i
					if ($(i+1) == "B/op") bytes=$i
					if ($(i+1) == "allocs/op") allocs=$i
				}
				if (t >= 1e6) ts=sprintf("%.2f ms", t/1e6); else if (t >= 1e3) ts=sprintf("%.1f µs", t/1e3); else ts=sprintf("%.0f ns", t)
				printf "| %s %s | %s | %s | %s |\n", pkg, name, ts, bytes, allocs
			}' "$rep/go.txt"
	} >"$rep/go.md"
fi

# What an enrollment cannot avoid: Go's crypto on this machine.
if ! skip floor; then
	section "Enrollment cost floor"
	go test -run '^$' -bench . -count 3 ./bench/est/floor/ | tee "$rep/floor.txt"
	# The median of each benchmark's runs (mawk has no sort of its own).
	awk '/^Benchmark/ {n=$1; sub(/-[0-9]+$/, "", n); print n, $3}' "$rep/floor.txt" | sort -k1,1 -k2,2n |
		awk '{v[$1, ++c[$1]] = $2} END {for (n in c) print n, v[n, int((c[n] + 1) / 2)]}' | sort >"$rep/floor.med"
	us() { awk -v n="$1" '$1 == n {printf "%.0f", $2 / 1000}' "$rep/floor.med"; }
	# The same for the sync benchmarks' CPU per operation (cpu-us/op).
	awk '/^Benchmark/ && $6 == "cpu-us/op" {n=$1; sub(/-[0-9]+$/, "", n); print n, $5}' "$rep/floor.txt" | sort -k1,1 -k2,2n |
		awk '{v[$1, ++c[$1]] = $2} END {for (n in c) print n, v[n, int((c[n] + 1) / 2)]}' | sort >"$rep/floor-cpu.med"
	cpu_us() { awk -v n="$1" '$1 == n {printf "%.0f", $2}' "$rep/floor-cpu.med"; }
	sign=$(us BenchmarkECDSAP256Sign)
	verify=$(us BenchmarkECDSAP256Verify)
	ecdhe=$(us BenchmarkECDHEP256)
	hs=$(us BenchmarkTLS13HandshakeClientCert)
	fsync=$(us BenchmarkFdatasync16KiB)
	fsync_cpu=$(cpu_us BenchmarkFdatasync16KiB)
	nothing_cpu=$(cpu_us BenchmarkFdatasyncNothing)
	floor=$((ecdhe + 2 * sign + 2 * verify))
	jq -n --argjson sign "$sign" --argjson verify "$verify" --argjson ecdhe "$ecdhe" --argjson hs "$hs" --argjson floor "$floor" --argjson fsync "$fsync" \
		--argjson fsync_cpu "$fsync_cpu" --argjson nothing_cpu "$nothing_cpu" \
		'{sign_us: $sign, verify_us: $verify, ecdhe_us: $ecdhe, handshake_both_ends_us: $hs, fdatasync_16k_us: $fsync, fdatasync_16k_cpu_us: $fsync_cpu, fdatasync_nothing_cpu_us: $nothing_cpu, floor_us: $floor}' >"$rep/floor.json"
	{
		echo "## What an enrollment costs at least"
		echo
		echo "\`go test -run '^\$' -bench . -count 3 ./bench/est/floor/\` (medians), Go's own crypto on this machine:"
		echo
		echo "| operation | µs |"
		echo "| --- | --- |"
		echo "| ECDHE P-256 (key generation and shared secret) | $ecdhe |"
		echo "| ECDSA P-256 signature | $sign |"
		echo "| ECDSA P-256 verification | $verify |"
		echo "| a whole TLS 1.3 handshake with a client certificate, both ends, in memory | $hs |"
		echo "| 16 KiB written and fdatasynced (a durable commit's wait for the disk; wall time) | $fsync |"
		echo "| the same, CPU of the process (user and system) | $fsync_cpu |"
		echo "| an fdatasync with nothing to write, CPU of the process | $nothing_cpu |"
		echo
		echo "Every enrollment over a new connection makes, on the server, one ECDHE, one signature for"
		echo "its own CertificateVerify, one verification of the device's CertificateVerify, one"
		echo "verification of the CSR's signature (proof of possession) and one signature for the new"
		echo "certificate: **$floor µs** of public-key work on one core, before any TCP, TLS record,"
		echo "HTTP, ASN.1, policy or storage work. That is the floor the server CPU per enrollment"
		echo "below is to be read against; the reference server makes two more verifications (the device"
		echo "chain and crypto/x509's check of its own new signature), which nmos-certs avoids by"
		echo "remembering verified manufacturer chains and signing the TBSCertificate once. A sync is"
		echo "paid in CPU too on a virtual machine (the notification of the virtual disk), once per group"
		echo "commit, shared by the certificates of the batch."
	} >"$rep/floor.md"
fi

for s in est ocsp dnsperf crl scale pg footprint; do
	if skip "$s" || [ ! -f "$here/$s/run.sh" ]; then continue; fi
	section "bench/$s"
	case "$s" in
	est)
		# Six short runs per server and client count, taking turns: on a
		# machine whose load from other tenants comes and goes within
		# seconds, the median of many interleaved runs moves less than
		# that of two long ones.
		DURATION=3 ROUNDS=6 bash "$here/est/run.sh"
		# The same at 16 clients with each server alone on a core.
		if [ "$(nproc)" -ge 2 ]; then
			section "bench/est, pinned"
			DURATION=3 ROUNDS=6 CLIENTS=16 PIN=1 REPORT_NAME=est-pinned bash "$here/est/run.sh"
		fi
		;;
	pg) DURATION=4 bash "$here/pg/run.sh" ;;
	*) bash "$here/$s/run.sh" ;;
	esac
done

# EST: the server CPU per enrollment against the floor of its public-key work.
if [ -f "$rep/est.json" ] && [ -f "$rep/floor.json" ]; then
	jq -r --slurpfile floor "$rep/floor.json" '
		($floor[0].floor_us) as $f
		| [.results[] | select(.clients == 16)] as $r
		| ($r | map(select(.label == "nmos-certs"))[0]) as $n
		| ($r | map(select(.label == "globalsign"))[0]) as $g
		| "At 16 clients nmos-certs used \($n.cpu * 1000 | round) µs of server CPU per enrollment and the reference server \($g.cpu * 1000 | round) µs; the public-key floor above is \($f) µs of that. The rest is Go'"'"'s TLS 1.3 machinery (key schedule, transcript hashes, record encryption, certificate parsing), the TCP and HTTP exchange, ASN.1, the policy check and, for nmos-certs, the durable commit (a transaction and the sync of its WAL, shared by the certificates of a group commit; the sync'"'"'s wait for the disk and its CPU are in the table above). estload itself spends about \($n.client_cpu * 1000 | round) µs per enrollment on the same CPUs, which caps the enrollments per second of any server here.\(if $n.idle and $g.idle then " The machine was \($n.idle | round) % idle under nmos-certs and \($g.idle | round) % under the reference server: CPU left unused while requests wait for their commit (bench/est/README.md, \"Idle and stolen time, on a slow day\")." else "" end) A profile by function is in bench/est/README.md."' \
		"$rep/est.json" >"$rep/est-time.txt"
	# At 4 clients: latency, and the sync's share of it.
	jq -r --slurpfile floor "$rep/floor.json" '
		($floor[0].fdatasync_16k_us) as $sync
		| [.results[] | select(.clients == 4)] as $r
		| ($r | map(select(.label == "nmos-certs"))[0]) as $n
		| ($r | map(select(.label == "globalsign"))[0]) as $g
		| if $n and $g then "\nAt 4 clients the CPUs are not all busy: each client waits for its answer before it enrolls again, so enrollments per second follow the latency of one enrollment (p50 \($n.p50 * 10 | round / 10) ms for nmos-certs, \($g.p50 * 10 | round / 10) ms for the reference server) more than its CPU (\($n.cpu * 1000 | round) and \($g.cpu * 1000 | round) µs). Every nmos-certs enrollment waits for its durable commit, whose sync alone takes about \($sync) µs here (16 KiB written and fdatasynced, above), and at that concurrency few other enrollments share a commit. bench/est/README.md has the same rotation with a build that stores nothing." else empty end' \
		"$rep/est.json" >>"$rep/est-time.txt"
	{
		echo
		echo "### Where an enrollment's time goes"
		echo
		cat "$rep/est-time.txt"
	} >>"$rep/est.md"
fi
if [ -f "$rep/est.md" ] && [ -f "$rep/est-pinned.md" ]; then
	{
		echo
		cat "$rep/est-pinned.md"
	} >>"$rep/est.md"
fi

elapsed=$(($(date +%s) - started))

# The summary: each target with the figure measured in this run.
ratio() { jq -r "$2 // empty" "$rep/$1.json" 2>/dev/null || true; }
est16=$(ratio est '[.results[] | select(.clients == 16 and .label == "nmos-certs")][0].ratio | . * 100 | round / 100')
ocspget=$(ratio ocsp '.summary.get_ratio | . * 100 | round / 100')
dns=$(ratio dnsperf '.ratio | . * 100 | round / 100')
ui_max=$(ratio scale '.sizes[-1].ui_pages_max_ms')
ui_n=$(ratio scale '.sizes[-1].certificates')
ui_kib=$(ratio scale '.sizes[-1].ui_weight_kib')
pg16=$(ratio pg '.postgres_16 / .sqlite_16 | . * 100 | round / 100')
pg64=$(ratio pg '.postgres_64 / .sqlite_64 | . * 100 | round / 100')
shown() { if [ -n "$1" ]; then echo "${1}x"; else echo "–"; fi; }
met() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "") print "not measured"; else if (v + 0 >= t) print "met"; else print "not met" }'; }

cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
os_name=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -s)
{
	echo "# Benchmarks"
	echo
	echo "Written by \`make bench\` (\`bench/report.sh\`) on $(date -u +%Y-%m-%d) in $((elapsed / 60)) min $((elapsed % 60)) s,"
	echo "at commit \`$commit\`. Every figure below comes from that"
	echo "run, with the command that reproduces it; the load comparisons run the peers on the same"
	echo "machine in the same run, taking turns."
	echo
	echo "**Machine:** $cpu_model, $(nproc) CPUs, $mem_gib GiB, $os_name, Linux $(uname -r), $(go version | awk '{print $3}')."
	echo "A shared virtual machine: figures move by ±10 % from run to run, which is why servers take"
	echo "turns and the tables give medians."
	echo
	echo "## Targets"
	echo
	echo "| target | wanted | measured | |"
	echo "| --- | --- | --- | --- |"
	echo "| EST enrollments/s at 16 clients, vs globalsign estserver | ≥ 1.2x | $(shown "$est16") | $(met "$est16" 1.2) |"
	echo "| OCSP cached GET answers/s, vs cfssl ocspserve | ≥ 1.8x | $(shown "$ocspget") | $(met "$ocspget" 1.8) |"
	echo "| DNS-SD queries/s, vs stock CoreDNS file plugin | ≥ 1.0x | $(shown "$dns") | $(met "$dns" 1.0) |"
	echo "| \`make bench\` on this machine | < 15 min | $((elapsed / 60)) min $((elapsed % 60)) s | $( [ "$elapsed" -lt 900 ] && echo met || echo "not met") |"
	below() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "") print "not measured"; else if (v + 0 < t) print "met"; else print "not met" }'; }
	echo "| operator UI: server time of every page and search, ${ui_n:-?} certificates | < 200 ms | ${ui_max:-–} ms at most | $(below "$ui_max" 200) |"
	echo "| operator UI: dashboard page weight | < 200 KB | ${ui_kib:-–} KiB | $(below "$ui_kib" 195) |"
	echo "| enrollments/s on PostgreSQL, vs SQLite, 16 and 64 clients | ≥ 0.7x | $(shown "$pg16"), $(shown "$pg64") | $( [ "$(met "$pg16" 0.7)" = met ] && [ "$(met "$pg64" 0.7)" = met ] && echo met || echo "not met") |"
	for s in floor go est ocsp dnsperf crl scale pg footprint; do
		if [ -f "$rep/$s.md" ]; then
			echo
			cat "$rep/$s.md"
		fi
	done
} >"$OUT"
echo
echo "wrote $OUT in $((elapsed / 60)) min $((elapsed % 60)) s"
sed -n '/^## Targets/,/^## /p' "$OUT" | sed '$d'
