#!/usr/bin/env bash
# bench/run.sh: the presence benchmark suite.
#
#   bash bench/run.sh            # full run, about 15 minutes
#   bash bench/run.sh --quick    # smoke test, under 2 minutes
#
# As root on Debian 12 it runs scripts/setup.sh (packages, build, install),
# installs libpq-dev if missing, builds bench/listen_client.c, starts a
# throwaway cluster as the postgres user (private port, socket in a temp
# directory, shared_preload_libraries = 'presence', the worker on), and runs:
#
#   1  steady-state heartbeat vs SELECT 1 and vs the naive upsert, with a
#      breakdown of the call; WAL bytes per heartbeat
#   2  heartbeat_many() in batches of 1000 vs the naive batch upsert and
#      vs Redis (a private redis-server, pipelined ZADD from redis-benchmark)
#   3  status-changing calls vs UPDATE + pg_notify (and UPDATE alone, to
#      show what the NOTIFY commit lock costs)
#   4  sweep(): nothing due at 1M sessions; 10,000 due among 1M vs among 10,000
#   5  mass expiry of 100,000 sessions by the worker, seen by a LISTEN client
#   6  deadline-to-event latency of 10,000 sessions spread over 60 s
#   7  bloat of presence.sessions/users under steady heartbeats
#   8  shared memory per tracked session (the session cache)
#
# Throughput pairs run interleaved over several rounds (pgbench -c 8 -j 2
# -M prepared) and the medians are compared.  It prints one table, every
# figure next to its reference measured in the same run, and keeps the log,
# the raw per-round numbers and the table in bench/results/<date>/.  It
# stops everything it started and leaves nothing running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SRC=$ROOT/bench
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config

QUICK=0
for arg in "$@"; do
	case $arg in
		--quick) QUICK=1 ;;
		-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
		*) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
	esac
done

# Nothing from the caller's environment may steer a connection or a locale.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PG' || true)
export LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH="$PG_BIN:$PATH"

# ---- sizes --------------------------------------------------------------
if [ "$QUICK" -eq 1 ]; then
	MODE=quick
	USERS=10000          # users of the heartbeat, batch and bloat benchmarks
	SECS=1               # seconds per pgbench run
	ROUNDS=2             # interleaved rounds per comparison
	WAL_N=20000          # heartbeats for the WAL figure
	WAL_NAIVE_N=2000
	SWEEP_BIG=100000     # sessions in the "large" sweep database
	SWEEP_DUE=2000       # due sessions per sweep round
	SWEEP_REPS=200       # repetitions of the nothing-due sweep
	SWEEP_ROUNDS=2
	SWEEP_TIMEOUT=10     # seconds before a sweep() counts as not finishing
	MASS=5000            # sessions expiring at the same moment
	LAT_N=1000           # sessions of the latency benchmark ...
	LAT_SPREAD=8         # ... with deadlines spread over this many seconds
	BLOAT_FAST_ROUNDS=4  # as-fast-as-possible rounds (one heartbeat per user)
	BLOAT_WRITE_ROUNDS=2 # rounds with presence.granularity = 0 ...
	BLOAT_WRITE_BUDGET=8 # ... for at most this many seconds
else
	MODE=full
	USERS=100000
	SECS=4
	ROUNDS=5
	WAL_N=100000
	WAL_NAIVE_N=20000
	SWEEP_BIG=1000000
	SWEEP_DUE=10000
	SWEEP_REPS=1000
	SWEEP_ROUNDS=5
	SWEEP_TIMEOUT=30
	MASS=100000
	LAT_N=10000
	LAT_SPREAD=60
	BLOAT_FAST_ROUNDS=40   # 20 minutes' worth at a 30 s interval
	BLOAT_WRITE_ROUNDS=10
	BLOAT_WRITE_BUDGET=120
fi
BATCHES=$((USERS / 1000))
CLIENTS=8
PGB=(-n -c "$CLIENTS" -j 2 -M prepared)

WORK='' STARTED='' PORT='' LISTENERS=() RESDIR=''
T_START=$(date +%s)

if [ "$(id -u)" -eq 0 ]; then
	OWNER=postgres
	as_pg() { runuser -u postgres -- env HOME="$WORK" PATH="$PATH" \
		PGHOST="$WORK" PGPORT="$PORT" LC_ALL=C.UTF-8 "$@"; }
else
	OWNER=$(id -un)
	as_pg() { env HOME="$WORK" PGHOST="$WORK" PGPORT="$PORT" "$@"; }
fi

say() { printf '\n=== %s  (%ss)\n' "$*" "$(($(date +%s) - T_START))"; }
log() { printf '  %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local status=$? pid
	set +e
	for pid in "${LISTENERS[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ -n "$STARTED" ]; then
		if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
			echo "----- server log (last 30 lines)"
			tail -n 30 "$WORK/server.log"
		fi
		as_pg pg_ctl -D "$WORK/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
			as_pg pg_ctl -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		[ -z "$RESDIR" ] || cp "$WORK/server.log" "$RESDIR/server.log" 2>/dev/null
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ---- results: raw per-round values, medians -----------------------------
rec() { printf '%s\t%s\n' "$1" "$2" >>"$RESDIR/rounds.tsv"; }
med() {	# median of every value recorded under KEY, or "-"
	awk -F'\t' -v k="$1" '$1 == k && $2 != "" { print $2 }' "$RESDIR/rounds.tsv" |
		sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) print "-";
			else if (NR % 2) print v[(NR + 1) / 2];
			else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
val() { awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "-" : v) }' \
	"$RESDIR/rounds.tsv"; }

