#!/usr/bin/env bash
# demo.sh: the project's demo.
#
#   bash scripts/demo.sh
#
# Runs scripts/setup.sh, starts a throwaway cluster (private port and socket,
# presence preloaded, short timers: away after 3s, sessions end after 6s),
# starts a LISTEN client that prints every event as it arrives, and plays a
# short narrated scenario: multi-tab users, busy with a message, idle ->
# away and session timeout done by the background worker, disconnects, and
# an invisible user.  Stops everything it started on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"
as_pg() { as_owner "$@"; }

WORK='' LISTENER='' STARTED=''

cleanup() {
	local status=$?
	set +e
	if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
		echo "----- server log (last 30 lines)"
		tail -n 30 "$WORK/server.log"
	fi
	[ -z "$STARTED" ] || cluster_stop "$WORK"
	if [ -n "$LISTENER" ]; then
		# It leaves by itself once the server is gone.
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$LISTENER" 2>/dev/null || break
			sleep 0.2
		done
		kill "$LISTENER" 2>/dev/null
		wait "$LISTENER" 2>/dev/null
	fi
	[ -z "$WORK" ] || rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

now() { date +%H:%M:%S.%3N; }
narrate() { printf '\n%s  ## %s\n' "$(now)" "$*"; }
pause() { sleep 0.5; }

echo "== setup"
bash "$ROOT/scripts/setup.sh"

WORK=$(mktemp -d /tmp/presence-demo.XXXXXX)
LIB_HOME=$WORK
cp "$ROOT/scripts/listen.pl" "$WORK/"
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER": "$WORK"
cd "$WORK"
DB=demo

echo "== starting a throwaway cluster (socket in $WORK)"
STARTED=1
cluster_start "$WORK" "presence.startup_grace = 0"
PORT=$CLUSTER_PORT
echo "   port $PORT"

psql_() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" "$@"; }
sql() { psql_ -At -d "$DB" -c "$1"; }
show() {	# show SQL: print a statement, run it, print its result
	local result
	printf '   %s\n' "$1"
	result=$(sql "$1")
	printf '      = %s\n' "$result"
}
wait_for() {	# wait_for SQL VALUE SECONDS
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[ "$(sql "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	echo "timed out waiting for $1 = $2" >&2
	return 1
}

psql_ -d postgres -c "CREATE DATABASE $DB"
psql_ -d postgres -c "ALTER DATABASE $DB SET presence.away_after = '3s'" \
	-c "ALTER DATABASE $DB SET presence.session_ttl = '6s'"
psql_ -d "$DB" -c 'CREATE EXTENSION presence'

echo "== starting the listener (LISTEN presence)"
as_pg perl "$WORK/listen.pl" \
	"host=$WORK;port=$PORT;dbname=$DB;application_name=presence-demo-listener" \
	presence 120 &
LISTENER=$!
wait_for "SELECT count(*) FROM pg_stat_activity
		   WHERE application_name = 'presence-demo-listener'
			 AND state = 'idle' AND query LIKE 'LISTEN%'" 1 10

narrate "alice opens the app in two tabs: one event, the second tab changes nothing"
show "SELECT presence.heartbeat('alice', 'tab-1', ttl => '1h', away_after => '1h')"
show "SELECT presence.heartbeat('alice', 'tab-2', ttl => '1h', away_after => '1h')"
pause

narrate "bob connects and sets himself busy, with a message"
show "SELECT presence.heartbeat('bob', 'phone', ttl => '1h', away_after => '1h')"
show "SELECT presence.set_status('bob', 'busy', 'In a meeting until 3pm')"
pause

narrate "carol connects, then goes idle (this database: away after 3s, session ends after 6s)"
show "SELECT presence.heartbeat('carol', 'laptop')"
narrate "... the worker marks carol away on its own"
wait_for "SELECT status FROM presence.get('carol')" away 15
pause

narrate "alice closes one tab: silent, she still has the other"
show "SELECT presence.disconnect('alice', 'tab-1')"
pause
narrate "alice closes her last tab: offline, reason disconnect"
show "SELECT presence.disconnect('alice', 'tab-2')"
pause

narrate "dave connects, then goes invisible: to everyone else it looks like a disconnect"
show "SELECT presence.heartbeat('dave', 'desktop', ttl => '1h', away_after => '1h')"
pause
show "SELECT presence.set_status('dave', 'invisible')"
pause

narrate "carol never comes back: the worker ends her session (timeout)"
wait_for "SELECT status FROM presence.get('carol')" offline 15
pause

narrate "SELECT * FROM presence.online_users()"
psql_ -d "$DB" -P footer=off -c "SELECT * FROM presence.online_users()"
narrate "SELECT * FROM presence.changes()"
psql_ -d "$DB" -P footer=off -c "SELECT * FROM presence.changes()"

narrate "done: stopping the cluster"
