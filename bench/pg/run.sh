#!/usr/bin/env bash
# The store in PostgreSQL against the store in SQLite, on one machine (a
# throwaway cluster started here, sharing the CPUs with the appliance and
# the load generator):
#   1. enrollments per second at 16 and 64 clients with each store
#      (nmos-certs serve, bench/est/estload, a new TLS connection per
#      enrollment), ROUNDS runs each taking turns, medians; then OCSP
#      GET for the newest enrolled certificates, first and cached, from
#      each appliance;
#   2. two appliances on one database (the second given the CA's keys by
#      backup and restore), the same clients split between them, against
#      one appliance;
#   3. enrollment and OCSP latency with SIZES certificates in PostgreSQL
#      (bench/scale/scaletool fill, through the store's own writer).
# Needs go, curl, jq and Debian's postgresql; run as root (PostgreSQL runs
# as its postgres account) or as a user that may run initdb.
#
#   bash bench/pg/run.sh            # about 5 minutes
#   DURATION=20 ROUNDS=1 SIZES="1000" bash bench/pg/run.sh
#
# Environment: DURATION (seconds per enrollment run, 6), ROUNDS (runs per
# store and client count, 2), SIZES ("1000 1000000"), CLIENTS (clients for
# the latencies of part 3, 4), PORT (19110), REPORT_DIR (write pg.md and
# pg.json there).
set -euo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
DURATION="${DURATION:-6}"
ROUNDS="${ROUNDS:-2}"
SIZES="${SIZES:-1000 1000000}"
CLIENTS="${CLIENTS:-4}"
PORT="${PORT:-19110}"
HOST=est.studio.example.test
ISSUER=ecdsa-int-1

require_tools "(Debian packages: curl, jq, postgresql; Go 1.26 from go.dev)" go curl jq
# shellcheck disable=SC2012 # the versions' directories, newest last
PG=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
[ -x "$PG/initdb" ] || { echo "run.sh: PostgreSQL is not installed (Debian package postgresql)" >&2; exit 1; }
start_work
as=()
if [ "$(id -u)" -eq 0 ]; then
	as=(runuser -u postgres --)
	chown postgres "$work"
	chmod 755 "$work"
fi

echo "building..."
(
	cd "$root"
	CGO_ENABLED=0 go build -trimpath -o "$work/nmos-certs" .
	go build -o "$work/estload" ./bench/est/estload
	go build -o "$work/estpki" ./bench/est/estpki
	go build -o "$work/scaletool" ./bench/scale/scaletool
)
bin="$work/nmos-certs"
"$work/estpki" -dir "$work/pki" -hostname "$HOST" >/dev/null

