#!/usr/bin/env bash
# run.sh: the example chat in one command.
#
#   bash examples/chat/run.sh            # serve it; Ctrl-C stops everything
#   bash examples/chat/run.sh --test     # run its end-to-end browser test instead
#
# Runs scripts/setup.sh (skipped with --no-setup), npm ci, starts a throwaway
# cluster (private socket, presence preloaded) with a database "chat" whose
# timers are short (away after 10 s, sessions end after 30 s; 3 s and 30 s
# for the test), an application role with the README's two grants, and then
# the chat server (server.js) as that role, or the test (test/e2e.test.js),
# which starts and restarts the server itself.  It stops everything it
# started when it ends.
#
# Environment: CHAT_PORT (8080) and CHAT_HOST (127.0.0.1) for the server;
# PRESENCE_PG_BIN, a PostgreSQL bin directory other than the system's;
# CHAT_ARTIFACTS, where the test saves its screenshots (default: the work
# directory, kept when the test fails).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

mode=serve setup=1
for arg in "$@"; do
	case $arg in
	--test) mode='test' ;;
	--no-setup) setup='' ;;
	*) echo "usage: bash examples/chat/run.sh [--test] [--no-setup]" >&2; exit 2 ;;
	esac
done

WORK='' STARTED='' SERVER='' status=0

cleanup() {
	status=$?
	set +e
	if [ -n "$SERVER" ]; then
		kill "$SERVER" 2>/dev/null
		wait "$SERVER" 2>/dev/null
	fi
	[ -z "$STARTED" ] || cluster_stop "$WORK/pg"
	if [ -n "$WORK" ]; then
		if [ "$mode" = test ] && [ "$status" -ne 0 ]; then
			echo "(kept $WORK for inspection)"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$setup" ]; then
	echo "== setup"
	PG_CONFIG=$PG_CONFIG bash "$ROOT/scripts/setup.sh"
fi
command -v node >/dev/null || { echo "run.sh: node (Node.js 18 or later) is not installed" >&2; exit 1; }

echo "== npm ci"
(cd "$HERE" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-chat.XXXXXX")
# shellcheck disable=SC2034 # as_owner's HOME (lib.sh)
LIB_HOME=$WORK
[ "$OWNER" = "$(id -un)" ] || chown "$OWNER": "$WORK"
echo "== starting a throwaway cluster (socket in $WORK)"
STARTED=1
cluster_start "$WORK/pg" "presence.startup_grace = 0"

if [ "$mode" = test ]; then away=3s; else away=10s; fi
psql_() { as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/pg" -p "$CLUSTER_PORT" "$@"; }
psql_ -d postgres -c "CREATE DATABASE chat" \
	-c "ALTER DATABASE chat SET presence.away_after = '$away'" \
	-c "ALTER DATABASE chat SET presence.session_ttl = '30s'"
psql_ -d chat -c "CREATE EXTENSION presence" \
	-c "CREATE ROLE chat_app LOGIN" \
	-c "GRANT USAGE ON SCHEMA presence TO chat_app" \
	-c "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO chat_app"

# The server and the test reach the database through pg's usual variables.
export PGHOST=$WORK/pg PGPORT=$CLUSTER_PORT PGDATABASE=chat PGUSER=chat_app

if [ "$mode" = test ]; then
	export CHAT_ARTIFACTS=${CHAT_ARTIFACTS:-$WORK/e2e}
	mkdir -p "$CHAT_ARTIFACTS"
	echo "== end-to-end test (screenshots in $CHAT_ARTIFACTS)"
	cd "$HERE"
	node --test --test-reporter=spec test/
	exit
fi

echo "== starting the chat server"
node "$HERE/server.js" &
SERVER=$!
echo "   Ctrl-C stops the server and the cluster"
wait "$SERVER"
