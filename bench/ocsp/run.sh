#!/usr/bin/env bash
# OCSP answers per second with wrk over loopback: nmos-certs serve (the
# production binary, HTTP stack and OCSP defaults, with a store holding N
# issued certificates) against cfssl ocspserve v1.6.5 serving pre-signed
# answers for the same certificates, and a bare net/http handler
# answering a fixed 400-byte body as the machine's HTTP reference.
#
# Cells: GET of one URL, GET of random URLs over the N certificates, POST,
# and POST with a nonce. Each cell is measured in ROUNDS runs of
# DURATION/ROUNDS seconds per server, the servers taking turns so that
# noise from other work on the machine falls on all alike; answers/s is
# the median of the runs. In the table cfssl serves answers signed by the
# issuer, without a certificate (its fastest setup); for GET of one URL it
# is measured once more with answers signed by a delegated responder and
# carrying its certificate, as nmos-certs signs by default (cfssl then
# checks that signature on every request).
#
# Usage: bench/ocsp/run.sh      (wrk must be installed: make bench-tools)
# Environment: N (certificates, 10000), DURATION (seconds per cell and
# server, 8), ROUNDS (4), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 32),
# PORT (first of 6 loopback ports, 18080), REPORT_DIR (when set, write
# ocsp.md and ocsp.json there).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
N="${N:-10000}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-4}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18080}"
CFSSL_VERSION=v1.6.5

require_tools "(make bench-tools)" go wrk awk curl
slice=$(awk -v d="$DURATION" -v r="$ROUNDS" 'BEGIN { s = d / r; if (s < 1) s = 1; printf "%d", s }')

port_http=$PORT port_est=$((PORT + 1)) port_dns=$((PORT + 2)) port_cfssl=$((PORT + 3))
port_cfssl_del=$((PORT + 4)) port_bare=$((PORT + 5))

for p in $port_http $port_est $port_dns $port_cfssl $port_cfssl_del $port_bare; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "run.sh: 127.0.0.1:$p is in use; set PORT to the first of 6 free ports" >&2
		exit 1
	fi
done

start_work
# on_failure: the end of each server's log, when the run fails.
on_failure() {
	local log
	for log in "$work"/*.log; do
		[ -s "$log" ] && { echo "== ${log##*/}"; tail -n 5 "$log"; } >&2
	done
}
started=$SECONDS

echo "building nmos-certs, ocsp-load and cfssl $CFSSL_VERSION"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$work/nmos-certs" . && go build -o "$work/ocsp-load" ./bench/ocsp)
# cfssl's command needs modules this project does not, so it is built in
# a module of its own, with the versions its own go.mod asks for.
mkdir "$work/cfssl-build"
(
	cd "$work/cfssl-build"
	export GOWORK=off GOFLAGS=-mod=mod
	go mod init ocsp-bench-cfssl >/dev/null 2>&1
	go get "github.com/cloudflare/cfssl/cmd/cfssl@$CFSSL_VERSION" >/dev/null 2>&1
	CGO_ENABLED=0 go build -o "$work/cfssl" github.com/cloudflare/cfssl/cmd/cfssl
)
go version -m "$work/cfssl" | grep -q "github.com/cloudflare/cfssl[[:space:]]*$CFSSL_VERSION" ||
	{ echo "run.sh: the cfssl built is not $CFSSL_VERSION" >&2; exit 1; }

# config DATA_DIR: the configuration of the measured nmos-certs, every
# other setting at its default.
config() {
	printf 'data_dir: %s\nlisten:\n  http: 127.0.0.1:%s\n  est: 127.0.0.1:%s\n  dns: 127.0.0.1:%s\n  metrics: "off"\n  web: "off"\n' \
		"$1" "$port_http" "$port_est" "$port_dns"
}
config "$work/data" >"$work/nmos-certs.yaml"
echo "issuing $N certificates and signing cfssl's answers ($((SECONDS - started))s)"
"$work/ocsp-load" setup -config "$work/nmos-certs.yaml" -n "$N" -out "$work"

"$work/nmos-certs" serve --config "$work/nmos-certs.yaml" >"$work/nmos-certs.log" 2>&1 &
pid_nmos=$!
"$work/cfssl" ocspserve -address 127.0.0.1 -port "$port_cfssl" -responses "$work/responses.txt" >"$work/cfssl.log" 2>&1 &
pid_cfssl=$!
"$work/cfssl" ocspserve -address 127.0.0.1 -port "$port_cfssl_del" -responses "$work/responses-delegated.txt" >"$work/cfssl-delegated.log" 2>&1 &
pid_cfssl_del=$!
"$work/ocsp-load" bare -addr "127.0.0.1:$port_bare" &
pid_bare=$!
pids=("$pid_nmos" "$pid_cfssl" "$pid_cfssl_del" "$pid_bare")