pgport=$((PORT + 90))
"${as[@]}" "$PG/initdb" -D "$work/pg" -A trust -U postgres --no-locale -E UTF8 >/dev/null
"${as[@]}" "$PG/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories=$work -c max_connections=200" start >/dev/null
pg_stop() { "${as[@]}" "$PG/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null || true; }
on_failure() {
	for f in "$work"/serve-*.log; do
		[ -f "$f" ] && { echo "== $f" >&2; tail -20 "$f" >&2; }
	done
}
trap 'status=$?; [ "$status" -ne 0 ] && on_failure; stop_pids; pg_stop; rm -rf "$work"; exit $status' EXIT
# newdb NAME: a database and the file of its DSN.
newdb() {
	"${as[@]}" "$PG/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$1"
	echo "postgres://postgres@127.0.0.1:$pgport/$1?sslmode=disable" >"$work/dsn-$1"
	chmod 600 "$work/dsn-$1"
}

# config NAME P DSN_NAME: the configuration of an appliance on ports P..P+3,
# its store in SQLite when DSN_NAME is empty.
config() {
	appliance_config "$work/data-$1" "$2" on warn
	if [ -n "$3" ]; then
		printf 'store:\n  driver: postgres\n  dsn_file: %s\n' "$work/dsn-$3"
	fi
}
declare -A pid
# serve NAME P: start an appliance and wait for /readyz.
serve() {
	"$bin" serve --config "$work/$1.yaml" >>"$work/serve-$1.log" 2>&1 &
	pid[$1]=$!
	pids+=("$!")
	for _ in $(seq 600); do
		curl -sf -o /dev/null "http://127.0.0.1:$(($2 + 3))/readyz" && break
		kill -0 "${pid[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	curl -sf -o "$work/root-$1.pem" "http://127.0.0.1:$(($2 + 1))/ca/ecdsa-root-1.pem" && return 0
	echo "run.sh: appliance $1 did not become ready" >&2
	exit 1
}
stop() {
	kill "${pid[$1]}"
	wait "${pid[$1]}" || true
}
# load NAME P CLIENTS OUT [HOSTNAME]: estload against appliance NAME.
load() {
	local pki="$work/pki" host="${5:-$HOST}"
	"$work/estload" -server "127.0.0.1:$2" -servername "$host" -cacert "$work/root-$1.pem" \
		-cert "$pki/device.pem" -key-file "$pki/device.key" -c "$3" -curves P256 -server-pid "${pid[$1]}" \
		-label "$1" -d "${DURATION}s" -warmup $((4 * $3)) -pool $((DURATION * 1000 + 4 * $3)) -out json >"$4"
	if [ "$(jq .error_count "$4")" != 0 ]; then
		echo "run.sh: enrollments failed on $1: $(jq -r .first_error "$4")" >&2
		exit 1
	fi
}
# ocsp NAME P STORE-FLAGS...: OCSP for the newest 1,000 enrolled leaves.
ocsp() {
	local name="$1" p="$2"
	shift 2
	"$work/scaletool" serials "$@" -issuer "$ISSUER" -newest 1000 -out "$work/serials-$name.txt" >/dev/null
	"$work/scaletool" ocsp -base "http://127.0.0.1:$((p + 1))" -issuer "$ISSUER" -serials "$work/serials-$name.txt" -pid "${pid[$name]}" >"$work/ocsp-$name.json"
	if [ "$(jq .errors "$work/ocsp-$name.json")" != 0 ]; then
		echo "run.sh: wrong OCSP answers from $name: $(jq -r .first_error "$work/ocsp-$name.json")" >&2
		exit 1
	fi
}
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# 1. One appliance on each store, taking turns.
echo "== one appliance, SQLite or PostgreSQL"
newdb one
config sqlite "$PORT" "" >"$work/sqlite.yaml"
config postgres "$((PORT + 10))" one >"$work/postgres.yaml"
declare -A at=([sqlite]=$PORT [postgres]=$((PORT + 10)))
serve sqlite "${at[sqlite]}"
serve postgres "${at[postgres]}"
for r in $(seq "$ROUNDS"); do
	for c in 16 64; do
		for s in sqlite postgres; do
			# Only the appliance measured runs: the other is stopped.
			other=sqlite
			[ "$s" = sqlite ] && other=postgres
			kill -STOP "${pid[$other]}"
			load "$s" "${at[$s]}" "$c" "$work/rate-$s-$c-$r.json"
			kill -CONT "${pid[$other]}"
			printf '%-9s %2d clients, run %d: %s\n' "$s" "$c" "$r" "$(jq -r '"\(.enroll_per_s | round)/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' "$work/rate-$s-$c-$r.json")"
		done
	done
done
ocsp sqlite "${at[sqlite]}" -db "$work/data-sqlite/nmos-certs.db"
ocsp postgres "${at[postgres]}" -dsn-file "$work/dsn-one"
for s in sqlite postgres; do
	jq -r --arg s "$s" '"\($s): OCSP first GET p50 \(.first_ms.p50) ms, cached p50 \(.again_ms.p50) ms, \(.again_per_s | round) cached answers/s from 1 client"' "$work/ocsp-$s.json"
done
stop sqlite

# 2. Two appliances on one database: the second one gets the CA's keys
# from the first.
echo "== two appliances on one PostgreSQL database"
"$bin" backup --config "$work/postgres.yaml" --out "$work/keys.backup" >/dev/null
HOST=est2.studio.example.test config postgres2 "$((PORT + 20))" one >"$work/postgres2.yaml"
"$bin" restore --config "$work/postgres2.yaml" --in "$work/keys.backup" >/dev/null
serve postgres2 "$((PORT + 20))"
for r in $(seq "$ROUNDS"); do
	for c in 16 64; do
		load postgres "$((PORT + 10))" $((c / 2)) "$work/pair-a-$c-$r.json" &
		a=$!
		load postgres2 "$((PORT + 20))" $((c / 2)) "$work/pair-b-$c-$r.json" est2.studio.example.test
		wait "$a"
		jq -s '{enroll_per_s: (map(.enroll_per_s) | add), p50: (map(.latency_ms.p50) | add / 2), p99: (map(.latency_ms.p99) | max)}' \
			"$work/pair-a-$c-$r.json" "$work/pair-b-$c-$r.json" >"$work/pair-$c-$r.json"
		printf 'two nodes %2d clients, run %d: %s\n' "$c" "$r" "$(jq -r '"\(.enroll_per_s | round)/s"' "$work/pair-$c-$r.json")"
	done
done
stop postgres
stop postgres2

# 3. Certificates already in PostgreSQL: SIZES of them.
read -r -a sizes <<<"$SIZES"
i=0
for n in "${sizes[@]}"; do
	echo "== $n certificates in PostgreSQL"
	p=$((PORT + 30 + 10 * i))
	i=$((i + 1))
	newdb "size$n"
	config "size$n" "$p" "size$n" >"$work/size$n.yaml"
	"$bin" ca init --config "$work/size$n.yaml" >/dev/null
	"$work/scaletool" fill -dsn-file "$work/dsn-size$n" -mode put -n "$n" -issuer "$ISSUER" -sample "$work/sample-$n.txt" -sample-n 1000 >"$work/fill-$n.json"
	jq -r '"fill: \(.rows) records in \(.seconds) s (\(.rows_per_s)/s), database \(.db_bytes / 1048576 | floor) MiB"' "$work/fill-$n.json"
	# As on an appliance that has been running: autovacuum has visited the
	# table since the fill (otherwise it does so during the measurements).
	"${as[@]}" "$PG/psql" -q -h 127.0.0.1 -p "$pgport" -U postgres -d "size$n" -c "VACUUM (ANALYZE) certificates, certificate_names"
	serve "size$n" "$p"
	"$work/scaletool" ocsp -base "http://127.0.0.1:$((p + 1))" -issuer "$ISSUER" -serials "$work/sample-$n.txt" -pid "${pid[size$n]}" >"$work/ocsp-sampled-$n.json"
	load "size$n" "$p" "$CLIENTS" "$work/size-enroll-$n.json"
	ocsp "size$n" "$p" -dsn-file "$work/dsn-size$n"
	stop "size$n"
	jq -r --arg n "$n" --slurpfile o "$work/ocsp-sampled-$n.json" --slurpfile e "$work/ocsp-size$n.json" \
		'"\($n): enrollment p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, \(.enroll_per_s | round)/s; OCSP first GET p50 \($o[0].first_ms.p50) ms, cached \($o[0].again_ms.p50) ms; enrolled first GET p50 \($e[0].first_ms.p50) ms"' \
		"$work/size-enroll-$n.json"
done

# The figures, medians over the rounds.
# shellcheck disable=SC2086 # $1 is a pattern of files
med() { jq -r "$2" "$work"/$1 | median; }
{
	echo '{'
	for c in 16 64; do
		printf '"sqlite_%d": %s, "postgres_%d": %s, "pair_%d": %s,\n' \
			"$c" "$(med "rate-sqlite-$c-*.json" .enroll_per_s)" "$c" "$(med "rate-postgres-$c-*.json" .enroll_per_s)" "$c" "$(med "pair-$c-*.json" .enroll_per_s)"
		printf '"sqlite_%d_p50": %s, "postgres_%d_p50": %s,\n' \
			"$c" "$(med "rate-sqlite-$c-*.json" .latency_ms.p50)" "$c" "$(med "rate-postgres-$c-*.json" .latency_ms.p50)"
	done
	printf '"ocsp": {"sqlite": %s, "postgres": %s},\n' "$(cat "$work/ocsp-sqlite.json")" "$(cat "$work/ocsp-postgres.json")"
	printf '"sizes": ['
	sep=""
	for n in "${sizes[@]}"; do
		printf '%s{"certificates": %s, "fill": %s, "enroll": %s, "ocsp_sampled": %s, "ocsp_enrolled": %s}' "$sep" "$n" \
			"$(cat "$work/fill-$n.json")" "$(cat "$work/size-enroll-$n.json")" "$(cat "$work/ocsp-sampled-$n.json")" "$(cat "$work/ocsp-size$n.json")"
		sep=","
	done
	printf '],\n"duration_s": %s, "rounds": %s, "clients": %s}\n' "$DURATION" "$ROUNDS" "$CLIENTS"
} | jq . >"$work/pg.json"

# shellcheck disable=SC2016 # jq programs, here and below
table='
	def r(d): if . == null then null else (. * pow(10; d) | round) / pow(10; d) end;
	def x(a; b): if a > 0 then "\(b / a | r(2))x" else "-" end;
	(["", "SQLite", "PostgreSQL", "two appliances, one PostgreSQL", "PostgreSQL / SQLite", "two / one"]),
	((16, 64) as $c | ["enrollments/s, \($c) clients", (.["sqlite_\($c)"] | round), (.["postgres_\($c)"] | round), (.["pair_\($c)"] | round),
		x(.["sqlite_\($c)"]; .["postgres_\($c)"]), x(.["postgres_\($c)"]; .["pair_\($c)"])] | map(tostring)),
	((16, 64) as $c | ["enrollment p50, ms, \($c) clients", (.["sqlite_\($c)_p50"] | r(1)), (.["postgres_\($c)_p50"] | r(1)), "", "", ""] | map(tostring))'
# shellcheck disable=SC2016
table2='
	def r(d): if . == null then null else (. * pow(10; d) | round) / pow(10; d) end;
	["", "SQLite", "PostgreSQL"],
	["OCSP first GET p50 / p99, ms", "\(.ocsp.sqlite.first_ms.p50) / \(.ocsp.sqlite.first_ms.p99)", "\(.ocsp.postgres.first_ms.p50) / \(.ocsp.postgres.first_ms.p99)"],
	["OCSP cached GET p50 / p99, ms", "\(.ocsp.sqlite.again_ms.p50) / \(.ocsp.sqlite.again_ms.p99)", "\(.ocsp.postgres.again_ms.p50) / \(.ocsp.postgres.again_ms.p99)"],
	["OCSP cached GETs/s, one client", "\(.ocsp.sqlite.again_per_s | round)", "\(.ocsp.postgres.again_per_s | round)"]'
# shellcheck disable=SC2016
table3='
	def r(d): if . == null then null else (. * pow(10; d) | round) / pow(10; d) end;
	def fmt: tostring | until(test("^[0-9]{4}") | not; sub("(?<a>[0-9])(?<b>[0-9]{3})(?<c>$|,)"; "\(.a),\(.b)\(.c)"));
	.sizes as $s
	| ["", ($s[] | "\(.certificates | fmt) certificates"), "ratio"],
	  (
		[["enrollment p50 / p99, ms", {a: "enroll", b: "latency_ms", k: ["p50", "p99"]}],
		 ["OCSP first GET p50 / p99, ms", {a: "ocsp_sampled", b: "first_ms", k: ["p50", "p99"]}],
		 ["OCSP cached GET p50 / p99, ms", {a: "ocsp_sampled", b: "again_ms", k: ["p50", "p99"]}],
		 ["OCSP first GET, enrolled, p50 / p99, ms", {a: "ocsp_enrolled", b: "first_ms", k: ["p50", "p99"]}]][]
		| .[0] as $name | .[1] as $f
		| [$name]
		  + [$s[] | .[$f.a][$f.b] as $v | [$f.k[] | $v[.] | tostring] | join(" / ")]
		  + [[$f.k[] as $k | ($s[0][$f.a][$f.b][$k]) as $a | ($s[-1][$f.a][$f.b][$k]) as $b | if $a > 0 then "\($b / $a | r(2))x" else "-" end] | join(" / ")]
	  ),
	  (["enrollments/s, \(.clients) clients"] + [$s[] | .enroll.enroll_per_s | round | tostring] + ["\($s[-1].enroll.enroll_per_s / $s[0].enroll.enroll_per_s | r(2))x"]),
	  (["fill through the store, records/s"] + [$s[] | .fill.rows_per_s | tostring] + ["-"]),
	  (["database size, MiB"] + [$s[] | .fill.db_bytes / 1048576 | r(0) | tostring] + ["-"])'
echo
for t in "$table" "$table2" "$table3"; do
	jq -r "$t"' | @tsv' "$work/pg.json" | column -t -s "$(printf '\t')"
	echo
done

if [ -n "${REPORT_DIR:-}" ]; then
	mkdir -p "$REPORT_DIR"
	cp "$work/pg.json" "$REPORT_DIR/pg.json"
	# md PROGRAM RULE: a Markdown table, RULE under its header.
	md() { jq -r "$1"' | "| " + join(" | ") + " |"' "$work/pg.json" | awk -v rule="$2" '{print} NR == 1 {print rule}'; }
	{
		echo "## The store in PostgreSQL"
		echo
		echo '```sh'
		echo "DURATION=$DURATION ROUNDS=$ROUNDS SIZES=\"$SIZES\" CLIENTS=$CLIENTS bash bench/pg/run.sh"
		echo '```'
		echo
		echo "A PostgreSQL $("$PG/postgres" --version | awk '{print $3}') cluster on the same machine (default settings, \`synchronous_commit = on\`), sharing the two CPUs with the appliances and the load generator. Enrollments: a new TLS connection each; per store and client count, runs of $DURATION s ($ROUNDS of each, taking turns; medians), the other appliance stopped meanwhile. Two appliances: the second given the CA's keys by \`backup\` and \`restore\`, half the clients on each, both on this machine."
		echo
		md "$table" '| --- | --: | --: | --: | --: | --: |'
		echo
		echo "OCSP for the 1,000 newest enrolled certificates, one client, from each appliance after its load: the first GET looks the certificate up in the store and signs; later GETs are answered from memory."
		echo
		md "$table2" '| --- | --: | --: |'
		echo
		echo "With certificates already in PostgreSQL (synthetic records put through the store's own writer by \`bench/scale/scaletool fill -dsn-file\`, then \`VACUUM (ANALYZE)\`, as autovacuum would have by then), $CLIENTS clients, one run of $DURATION s per size:"
		echo
		md "$table3" "| --- |$(for _ in $SIZES; do printf ' --: |'; done) --: |"
		echo
		jq -r '.sizes[-1] as $b | "The synthetic records have random serials, spread over a database of \($b.fill.db_bytes / 1048576 | round) MiB at \($b.certificates) certificates: a first GET for one of them reads index and table pages that PostgreSQL'"'"'s shared buffers (128 MB unless configured) do not hold, from the OS page cache. The certificates devices ask about are the recent ones, whose pages stay in the buffers (\"enrolled\" above). The p99s of the largest size also carry the writing of the fill, which PostgreSQL'"'"'s checkpoints spread over the minutes after it."' "$work/pg.json"
	} >"$REPORT_DIR/pg.md"
	echo "wrote $REPORT_DIR/pg.md and pg.json"
fi
