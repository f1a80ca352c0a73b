#!/usr/bin/env bash
# Enrollments per second with the store in SQLite and in PostgreSQL (a
# throwaway cluster on this machine, sharing its CPUs), at 16 and 64
# clients: nmos-certs serve on each store in turn, bench/est/estload
# against it, a new TLS connection per enrollment. Needs go, curl and
# Debian's postgresql; run as root (PostgreSQL runs as its postgres
# account) or as a user that may run initdb.
#
#   bash bench/pg/run.sh            # about 1 minute
#   DURATION=20 bash bench/pg/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PG=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as=()
if [ "$(id -u)" -eq 0 ]; then
	as=(runuser -u postgres --)
	chown postgres "$work"
	chmod 755 "$work"
fi
echo "building..."
go build -o "$work/nmos-certs" .
go build -o "$work/estload" ./bench/est/estload
go build -o "$work/estpki" ./bench/est/estpki
"$work/estpki" -dir "$work/pki" -hostname est.studio.example.test >/dev/null

port=$((20000 + RANDOM % 20000))
"${as[@]}" "$PG/initdb" -D "$work/pg" -A trust -U postgres --no-locale -E UTF8 >/dev/null
"${as[@]}" "$PG/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$work" start >/dev/null
trap '"${as[@]}" "$PG/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null; rm -rf "$work"' EXIT
"${as[@]}" "$PG/createdb" -h 127.0.0.1 -p "$port" -U postgres nmos_certs
echo "postgres://postgres@127.0.0.1:$port/nmos_certs?sslmode=disable" >"$work/dsn"
chmod 600 "$work/dsn"

for store in sqlite postgres; do
	extra=""
	if [ "$store" = postgres ]; then
		extra=$'store:\n  driver: postgres\n  dsn_file: '"$work/dsn"
	fi
	cat >"$work/$store.yaml" <<Y
data_dir: $work/data-$store
listen:
  est: 127.0.0.1:18443
  http: 127.0.0.1:18080
  dns: 127.0.0.1:15354
  metrics: 127.0.0.1:19153
  web: "off"
est:
  trusted_client_roots: [$work/pki/mfr-root.pem]
log:
  level: warn
$extra
Y
	"$work/nmos-certs" serve --config "$work/$store.yaml" >"$work/serve-$store.log" 2>&1 &
	pid=$!
	for _ in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:19153/readyz && break; sleep 0.1; done
	curl -sf -o "$work/root.pem" http://127.0.0.1:18080/ca/ecdsa-root-1.pem
	for c in 16 64; do
		printf '%-9s %2d clients: ' "$store" "$c"
		"$work/estload" -server 127.0.0.1:18443 -servername est.studio.example.test -cacert "$work/root.pem" \
			-cert "$work/pki/device.pem" -key-file "$work/pki/device.key" -c "$c" -curves P256 -server-pid "$pid" \
			-d "${DURATION}s" -warmup $((4 * c)) -pool $((DURATION * 1500)) -out text |
			awk '/enrollments/ {e = $NF} /latency ms/ {p50 = $4; p99 = $8} END {printf "%s, p50 %s ms, p99 %s ms\n", e, p50, p99}'
	done
	kill "$pid"
	wait "$pid" || true
done