nmos="http://127.0.0.1:$port_http"
cfssl="http://127.0.0.1:$port_cfssl"
cfssl_del="http://127.0.0.1:$port_cfssl_del"
bare="http://127.0.0.1:$port_bare"
# Every answer is checked once, which also fills nmos-certs' cache (it
# signs on first request) before anything is timed.
echo "checking every answer of each server ($((SECONDS - started))s)"
{
	echo "== nmos-certs"
	"$work/ocsp-load" check -base "$nmos" -paths "$work/paths.txt" -post "$work/request.der,$work/request-nonce.der" -post-path /ocsp
	echo "== cfssl ocspserve"
	"$work/ocsp-load" check -base "$cfssl" -paths "$work/cfssl-paths.txt" -post "$work/request.der,$work/request-nonce.der"
	echo "== cfssl ocspserve, delegated answers"
	"$work/ocsp-load" check -base "$cfssl_del" -paths "$work/cfssl-paths.txt" | grep -v 'headers:'
} | tee "$work/check.txt"
curl -sf -o /dev/null "$bare/" || { echo "run.sh: the bare server does not answer" >&2; exit 1; }
paths=$(wc -l <"$work/paths.txt")
one_nmos="$nmos$(head -n 1 "$work/paths.txt")"
one_cfssl="$cfssl$(head -n 1 "$work/cfssl-paths.txt")"
one_cfssl_del="$cfssl_del$(head -n 1 "$work/cfssl-paths.txt")"

# run CELL SERVER PID ARGS...: one wrk run; records its answers/s.
declare -A rates=() bad=()
run() {
	local cell=$1 server=$2 pid=$3 out
	shift 3
	out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${slice}s" "$@")
	kill -0 "$pid" 2>/dev/null || { echo "run.sh: $server stopped during the run" >&2; exit 1; }
	local r e
	r=$(awk '/ requests in / {sub(/s,$/, "", $4); printf "%.0f", $1 / $4}' <<<"$out")
	e=$(awk '/^  Non-2xx/ {n += $NF} /^  Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
	rates[$cell.$server]="${rates[$cell.$server]:-} $r"
	bad[$cell.$server]=$(( ${bad[$cell.$server]:-0} + e ))
	printf '  %-6s %-16s %8s answers/s\n' "$cell" "$server" "$r"
}

# measure CELL SERVERS...: ROUNDS rounds over the servers, in reverse
# order every other round.
measure() {
	local cell=$1 r s
	shift
	for r in $(seq 1 "$ROUNDS"); do
		local order=("$@")
		if [ $((r % 2)) -eq 0 ]; then
			order=()
			for s in "$@"; do order=("$s" "${order[@]}"); done
		fi
		for s in "${order[@]}"; do
			case "$cell.$s" in
			get1.nmos) run get1 nmos "$pid_nmos" "$one_nmos" ;;
			get1.cfssl) run get1 cfssl "$pid_cfssl" "$one_cfssl" ;;
			get1.cfssl-delegated) run get1 cfssl-delegated "$pid_cfssl_del" "$one_cfssl_del" ;;
			get1.bare) run get1 bare "$pid_bare" "$bare/" ;;
			getr.nmos) run getr nmos "$pid_nmos" -s "$here/random.lua" "$nmos" -- "$work/paths.txt" ;;
			getr.cfssl) run getr cfssl "$pid_cfssl" -s "$here/random.lua" "$cfssl" -- "$work/cfssl-paths.txt" ;;
			post.nmos) BODY="$work/request.der" run post nmos "$pid_nmos" -s "$here/post.lua" "$nmos/ocsp" ;;
			post.cfssl) BODY="$work/request.der" run post cfssl "$pid_cfssl" -s "$here/post.lua" "$cfssl/" ;;
			nonce.nmos) BODY="$work/request-nonce.der" run nonce nmos "$pid_nmos" -s "$here/post.lua" "$nmos/ocsp" ;;
			nonce.cfssl) BODY="$work/request-nonce.der" run nonce cfssl "$pid_cfssl" -s "$here/post.lua" "$cfssl/" ;;
			esac
		done
	done
}

echo "measuring: $ROUNDS rounds of ${slice}s per server and cell ($((SECONDS - started))s)"
measure get1 nmos cfssl bare cfssl-delegated
for cell in getr post nonce; do
	measure "$cell" nmos cfssl
done

