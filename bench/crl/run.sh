#!/usr/bin/env bash
# CRL build time and memory for 10k, 100k and 1M revoked certificates:
# the appliance's CRL publisher (ocsp.Publisher.Rebuild, which signs with
# x509.CreateRevocationList) for an ECDSA P-256 intermediate, revocations
# streamed from a Source the way the store streams them. One process per
# size and GOGC setting (400, as "nmos-certs serve" runs, and Go's default
# 100), so that each peak resident size is that build's alone. See
# bench/crl/main.go for what each figure is.
#
# Usage: bench/crl/run.sh
# Environment: SIZES ("10000 100000 1000000"), BUILDS (measured builds per
# size, 2), GOGCS ("400 100"), REPORT_DIR (write crl.md and crl.json there).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
SIZES="${SIZES:-10000 100000 1000000}"
BUILDS="${BUILDS:-2}"
GOGCS="${GOGCS:-400 100}"

require_tools "(Debian package: jq; Go 1.26 from go.dev)" go jq
start_work

(cd "$root" && go build -o "$work/crlbench" ./bench/crl)

# The CRL each run serves is parsed and checked in the first GOGC setting;
# the others build the same list.
check=true
for g in $GOGCS; do
	for n in $SIZES; do
		GOGC="$g" "$work/crlbench" -n "$n" -builds "$BUILDS" -check="$check" -out json >"$work/crl-$g-$n.json" &
		pids=("$!")
		wait "${pids[0]}"
		pids=()
		jq -r '"\(.revoked) revoked, GOGC=\(.gogc): \(.seconds) s, \(.alloc_mb) MB allocated, peak heap \(.peak_heap_mb) MB, peak RSS \(.peak_rss_mb) MB, \(.crl_bytes) bytes"' "$work/crl-$g-$n.json"
	done
	check=false
done
jq -s --argjson builds "$BUILDS" '{builds: $builds, runs: .}' "$work"/crl-*.json >"$work/crl.json"

table='
	def fmt: tostring | until(test("^[0-9]{4}") | not; sub("(?<a>[0-9])(?<b>[0-9]{3})(?<c>$|,)"; "\(.a),\(.b)\(.c)"));
	(["revoked", "GOGC", "build s", "allocated MB", "peak heap MB", "live heap MB (at least)", "RSS before MB", "peak RSS MB", "CRL bytes"]),
	(.runs | sort_by(-.gogc, .revoked)[]
		| [(.revoked | fmt), .gogc, .seconds, .alloc_mb, .peak_heap_mb, .peak_live_mb, .rss_before_mb, .peak_rss_mb, (.crl_bytes | fmt)]
		| map(tostring))
'
echo
jq -r "$table"' | @tsv' "$work/crl.json" | column -t -s "$(printf '\t')"
echo "(median of $BUILDS builds; MB = 10^6 bytes)"

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	cp "$work/crl.json" "$REPORT_DIR/crl.json"
	{
		echo "## CRL build time and memory"
		echo
		echo '```sh'
		echo "SIZES=\"$SIZES\" BUILDS=$BUILDS GOGCS=\"$GOGCS\" bash bench/crl/run.sh"
		echo '```'
		echo
		jq -r "$table"' | "| " + join(" | ") + " |"' "$work/crl.json" | sed '1a\| --: | --: | --: | --: | --: | --: | --: | --: | --: |'
		echo
		jq -r '
			def pct: . * 100 | round | tostring + "%";
			(.runs | map(.revoked) | max) as $n
			| (.runs | map(select(.revoked == $n))) as $top
			| ($top | max_by(.gogc)) as $b | ($top | min_by(.gogc)) as $l
			| "Median of \(.builds) builds, each from a collected heap; MB = 10^6 bytes; 159-bit serials, half the entries with a reason code. "
			+ "The peak heap is \($b.peak_heap_mb / $b.alloc_mb | pct) of the bytes allocated, and the collector found up to \($l.peak_live_mb / $l.alloc_mb | pct) of them live during a build (GOGC=\($l.gogc)). Each revocation is encoded as it arrives (ocsp.crlEncoder), so what a build keeps is the encoded list, the CRL and its PEM; the rest is short-lived (the Source'"'"'s serials, each entry'"'"'s builders and time strings), and GOGC sets how much of it piles up before the collector runs. "
			+ "At \($n | tostring | until(test("^[0-9]{4}") | not; sub("(?<a>[0-9])(?<b>[0-9]{3})(?<c>$|,)"; "\(.a),\(.b)\(.c)"))) revoked certificates a rebuild takes \($b.seconds) s (GOGC=\($b.gogc)) and raises the resident size from \($b.rss_before_mb) to \($b.peak_rss_mb) MB for a \($b.crl_bytes / 1e5 | round / 10) MB CRL, of which the DER and PEM served (\($b.held_mb) MB of live heap in all) stay held between builds."
		' "$work/crl.json"
	} >"$REPORT_DIR/crl.md"
	echo "wrote $REPORT_DIR/crl.md and crl.json"
fi