# ---- SQL and pgbench helpers --------------------------------------------
q() {	# q DB SQL: one value (or rows) from psql, unaligned
	as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}
qf() {	# qf DB: run SQL from stdin
	as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$1"
}
PGB_ENV=()	# e.g. (PGOPTIONS='-c synchronous_commit=off') for one group
pgb() {	# pgb DB SCRIPT ARGS...: run pgbench; print its tps
	local db=$1 script=$2 out; shift 2
	if ! out=$(as_pg env "${PGB_ENV[@]}" pgbench "${PGB[@]}" -f "$WORK/bench/$script" \
		-D users="$USERS" -D batches="$BATCHES" "$@" "$db" 2>&1); then
		printf '%s\n' "$out" | tail -n 8 >&2
		return 1
	fi
	printf '%s\n' "$out" | awk '/^tps = / { print $3; exit }'
}
rounds() {	# rounds GROUP DB NAME:SCRIPT...: interleaved, order rotated per round
	local group=$1 db=$2 r i k n line name script tps
	shift 2
	local variants=("$@")
	n=${#variants[@]}
	for ((r = 0; r < ROUNDS; r++)); do
		line="round $((r + 1))/$ROUNDS:"
		for ((i = 0; i < n; i++)); do
			k=$(((i + r) % n))
			name=${variants[k]%%:*}
			script=${variants[k]#*:}
			tps=$(pgb "$db" "$script" -T "$SECS")
			rec "$group.$name" "$tps"
			line+=" $name=$(printf '%.0f' "$tps")"
		done
		log "$line"
	done
}
# api_sessions DB PREFIX COUNT TTL_SQL AWAY_SQL: COUNT sessions (PREFIX1 ..
# PREFIXn, session s1) made with presence.heartbeat() by two backends in
# transactions of 10,000; TTL_SQL and AWAY_SQL may use i.
api_sessions() {
	local db=$1 prefix=$2 count=$3 ttl=$4 away=$5 k a b s e pids=() chunk=10000
	local half=$(((count + 1) / 2))
	for k in 0 1; do
		a=$((k * half + 1))
		b=$(((k + 1) * half))
		((b <= count)) || b=$count
		((a <= b)) || continue
		(
			for ((s = a; s <= b; s += chunk)); do
				e=$((s + chunk - 1))
				((e <= b)) || e=$b
				echo "SELECT count(presence.heartbeat('$prefix' || i, 's1', true, NULL, $ttl, $away)) FROM generate_series($s, $e) i;"
			done | as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" >/dev/null
		) &
		pids+=($!)
	done
	for k in "${pids[@]}"; do wait "$k" || return 1; done
}
sizes() {	# sizes DB: bytes of presence.sessions and presence.users with indexes
	q "$1" "SELECT pg_total_relation_size('presence.sessions') || ' ' ||
				   pg_total_relation_size('presence.users')"
}
start_listener() {	# start_listener DB STATUS PREFIX EXPECT TIMEOUT OUTFILE
	rm -f "$WORK/ready"
	"$WORK/listen_client" -d "host=$WORK port=$PORT dbname=$1 user=$OWNER" \
		-s "$2" -p "$3" -n "$4" -t "$5" -g 2 -r "$WORK/ready" >"$6" &
	LISTENERS+=($!)
	LISTENER=$!
	for _ in $(seq 100); do
		[ -e "$WORK/ready" ] && return 0
		sleep 0.1
	done
	die "the LISTEN client did not start"
}
kv() {	# kv FILE KEY: a value of the listener's summary line
	tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# ---- 0. setup -----------------------------------------------------------
say "setup ($MODE run)"
bash "$ROOT/scripts/setup.sh"
if ! dpkg-query -W -f='${Status}' libpq-dev 2>/dev/null | grep -q 'install ok installed'; then
	[ "$(id -u)" -eq 0 ] || die "libpq-dev is missing (run as root to install it)"
	log "installing libpq-dev"
	DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update
	DEBIAN_FRONTEND=noninteractive apt-get -qq -y -o DPkg::Lock::Timeout=300 \
		--no-install-recommends install libpq-dev >/dev/null
fi
# Redis for the reference of section 2.  A policy-rc.d keeps the package
# from starting a system-wide redis-server; the bench starts its own.
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		log "installing redis-server (reference for section 2)"
		policy_rc=/usr/sbin/policy-rc.d
		had_policy=0
		[ -e "$policy_rc" ] && had_policy=1
		[ "$had_policy" -eq 1 ] || printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
		chmod +x "$policy_rc"
		DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update || true
		DEBIAN_FRONTEND=noninteractive apt-get -qq -y -o DPkg::Lock::Timeout=300 \
			--no-install-recommends install redis-server redis-tools >/dev/null ||
			log "could not install redis-server: the Redis reference is skipped"
		[ "$had_policy" -eq 1 ] || rm -f "$policy_rc"
	else
		log "redis-server is missing: the Redis reference is skipped"
	fi
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
RESDIR=$BENCH_SRC/results/$STAMP-$MODE
mkdir -p "$RESDIR"
: >"$RESDIR/rounds.tsv"
exec > >(tee -a "$RESDIR/run.log") 2>&1
for kv_ in users=$USERS sweep_big=$SWEEP_BIG sweep_due=$SWEEP_DUE mass=$MASS \
	lat_n=$LAT_N lat_spread=$LAT_SPREAD fast_rounds=$BLOAT_FAST_ROUNDS wal_n=$WAL_N; do
	rec "cfg.${kv_%%=*}" "${kv_#*=}"
done

WORK=$(mktemp -d /tmp/presence-bench.XXXXXX)
mkdir "$WORK/bench"
cp "$BENCH_SRC"/*.sql "$WORK/bench/"
cc -O2 -Wall -Wextra -o "$WORK/listen_client" "$BENCH_SRC/listen_client.c" \
	-I"$("$PG_CONFIG" --includedir)" -lpq
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER": "$WORK"
chmod 755 "$WORK"

PORT=$((56000 + RANDOM % 3000))
mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
SHARED_BUFFERS_MB=$((mem_mb / 4 < 2048 ? mem_mb / 4 : 2048))
as_pg initdb -D "$WORK/data" -A trust -N -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
	{ cat "$WORK/initdb.log"; exit 1; }
SETTINGS=$(cat <<CONF
shared_preload_libraries = 'presence'
presence.startup_grace = 0
presence.max_sessions = 2000000
shared_buffers = ${SHARED_BUFFERS_MB}MB
max_connections = 50
max_worker_processes = 16
synchronous_commit = on
fsync = on
wal_level = replica
max_wal_size = 8GB
checkpoint_timeout = 30min
jit = off
autovacuum = on
CONF
)
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
$SETTINGS
CONF
log "cluster: port $PORT, socket and data in $WORK"
as_pg pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start >/dev/null
STARTED=1

PG_VERSION=$(q postgres "SELECT version()")
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "mode: $MODE"
	echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src presence--1.0.sql 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo "nproc: $(nproc)"
	echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "free -g:"; free -g | sed 's/^/  /'
	echo "postgres: $PG_VERSION"
	echo "settings (besides initdb defaults):"; printf '%s\n' "$SETTINGS" | sed 's/^/  /'
	echo "pgbench: ${PGB[*]}, $SECS s per run, $ROUNDS interleaved rounds, medians"
} | tee "$RESDIR/settings.txt" | sed 's/^/  /'

# Databases: bench (heartbeats, batches, status changes), sweep_big and
# sweep_small (sweeps), live (worker: mass expiry and latency), bloat.
# In bench and bloat, sessions live 2 h and go idle after 2 h and the
# granularity is 30 min, so every heartbeat of the run is inside the
# granularity (the state measured in 1); sweep and live pass their timers
# per call.
for db in bench sweep_big sweep_small live bloat; do
	as_pg createdb "$db"
done
for db in bench bloat; do
	q postgres "ALTER DATABASE $db SET presence.session_ttl = '2h'"
	q postgres "ALTER DATABASE $db SET presence.away_after = '2h'"
	q postgres "ALTER DATABASE $db SET presence.granularity = '30min'"
done
for db in bench sweep_big sweep_small live bloat; do
	q "$db" "CREATE EXTENSION presence" >/dev/null
	qf "$db" <"$WORK/bench/setup.sql" >/dev/null
	qf "$db" <"$WORK/bench/naive.sql" >/dev/null
done

say "bench database: $USERS users with one session each (presence.heartbeat, 2 backends)"
t0=$(date +%s.%N)
api_sessions bench u "$USERS" NULL NULL
t1=$(date +%s.%N)
CREATE_RATE=$(awk -v n="$USERS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
rec setup.create_rate "$CREATE_RATE"
log "created in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s ($CREATE_RATE new sessions/s)"
qf bench <<SQL
SELECT count(naive.heartbeat('u' || i, 's1')) FROM generate_series(1, $USERS) i \g /dev/null
-- status-change users: offline users c1 .. c(USERS+8), made like a user who
-- connected and left, and the same users in the reference table
SELECT presence.heartbeat('ctpl', 's1') \g /dev/null
SELECT presence.disconnect('ctpl', 's1') \g /dev/null
SELECT bench.clone_rows('presence.users', 'ctpl', 'c', 1, $USERS + 8) \g /dev/null
CREATE TABLE bench.status_ref (user_id text PRIMARY KEY, status text NOT NULL,
							   since timestamptz NOT NULL);
INSERT INTO bench.status_ref SELECT 'c' || i, 'offline', now()
  FROM generate_series(1, $USERS + 8) i;
-- batches of 1000 existing sessions: batch b holds u((b-1)*1000+1) .. u(b*1000)
CREATE TABLE bench.batches AS
SELECT b AS id, array_agg('u' || ((b - 1) * 1000 + k) ORDER BY k) AS user_ids,
	   array_fill('s1'::text, ARRAY[1000]) AS session_ids
  FROM generate_series(1, $BATCHES) b, generate_series(1, 1000) k GROUP BY b;
ALTER TABLE bench.batches ADD PRIMARY KEY (id);
VACUUM ANALYZE;
CHECKPOINT;
SQL

# ---- 1. steady-state heartbeat ------------------------------------------
say "1. steady-state heartbeat: TPS, interleaved with SELECT 1, the naive upsert and a breakdown of the call"
rounds hb bench select1:select1.sql presence:hb_presence.sql naive:hb_naive.sql \
	call_plain:call_plain.sql call_definer:call_definer.sql \
	call_sql_definer:call_sql_definer.sql probe:probe.sql

say "1. WAL bytes per heartbeat (pg_current_wal_lsn before/after a fixed number of calls)"
# Autovacuum would add its own WAL (the naive table is full of dead rows by
# now): vacuum first and keep autovacuum off while measuring.  What else is
# in the window is listed by pg_waldump in the log.
q bench "VACUUM" >/dev/null
q postgres "ALTER SYSTEM SET autovacuum = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 60); do
	[ "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" = 0 ] && break
	sleep 0.5
done
wal_run() {	# wal_run NAME SCRIPT N
	local lsn0 lsn1 bytes n=$(($3 / CLIENTS * CLIENTS))
	lsn0=$(q bench "SELECT pg_current_wal_lsn()")
	pgb bench "$2" -t $((n / CLIENTS)) >/dev/null
	lsn1=$(q bench "SELECT pg_current_wal_lsn()")
	bytes=$(q bench "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
	rec "wal.$1.bytes" "$bytes"
	rec "wal.$1.n" "$n"
	log "$1: $bytes bytes of WAL for $n calls ($lsn0 .. $lsn1)"
	if [ "$bytes" -gt 0 ]; then
		as_pg pg_waldump -p "$WORK/data/pg_wal" -s "$lsn0" -e "$lsn1" -z 2>/dev/null |
			awk 'NR > 2 && $2 != "0" && $1 != "Total" { printf "      %s\n", $0 }' | head -n 12 || true
	fi
}
wal_run select1 select1.sql "$WAL_N"
wal_run presence hb_presence.sql "$WAL_N"
wal_run naive hb_naive.sql "$WAL_NAIVE_N"
q postgres "ALTER SYSTEM RESET autovacuum" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null

# ---- 2. heartbeat_many --------------------------------------------------
say "2. heartbeat_many(), batches of 1000 existing sessions"
HAS_MANY=$(q bench "SELECT to_regprocedure('presence.heartbeat_many(text[],text[],boolean)') IS NOT NULL")
if [ "$HAS_MANY" = t ]; then
	rounds many bench presence:hb_many.sql naive:hb_many_naive.sql
else
	log "presence.heartbeat_many(text[], text[], boolean) not available: skipped"
fi
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
	# The same shape of work: 8 clients, batches (pipelines) of 1000, keys
	# drawn from as many members as there are users.  Redis serves from one
	# thread; redis-benchmark's client takes the machine's other core.
	REDIS_SOCK=$WORK/redis.sock
	as_pg redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
		--save '' --appendonly no --daemonize yes --pidfile "$WORK/redis.pid" \
		--logfile "$WORK/redis.log" --dir "$WORK"
	for _ in $(seq 100); do [ -S "$REDIS_SOCK" ] && break; sleep 0.1; done
	REDIS_N=$((USERS * 50))
	for ((r = 1; r <= ROUNDS; r++)); do
		rps=$(as_pg redis-benchmark -s "$REDIS_SOCK" -c "$CLIENTS" -n "$REDIS_N" -P 1000 \
			-r "$USERS" -t zadd -q 2>/dev/null | tr '\r' '\n' |
			awk '/ZADD/ { for (i = 1; i <= NF; i++) if ($i == "requests") { print $(i - 1); exit } }')
		rec many.redis "$rps"
		log "round $r/$ROUNDS: redis pipelined ZADD = $rps/s"
	done
	kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
else
	log "redis-server or redis-benchmark not available: the Redis reference is skipped"
fi

# ---- 3. status-changing calls -------------------------------------------
say "3. status-changing calls: connect + disconnect vs UPDATE + pg_notify (2 events per script)"
rounds status bench presence:status_presence.sql ref:status_ref.sql \
	ref_nonotify:status_ref_nonotify.sql
say "3. the same with synchronous_commit = off (diagnostic: without the WAL flush)"
PGB_ENV=(PGOPTIONS='-c synchronous_commit=off')
ROUNDS_SAVED=$ROUNDS
ROUNDS=$(((ROUNDS + 1) / 2))
rounds status_async bench presence:status_presence.sql ref:status_ref.sql
ROUNDS=$ROUNDS_SAVED
PGB_ENV=()

# ---- 4. sweep -----------------------------------------------------------
say "4. sweep(): $SWEEP_BIG sessions in sweep_big, none in sweep_small"
qf sweep_big <<SQL
SELECT presence.heartbeat('gtpl', 's1', true, NULL, '2h', '2h') \g /dev/null
BEGIN;
SET LOCAL session_replication_role = replica;  -- the rows are consistent; skip FK checks
SELECT bench.clone_rows('presence.users', 'gtpl', 'g', 1, $SWEEP_BIG - 1) \g /dev/null
SELECT bench.clone_rows('presence.sessions', 'gtpl', 'g', 1, $SWEEP_BIG - 1) \g /dev/null
COMMIT;
INSERT INTO naive.presence (user_id, session_id, status, last_active)
SELECT 'g' || i, 's1', 'online', now() FROM generate_series(1, $SWEEP_BIG) i;
VACUUM ANALYZE;
SQL
qf sweep_small <<SQL
SELECT presence.heartbeat('htpl', 's1', true, NULL, '2h', '2h') \g /dev/null
SELECT bench.clone_rows('presence.users', 'htpl', 'h', 1, $SWEEP_DUE - 1) \g /dev/null
SELECT bench.clone_rows('presence.sessions', 'htpl', 'h', 1, $SWEEP_DUE - 1) \g /dev/null
VACUUM ANALYZE;
SQL
log "sessions: sweep_big $(q sweep_big 'SELECT count(*) FROM presence.sessions'), sweep_small $(q sweep_small 'SELECT count(*) FROM presence.sessions')"

say "4. sweep() with nothing due: $SWEEP_REPS calls timed with clock_timestamp(), median"
for r in 1 2; do
	for db in sweep_big sweep_small; do
		m=$(q "$db" "SELECT round(median_ms::numeric, 4) FROM bench.time_calls('SELECT presence.sweep()', $SWEEP_REPS)")
		rec "sweep_idle.$db" "$m"
		log "$db: median $m ms"
	done
done
# sweep_small now holds only the due sessions of the rounds below.
qf sweep_small <<SQL
DELETE FROM presence.sessions;
DELETE FROM presence.users;
VACUUM ANALYZE;
SQL

say "4. sweep() of $SWEEP_DUE due sessions (heartbeats with ttl 1 min, then sweep(now() + 2 min))"
sweep_timed() {	# sweep_timed DB SQL: "ms events", or "DNF" after SWEEP_TIMEOUT
	as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" 2>/dev/null <<SQL || echo DNF
SET statement_timeout = '${SWEEP_TIMEOUT}s';
SELECT clock_timestamp() AS t0 \gset
SELECT $2 AS n \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric * 1000, 2) || ' ' || :n;
SQL
}
SWEEP_WORKAROUND=''
for ((r = 1; r <= SWEEP_ROUNDS; r++)); do
	line="round $r/$SWEEP_ROUNDS:"
	for db in sweep_big sweep_small; do
		api_sessions "$db" d "$SWEEP_DUE" "'1 min'" "'2h'"
		q "$db" "ANALYZE presence.sessions; ANALYZE presence.users" >/dev/null
		res=$(sweep_timed "$db" "presence.sweep(now() + interval '2 min')")
		if [ "$res" = DNF ] && [ -z "$SWEEP_WORKAROUND" ]; then
			rec "sweep_due.dnf" "$db"
			log "$db: sweep() did not finish within ${SWEEP_TIMEOUT}s; raising presence.batch_size to 100000 (above the number due) and retrying"
			q postgres "ALTER SYSTEM SET presence.batch_size = 100000" >/dev/null
			q postgres "SELECT pg_reload_conf()" >/dev/null
			sleep 1
			SWEEP_WORKAROUND=1
			res=$(sweep_timed "$db" "presence.sweep(now() + interval '2 min')")
		fi
		[ "$res" != DNF ] || die "sweep() in $db did not finish within ${SWEEP_TIMEOUT}s"
		rec "sweep_due.$db" "${res% *}"
		rec "sweep_due.$db.events" "${res#* }"
		line+=" $db=${res% *}ms (${res#* } events)"
	done
	# the naive sweep of the same number of sessions among $SWEEP_BIG
	q sweep_big "UPDATE naive.presence SET status = 'online', last_active = now() - interval '2 hours'
				  WHERE user_id IN (SELECT 'g' || i FROM generate_series(1, $SWEEP_DUE) i)" >/dev/null
	q sweep_big "VACUUM ANALYZE naive.presence" >/dev/null
	res=$(sweep_timed sweep_big "naive.sweep('1 hour', now())")
	rec "sweep_due.naive" "${res% *}"
	line+=" naive=${res% *}ms"
	log "$line"
done
if [ -n "$SWEEP_WORKAROUND" ]; then
	q postgres "ALTER SYSTEM RESET presence.batch_size" >/dev/null
	q postgres "SELECT pg_reload_conf()" >/dev/null
	rec sweep_due.workaround 1
fi

# ---- 5. mass expiry -----------------------------------------------------
say "5. mass expiry: $MASS sessions ending at the same moment, the worker running"
# Every session gets ttl = TARGET - now(), so all end exactly at TARGET
# whichever transaction made them.  The margin covers making them.
margin=$(awk -v n="$MASS" -v r="$CREATE_RATE" 'BEGIN { printf "%d", 1.5 * n / r + 5 }')
TARGET=$(q live "SELECT now() + interval '$margin seconds'")
start_listener live offline m "$MASS" $((margin + 120)) "$WORK/mass.out"
api_sessions live m "$MASS" "'$TARGET'::timestamptz - now()" "'1h'"
left=$(q live "SELECT round(extract(epoch FROM '$TARGET'::timestamptz - clock_timestamp())::numeric, 1)")
n_at=$(q live "SELECT count(*) FROM presence.sessions WHERE end_at = '$TARGET'")
log "$n_at sessions end at $TARGET, $left s from now"
awk -v l="$left" 'BEGIN { exit !(l > 0.5) }' || die "making the sessions took longer than the margin"
wait "$LISTENER" || true
LISTENERS=()
log "listener: $(cat "$WORK/mass.out")"
rec mass.n "$MASS"
for k in distinct duplicates last_after_deadline_ms p50_ms matched; do
	rec "mass.$k" "$(kv "$WORK/mass.out" "$k")"
done
rec mass.first_after_deadline_ms "$(awk -v f="$(kv "$WORK/mass.out" first_recv)" -v d="$(kv "$WORK/mass.out" max_at)" 'BEGIN { printf "%.1f", (f - d) * 1000 }')"
rec mass.rate "$(awk -v f="$(kv "$WORK/mass.out" first_recv)" -v l="$(kv "$WORK/mass.out" last_recv)" -v n="$(kv "$WORK/mass.out" matched)" 'BEGIN { if (l > f) printf "%.0f", n / (l - f); else print "-" }')"
rec mass.history "$(q live "SELECT count(DISTINCT user_id) || ' ' || count(*) FROM presence.history
							 WHERE status = 'offline' AND user_id LIKE 'm%'")"

# ---- 6. latency ---------------------------------------------------------
say "6. latency: $LAT_N sessions with deadlines spread over $LAT_SPREAD s (per-call ttl), the worker running"
lead=$(awk -v n="$LAT_N" -v r="$CREATE_RATE" 'BEGIN { printf "%d", 1.5 * n / r + 3 }')
T0=$(q live "SELECT now() + interval '$lead seconds'")
start_listener live offline l "$LAT_N" $((lead + LAT_SPREAD + 60)) "$WORK/lat.out"
api_sessions live l "$LAT_N" \
	"('$T0'::timestamptz + make_interval(secs => i * $LAT_SPREAD.0 / $LAT_N)) - now()" "'1h'"
wait "$LISTENER" || true
LISTENERS=()
log "listener: $(cat "$WORK/lat.out")"
for k in distinct duplicates p50_ms p90_ms p99_ms max_ms; do
	rec "lat.$k" "$(kv "$WORK/lat.out" "$k")"
done

# ---- 7. bloat -----------------------------------------------------------
say "7. bloat: $USERS users, one heartbeat each per round"
t0=$(date +%s)
api_sessions bloat u "$USERS" NULL NULL
read -r s u <<<"$(sizes bloat)"
rec bloat.round1 "$((s + u))"
log "after round 1 (sessions created): sessions $s B, users $u B"
t0=$(date +%s.%N)
pgb bloat bloat_round.sql -D n=0 -t $((BLOAT_FAST_ROUNDS * USERS / CLIENTS)) >/dev/null
t1=$(date +%s.%N)
read -r s u <<<"$(sizes bloat)"
rec bloat.fast "$((s + u))"
rec bloat.fast_rate "$(awk -v n="$((BLOAT_FAST_ROUNDS * USERS))" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
log "(a) after $BLOAT_FAST_ROUNDS more rounds as fast as possible: sessions $s B, users $u B"
PGB_ENV=(PGOPTIONS='-c presence.granularity=0')
t0=$(date +%s)
done_rounds=0
while ((done_rounds < BLOAT_WRITE_ROUNDS && $(date +%s) - t0 < BLOAT_WRITE_BUDGET)); do
	tps=$(pgb bloat bloat_round.sql -D n=0 -t $((USERS / CLIENTS)))
	done_rounds=$((done_rounds + 1))
	read -r s u <<<"$(sizes bloat)"
	rec bloat.write_rate "$tps"
	log "(b) granularity = 0, round $done_rounds: $(printf '%.0f' "$tps") writing heartbeats/s; sessions $s B, users $u B"
done
PGB_ENV=()
rec bloat.write "$((s + u))"
rec bloat.write_rounds "$done_rounds"
rec bloat.autovacuum "$(q bloat "SELECT string_agg(relname || ': ' || autovacuum_count || ' autovacuums, ' || n_dead_tup || ' dead', '; ' ORDER BY relname)
								FROM pg_stat_user_tables WHERE schemaname = 'presence' AND relname IN ('sessions', 'users')")"

# ---- 8. memory ----------------------------------------------------------
say "8. shared memory per tracked session"
# The session cache is allocated whole at server start for
# presence.max_sessions entries; the rest of presence's shared memory (the
# worker slots) does not grow with sessions.
read -r cap cached cache_bytes <<<"$(q bench "SELECT max_sessions || ' ' || sessions || ' ' || shared_bytes FROM presence.cache_status()" | tr '|' ' ')"
shm=$(q postgres "SELECT coalesce(sum(allocated_size), 0) FROM pg_shmem_allocations WHERE name ILIKE '%presence%'")
total=0
for db in bench sweep_big sweep_small live bloat; do
	total=$((total + $(q "$db" "SELECT count(*) FROM presence.sessions")))
done
rec mem.cache_bytes "$cache_bytes"
rec mem.cache_capacity "$cap"
rec mem.cached "$cached"
rec mem.shm "$shm"
rec mem.sessions "$total"
log "session cache: $cache_bytes bytes for $cap sessions; $cached cached now, $total live sessions in 5 databases"
rec mem.table_bytes "$(q sweep_big "SELECT round((pg_total_relation_size('presence.sessions') + pg_total_relation_size('presence.users'))::numeric / count(*)) FROM presence.sessions")"
q postgres "SELECT name, size, allocated_size FROM pg_shmem_allocations WHERE name ILIKE '%presence%'" |
	sed 's/^/  pg_shmem_allocations: /'
log "$total live sessions in 5 databases"

# ---- the table ----------------------------------------------------------
say "results ($MODE run, $(($(date +%s) - T_START)) s)"
{
	printf '%s\n' "$(cat "$RESDIR/settings.txt")" | sed -n '1,4p'
	awk -F'\t' '
	function med(k,   n, i, j, t, a) {
		n = 0
		for (i = 1; i <= NR_; i++) if (K[i] == k && V[i] != "" && V[i] != "-") a[++n] = V[i] + 0
		if (n == 0) return ""
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function last(k,   i, v) { v = ""; for (i = 1; i <= NR_; i++) if (K[i] == k) v = V[i]; return v }
	function num(x) {	# 1234567.8 -> 1,234,568
		x = sprintf("%.0f", x); s = ""
		while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) }
		return x s
	}
	function row(id, fig, v, ref, ratio, target, ok) {
		printf "%-3s %-44s %-16s %-40s %-9s %-12s %s\n", id, fig, v, ref, ratio, target, ok
	}
	function sz(n) { n += 0; return (n >= 1000000 && n % 1000000 == 0) ? n / 1000000 "M" : (n >= 1000 && n % 1000 == 0) ? n / 1000 "k" : n }
	function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2fx", a / b) }
	function verdict(ok) { return ok ? "ok" : "MISSED" }
	{ K[++NR_] = $1; V[NR_] = $2 }
	END {
		row("#", "figure (median of rounds)", "value", "reference (same run)", "value/ref", "target", "")
		U = sz(last("cfg.users")); B = sz(last("cfg.sweep_big")); D = sz(last("cfg.sweep_due"))
		sel = med("hb.select1"); hb = med("hb.presence"); nv = med("hb.naive")
		row("1a", "heartbeat TPS (fast path, " U " users)", num(hb) " tps", "SELECT 1: " num(sel) " tps", ratio(hb, sel), ">= 0.8x", verdict(hb >= 0.8 * sel))
		row("1b", "heartbeat TPS vs naive upsert", num(hb) " tps", "naive upsert: " num(nv) " tps", ratio(hb, nv), ">= 5x", verdict(hb >= 5 * nv))
		wp = last("wal.presence.bytes") / last("wal.presence.n"); wn = last("wal.naive.bytes") / last("wal.naive.n")
		ws = last("wal.select1.bytes")
		row("1c", "WAL per heartbeat (" sz(last("wal.presence.n")) " calls)", sprintf("%.3f B", wp), sprintf("naive %.0f B; SELECT 1 run %d B", wn, ws), "-", "0 B", verdict(last("wal.presence.bytes") <= ws + 1024))
		row("", "  breakdown: plain C function call", num(med("hb.call_plain")) " tps", "SELECT 1", ratio(med("hb.call_plain"), sel), "", "")
		row("", "  C function, SECURITY DEFINER + SET", num(med("hb.call_definer")) " tps", "SELECT 1", ratio(med("hb.call_definer"), sel), "", "")
		row("", "  empty SQL function, SEC. DEF. + SET", num(med("hb.call_sql_definer")) " tps", "SELECT 1", ratio(med("hb.call_sql_definer"), sel), "", "")
		row("", "  the fast-path query as a statement", num(med("hb.probe")) " tps", "SELECT 1", ratio(med("hb.probe"), sel), "", "")
		m = med("many.presence")
		if (m == "") row("2", "heartbeat_many, batches of 1000", "not available", "", "-", ">= 1M hb/s", "skipped")
		else {
			row("2", "heartbeat_many, batches of 1000", num(m * 1000) " hb/s", "naive batch: " num(med("many.naive") * 1000) " hb/s", ratio(m, med("many.naive")), ">= 1M hb/s", verdict(m * 1000 >= 1000000))
			rd = med("many.redis")
			if (rd != "") row("", "  vs Redis, pipelined ZADD (P=1000)", num(m * 1000) " hb/s", "redis: " num(rd) " ZADD/s", ratio(m * 1000, rd), "> 1x", verdict(m * 1000 > rd))
			row("", "  vs single heartbeat() calls", num(m * 1000) " hb/s", "heartbeat(): " num(hb) " hb/s", ratio(m * 1000, hb), "", "")
		}
		sp = med("status.presence"); sr = med("status.ref")
		row("3", "status changes/s (connect, disconnect)", num(2 * sp) " /s", "UPDATE+pg_notify: " num(2 * sr) " /s", ratio(sp, sr), ">= 0.8x", verdict(sp >= 0.8 * sr))
		sn = med("status.ref_nonotify")
		row("", "  the reference without pg_notify", num(2 * sn) " /s", "UPDATE+pg_notify: " num(2 * sr) " /s", ratio(sn, sr), "(NOTIFY lock)", "")
		ap = med("status_async.presence"); ar = med("status_async.ref")
		row("", "  same, synchronous_commit = off", num(2 * ap) " /s", "UPDATE+pg_notify: " num(2 * ar) " /s", ratio(ap, ar), "(diagnostic)", "")
		ib = med("sweep_idle.sweep_big"); is = med("sweep_idle.sweep_small")
		row("4a", "sweep(), nothing due, " B " sessions", sprintf("%.3f ms", ib), sprintf("%s sessions: %.3f ms", D, is), ratio(ib, is), "< 1 ms", verdict(ib < 1))
		db = med("sweep_due.sweep_big"); ds = med("sweep_due.sweep_small"); dn = med("sweep_due.naive")
		wk = (last("sweep_due.workaround") != "") ? " *" : ""
		row("4b", "sweep(), " D " due among " B wk, sprintf("%.1f ms", db), sprintf("naive sweep: %.1f ms", dn), ratio(db, dn), "< 100 ms", verdict(db < 100))
		row("4c", "  same vs " D " due among " D wk, sprintf("%.1f ms", db), sprintf("among %s: %.1f ms", D, ds), ratio(db, ds), "<= 1.5x", verdict(db <= 1.5 * ds))
		mn = last("mass.n"); md = last("mass.distinct"); mu = last("mass.duplicates"); ml = last("mass.last_after_deadline_ms")
		row("5", "mass expiry of " sz(mn) ": last event - deadline", sprintf("%.0f ms", ml), "offline events: " md " users, " mu " dup", "-", "<= 1500 ms", verdict(ml <= 1500 && md == mn && mu == 0))
		split(last("mass.history"), hh, " ")
		row("", "  first event - deadline", sprintf("%.0f ms", last("mass.first_after_deadline_ms")), "history: " hh[1] " users, " hh[2] " rows", "", "", "")
		row("", "  worker drain rate", num(last("mass.rate")) " ev/s", "", "", "", "")
		row("6a", "latency p50, " sz(last("cfg.lat_n")) " over " last("cfg.lat_spread") " s", sprintf("%.1f ms", last("lat.p50_ms")), "events: " last("lat.distinct") " distinct, " last("lat.duplicates") " dup", "-", "< 10 ms", verdict(last("lat.p50_ms") < 10))
		row("6b", "latency p99", sprintf("%.1f ms", last("lat.p99_ms")), sprintf("max %.1f ms", last("lat.max_ms")), "-", "< 50 ms", verdict(last("lat.p99_ms") < 50))
		b1 = last("bloat.round1"); bf = last("bloat.fast"); bw = last("bloat.write")
		row("7a", "bloat: +" last("cfg.fast_rounds") " rounds, fast path", sprintf("%.1f MB", bf / 1048576), sprintf("after round 1: %.1f MB", b1 / 1048576), ratio(bf, b1), "<= 1.2x", verdict(bf <= 1.2 * b1))
		row("7b", "bloat: +" last("bloat.write_rounds") " rounds, granularity = 0", sprintf("%.1f MB", bw / 1048576), sprintf("after round 1: %.1f MB", b1 / 1048576), ratio(bw, b1), "<= 1.2x", verdict(bw <= 1.2 * b1))
		cb = last("mem.cache_bytes"); cc = last("mem.cache_capacity")
		row("8", "shared memory per tracked session", sprintf("%.1f B", cb / cc), num(cb) " B for " num(cc) " (cache)", "-", "< 256 B", verdict(cb / cc < 256))
		row("", "  named presence allocations (headers)", num(last("mem.shm")) " B", num(last("mem.cached")) " of " num(last("mem.sessions")) " sessions cached", "", "", "")
		row("", "  (table bytes per session, " B ")", last("mem.table_bytes") " B", "", "", "", "")
		if (wk != "") print "* presence.batch_size raised to 100000 for section 4: with the default 1000, sweep() did not finish within the timeout"
	}' "$RESDIR/rounds.tsv"
} | tee "$RESDIR/table.txt"
echo
echo "results kept in ${RESDIR#"$ROOT"/}/ (run.log, rounds.tsv, table.txt, settings.txt, server.log)"