# rate KEY: the median of the runs' answers/s.
rate() {
	tr ' ' '\n' <<<"${rates[$1]}" | awk 'NF' | sort -n |
		awk '{v[NR] = $1} END {if (NR % 2) printf "%.0f", v[(NR + 1) / 2]; else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$(rate "$1")" -v b="$(rate "$2")" 'BEGIN {printf "%.2f", a / b}'; }
declare -A label=(
	[get1]="GET one URL"
	[getr]="GET random over $paths"
	[post]="POST"
	[nonce]="POST with nonce"
)
errors=0
for k in "${!bad[@]}"; do
	errors=$((errors + bad[$k]))
done

table() {
	printf '| Request | nmos-certs answers/s | cfssl ocspserve answers/s | ratio |\n'
	printf '|---|---:|---:|---:|\n'
	for cell in get1 getr post nonce; do
		printf '| %s | %s | %s | %sx |\n' "${label[$cell]}" "$(rate "$cell.nmos")" "$(rate "$cell.cfssl")" "$(ratio "$cell.nmos" "$cell.cfssl")"
	done
	printf '| GET one URL, cfssl answers carrying a delegated responder certificate | %s | %s | %sx |\n' \
		"$(rate get1.nmos)" "$(rate get1.cfssl-delegated)" "$(ratio get1.nmos get1.cfssl-delegated)"
	printf '| reference: bare net/http handler, fixed 400-byte body, GET | %s (bare handler) | | nmos-certs GET one URL: %sx of it |\n' \
		"$(rate get1.bare)" "$(ratio get1.nmos get1.bare)"
}

# The commands of the run as a reader would type them at the root of the
# repository, with the files of `ocsp-load setup -out ocsp-bench`.
commands() {
	local w="wrk -t$THREADS -c$CONNECTIONS -d${slice}s" d=ocsp-bench
	cat <<EOF
go build -o ocsp-load ./bench/ocsp && CGO_ENABLED=0 go build -trimpath -o nmos-certs .
# cfssl $CFSSL_VERSION in a module of its own: go mod init x && go get github.com/cloudflare/cfssl/cmd/cfssl@$CFSSL_VERSION && go build github.com/cloudflare/cfssl/cmd/cfssl
mkdir $d && printf '$(config $d/data | sed -z 's/\n/\\n/g')' >$d/nmos-certs.yaml
./ocsp-load setup -config $d/nmos-certs.yaml -n $N -out $d
./nmos-certs serve --config $d/nmos-certs.yaml &
./cfssl ocspserve -address 127.0.0.1 -port $port_cfssl -responses $d/responses.txt &
./cfssl ocspserve -address 127.0.0.1 -port $port_cfssl_del -responses $d/responses-delegated.txt &
./ocsp-load bare -addr 127.0.0.1:$port_bare &
./ocsp-load check -base $nmos -paths $d/paths.txt -post $d/request.der,$d/request-nonce.der -post-path /ocsp   # also fills the cache
./ocsp-load check -base $cfssl -paths $d/cfssl-paths.txt -post $d/request.der,$d/request-nonce.der
./ocsp-load check -base $cfssl_del -paths $d/cfssl-paths.txt
# ${label[get1]}: nmos-certs, cfssl, cfssl with delegated answers, bare net/http
$w "$nmos\$(head -n 1 $d/paths.txt)"
$w "$cfssl\$(head -n 1 $d/cfssl-paths.txt)"
$w "$cfssl_del\$(head -n 1 $d/cfssl-paths.txt)"
$w $bare/
# GET random over the certificates
$w -s bench/ocsp/random.lua $nmos -- $d/paths.txt
$w -s bench/ocsp/random.lua $cfssl -- $d/cfssl-paths.txt
# ${label[post]}
BODY=$d/request.der $w -s bench/ocsp/post.lua $nmos/ocsp
BODY=$d/request.der $w -s bench/ocsp/post.lua $cfssl/
# ${label[nonce]}
BODY=$d/request-nonce.der $w -s bench/ocsp/post.lua $nmos/ocsp
BODY=$d/request-nonce.der $w -s bench/ocsp/post.lua $cfssl/
EOF
}

echo
table
printf '\n%s answers with an HTTP error or socket errors (must be 0)\n' "$errors"
printf '\nCommands (each wrk run %s times, the servers taking turns; figures are medians):\n' "$ROUNDS"
commands | sed 's/^/  /'
printf 'took %ds\n' $((SECONDS - started))

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	size() { awk -v h="$1" '$0 == h {f = 1} f && /^GET: / {sub(/.*answers of /, ""); print; exit}' "$work/check.txt"; }
	{
		echo "## OCSP"
		echo
		echo "OCSP answers per second over loopback with wrk ($THREADS threads, $CONNECTIONS connections, on the same"
		echo "cores as the servers), in one run: \`nmos-certs serve\` (the production binary, HTTP stack"
		echo "and default OCSP settings: delegated responder, answers signed ahead and cached) with $N"
		echo "issued certificates in its store, against \`cfssl ocspserve\` $CFSSL_VERSION serving pre-signed"
		echo "answers for the same certificates from \`-responses\`. Each figure is the median of $ROUNDS wrk"
		echo "runs of ${slice}s, the servers taking turns. cfssl's answers in the table are signed by the"
		echo "issuer and carry no certificate, its fastest setup; the extra row has answers signed by a"
		echo "delegated responder and carrying its certificate, like nmos-certs' own. Answers: nmos-certs"
		echo "$(size '== nmos-certs'), cfssl $(size '== cfssl ocspserve'), cfssl delegated $(size '== cfssl ocspserve, delegated answers');"
		echo "$errors HTTP or socket errors. GET paths whose base64 holds \"//\" are left out ($((N - paths))"
		echo "of $N), as cfssl's ServeMux redirects them."
		echo
		echo "\`\`\`sh"
		commands
		echo "\`\`\`"
		echo
		table
		echo
		echo "A cached nmos-certs answer costs its handler a few hundred nanoseconds (the raw GET path or"
		echo "POST body finds the answer in a map of aliases, and the DER and every header value were"
		echo "made when it was signed; \`go test -bench Cached ./ocsp/\`); the rest of each request is"
		echo "net/http and the kernel's loopback TCP, which is all the bare net/http row does, so that row"
		echo "is this machine's HTTP limit with wrk sharing its cores. cfssl ocspserve parses the stored"
		echo "answer again on every request (and checks its signature when it carries a certificate, hence"
		echo "the delegated row) and marshals a JSON log event even with debug logging off. With a nonce,"
		echo "nmos-certs signs a fresh answer echoing it (RFC 8954), one ECDSA P-256 signature per request;"
		echo "cfssl ignores the nonce and sends its pre-signed answer, so that cfssl figure is its cached POST."
	} >"$REPORT_DIR/ocsp.md"
	runs() { tr ' ' '\n' <<<"${rates[$1]}" | awk 'NF' | paste -sd, -; }
	{
		printf '{\n'
		printf '  "wrk": {"threads": %s, "connections": %s, "seconds_per_run": %s, "rounds": %s},\n' "$THREADS" "$CONNECTIONS" "$slice" "$ROUNDS"
		printf '  "certificates": %s, "get_paths": %s, "cfssl_version": "%s", "errors": %s,\n' "$N" "$paths" "$CFSSL_VERSION" "$errors"
		printf '  "summary": {"get_ratio": %s, "get_one_ratio": %s, "get_random_ratio": %s, "post_ratio": %s, "nonce_ratio": %s, "get_one_vs_cfssl_delegated_ratio": %s, "get_one_vs_bare_ratio": %s},\n' \
			"$(awk -v a="$(ratio get1.nmos get1.cfssl)" -v b="$(ratio getr.nmos getr.cfssl)" 'BEGIN {print (a + 0 < b + 0 ? a : b)}')" \
			"$(ratio get1.nmos get1.cfssl)" "$(ratio getr.nmos getr.cfssl)" "$(ratio post.nmos post.cfssl)" "$(ratio nonce.nmos nonce.cfssl)" \
			"$(ratio get1.nmos get1.cfssl-delegated)" "$(ratio get1.nmos get1.bare)"
		printf '  "bare_net_http": {"answers_per_s": %s, "runs": [%s]},\n' "$(rate get1.bare)" "$(runs get1.bare)"
		printf '  "cfssl_delegated_get_one": {"answers_per_s": %s, "runs": [%s]},\n' "$(rate get1.cfssl-delegated)" "$(runs get1.cfssl-delegated)"
		printf '  "cells": [\n'
		sep=""
		for cell in get1 getr post nonce; do
			printf '%s    {"request": "%s", "nmos_certs_answers_per_s": %s, "cfssl_answers_per_s": %s, "ratio": %s, "nmos_certs_runs": [%s], "cfssl_runs": [%s]}' \
				"$sep" "${label[$cell]}" "$(rate "$cell.nmos")" "$(rate "$cell.cfssl")" "$(ratio "$cell.nmos" "$cell.cfssl")" "$(runs "$cell.nmos")" "$(runs "$cell.cfssl")"
			sep=$',\n'
		done
		printf '\n  ]\n}\n'
	} >"$REPORT_DIR/ocsp.json"
	echo "wrote $REPORT_DIR/ocsp.md and $REPORT_DIR/ocsp.json"
fi
if [ "$errors" -ne 0 ]; then
	echo "run.sh: some answers were errors; the figures are not comparable" >&2
	exit 1
fi
