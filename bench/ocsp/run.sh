#!/usr/bin/env bash
# Cached OCSP GET answers per second with wrk over loopback: the responder
# of ./ocsp with N certificates (bench/ocsp), one URL and then random URLs
# over all N.
#
# Usage: bench/ocsp/run.sh
# Environment: N (certificates, 10000), DURATION (seconds per run, 10),
# THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 32), PORT (18080).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
N="${N:-10000}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18080}"

for tool in go wrk; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 1; }
done

work="$(mktemp -d)"
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/ocsp-load" ./bench/ocsp)
"$work/ocsp-load" -n "$N" -addr "127.0.0.1:$PORT" -paths "$work/paths.txt" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 300); do
	grep -q '^url' "$work/out" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
	sleep 0.2
done
url="$(awk '/^url/ {print $2}' "$work/out")"
[ -n "$url" ] || { echo "run.sh: the responder did not start" >&2; exit 1; }

rps() { awk '/^Requests\/sec:/ {print $2}'; }
one="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$url" | rps)"
random="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$here/random.lua" "http://127.0.0.1:$PORT" -- "$work/paths.txt" | rps)"

printf '\n%-28s %12s\n' "OCSP GET (cached)" "answers/s"
printf '%-28s %12s\n' "one URL" "$one"
printf '%-28s %12s\n' "random URLs over $N" "$random"
printf '(wrk -t%s -c%s -d%ss)\n' "$THREADS" "$CONNECTIONS" "$DURATION"
