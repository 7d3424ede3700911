#!/usr/bin/env bash
# demo.sh: the project's demo.
#
#   bash scripts/demo.sh
#
# Runs scripts/setup.sh, starts a throwaway cluster (private port and socket,
# presence preloaded; typing stops after 3 s, one user has short timers) and
# plays a short narrated scenario while
# presence_watch shows it live: multi-tab users, busy with a message, idle ->
# away and session timeout done by the background worker, a document room
# with cursors and typing, disconnects, and an invisible user.
#
# On a terminal it runs in a private tmux server: presence_watch's users view
# on top, the scenario's SQL below, and a room view that opens for the room
# part; q or Ctrl-C ends it early.  When stdin or stdout is not a terminal
# (bash scripts/demo.sh | cat), presence_watch prints one line per event
# instead, between the scenario's lines.  Either way it ends by itself, prints
# the history, and stops everything it started.
#
# (bash scripts/demo.sh --scenario is the bottom pane's part; not for people.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"
as_pg() { as_owner "$@"; }

DB=demo
ROOM=doc:42
TMUX_SOCKET=presence-demo

now() { date +%H:%M:%S.%3N; }
narrate() { printf '\n%s  ## %s\n' "$(now)" "$*"; }
pause() { sleep "$PAUSE"; }

psql_() { as_pg psql -X -q -P pager=off -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" "$@"; }
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

# The private tmux server of the demo, whatever tmux the caller runs in.
tmux_() { env -u TMUX TMUX_TMPDIR="$WORK" tmux -L "$TMUX_SOCKET" "$@"; }

# presence_watch's connection, named so that we can see when it listens.
watch_conninfo() {
	echo "host=$WORK port=$PORT dbname=$DB user=$OWNER application_name=presence-demo-watch"
}

# wait_watchers N: until N presence_watch sessions have LISTENed and loaded
# (their last statement is the clock reading that ends each load).
wait_watchers() {
	wait_for "SELECT count(*) FROM pg_stat_activity
			   WHERE application_name = 'presence-demo-watch' AND state = 'idle'
				 AND query LIKE 'SELECT extract(epoch FROM clock_timestamp())%'" "$1" 15
}

final_tables() {
	narrate "SELECT user_id, status, message, sessions FROM presence.online_users()"
	psql_ -d "$DB" -P footer=off -c "SELECT user_id, status, message, sessions FROM presence.online_users()"
	narrate "SELECT seq, user_id, previous, status, reason, message, at FROM presence.changes()"
	psql_ -d "$DB" -P footer=off \
		-c "SELECT seq, user_id, previous, status, reason, message, at FROM presence.changes()"
}

scenario() {
	narrate "alice opens the app in two tabs: one event, the second tab changes nothing"
	show "SELECT presence.heartbeat('alice', 'tab-1')"
	show "SELECT presence.heartbeat('alice', 'tab-2')"
	pause

	narrate "bob connects from his phone and sets himself busy, with a message"
	show "SELECT presence.heartbeat('bob', 'phone')"
	show "SELECT presence.set_status('bob', 'busy', 'In a meeting until 3pm')"
	pause

	narrate "carol connects with short timers (idle after 3 s, ended 6 s after her last heartbeat), then goes idle"
	show "SELECT presence.heartbeat('carol', 'laptop', ttl => '6s', away_after => '3s')"
	narrate "... the worker marks carol away on its own"
	wait_for "SELECT status FROM presence.get('carol')" away 15
	pause
	narrate "... and, as she never comes back, ends her session (timeout)"
	wait_for "SELECT status FROM presence.get('carol')" offline 15
	pause

	narrate "a room: alice opens document 42 in tab-1, with her cursor"
	show "SELECT presence.join('$ROOM', 'alice', 'tab-1', '{\"cursor\": 0, \"color\": \"#e91e63\"}')"
	open_room_view
	narrate "bob opens the document on his phone"
	show "SELECT presence.join('$ROOM', 'bob', 'phone')"
	pause
	narrate "alice moves her cursor: each session carries its own metadata in the room"
	show "SELECT presence.set_meta('$ROOM', 'alice', 'tab-1', '{\"cursor\": 1280, \"color\": \"#e91e63\"}')"
	pause
	narrate "bob starts typing a comment, then stops without saying so: the worker clears it after 3 s"
	show "SELECT presence.typing('$ROOM', 'bob')"
	pause
	wait_for "SELECT count(*) FROM presence.typing_users('$ROOM')" 0 15
	pause

	narrate "alice closes tab-1: still online (tab-2 lives), but she leaves the room"
	show "SELECT presence.disconnect('alice', 'tab-1')"
	pause
	narrate "alice closes her last tab: offline, reason disconnect"
	show "SELECT presence.disconnect('alice', 'tab-2')"
	pause

	narrate "dave connects, then goes invisible: to everyone else it looks like a disconnect"
	show "SELECT presence.heartbeat('dave', 'desktop')"
	pause
	show "SELECT presence.set_status('dave', 'invisible')"
	pause
}

# --- The bottom pane of the tmux screen: the scenario ------------------------

if [ "${1:-}" = "--scenario" ]; then
	WORK=$DEMO_WORK PORT=$DEMO_PORT LIB_HOME=$DEMO_WORK PAUSE=1.5
	exec > >(tee -a "$WORK/scenario.log") 2>&1
	trap 'st=$?
		if [ ! -e "$WORK/scenario.done" ]; then
			touch "$WORK/scenario.failed"
			echo "the scenario failed (exit status $st): the demo closes in 20 s"
			sleep 20
		fi
		tmux_ kill-server' EXIT

	# The room view opens beside the users view on a wide screen, under it
	# otherwise.
	open_room_view() {
		local split=-v pane
		if [ "$(tmux_ display-message -p -t "$DEMO_USERS_PANE" '#{pane_width}')" -ge 140 ]; then
			split=-h
		fi
		pane=$(tmux_ split-window "$split" -d -P -F '#{pane_id}' -t "$DEMO_USERS_PANE" \
			"$(printf '%q ' presence_watch "$(watch_conninfo)" --room "$ROOM")")
		tmux_ select-pane -t "$pane" -T "presence_watch --room $ROOM: members, metadata, typing"
		wait_watchers 2
		narrate "presence_watch --room $ROOM opens: the room's members, their metadata, who is typing"
	}

	narrate "presence_watch is watching database $DB above; here is what happens"
	sleep 2
	scenario
	narrate "that is the demo: it closes in 10 s (q closes it now)"
	touch "$WORK/scenario.done"
	sleep 10
	exit 0
fi

# --- The demo ------------------------------------------------------------------

WORK='' STARTED='' WATCHERS=() TMUX_STARTED=''
PAUSE=0.5

cleanup() {
	local status=$?
	set +e
	if [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; then
		echo "----- server log (last 30 lines)"
		tail -n 30 "$WORK/server.log"
	fi
	[ -z "$TMUX_STARTED" ] || tmux_ kill-server 2>/dev/null
	# presence_watch retries forever once the server is gone: stop it first.
	for pid in "${WATCHERS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${WATCHERS[@]}"; do wait "$pid" 2>/dev/null; done
	[ -z "$STARTED" ] || cluster_stop "$WORK"
	[ -z "$WORK" ] || rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

echo "== setup"
bash "$ROOT/scripts/setup.sh"

WORK=$(mktemp -d /tmp/presence-demo.XXXXXX)
LIB_HOME=$WORK
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER": "$WORK"
cd "$WORK"

echo "== starting a throwaway cluster (socket in $WORK)"
STARTED=1
cluster_start "$WORK" "presence.startup_grace = 0"
PORT=$CLUSTER_PORT
echo "   port $PORT"

psql_ -d postgres -c "CREATE DATABASE $DB"
psql_ -d postgres -c "ALTER DATABASE $DB SET presence.typing_timeout = '3s'"
psql_ -d "$DB" -c 'CREATE EXTENSION presence'

if [ -t 0 ] && [ -t 1 ] && [ "${TERM:-dumb}" != dumb ] && command -v tmux >/dev/null; then
	# The live screen: presence_watch on top, the scenario below.
	echo "== starting presence_watch and the scenario in tmux (q or Ctrl-C ends the demo)"
	cat >"$WORK/tmux.conf" <<-'EOF'
		set -g status on
		set -g status-style "bg=colour236,fg=colour250"
		set -g status-left " presence demo "
		set -g status-left-length 20
		set -g status-right " q or Ctrl-C ends the demo "
		set -g status-right-length 40
		set -g pane-border-status top
		set -g pane-border-format " #{pane_title} "
		bind-key -n q kill-server
		bind-key -n C-c kill-server
	EOF
	read -r rows cols < <(stty size)
	TMUX_STARTED=1
	users_pane=$(tmux_ -f "$WORK/tmux.conf" new-session -d -s demo -x "$cols" -y "$rows" \
		-P -F '#{pane_id}' "$(printf '%q ' presence_watch "$(watch_conninfo)")")
	tmux_ select-pane -t "$users_pane" -T "presence_watch: the users of database $DB, live"
	wait_watchers 1
	scenario_pane=$(tmux_ split-window -v -l 40% -d -P -F '#{pane_id}' -t "$users_pane" \
		"$(printf '%q ' env DEMO_WORK="$WORK" DEMO_PORT="$PORT" DEMO_USERS_PANE="$users_pane" \
			bash "$ROOT/scripts/demo.sh" --scenario)")
	tmux_ select-pane -t "$scenario_pane" -T "the scenario: SQL the app would send"
	tmux_ attach -t demo >/dev/null 2>&1 || true
	TMUX_STARTED=''
	if [ -e "$WORK/scenario.failed" ]; then
		echo "== the scenario failed:"
		tail -n 30 "$WORK/scenario.log"
		exit 1
	fi
	[ -e "$WORK/scenario.done" ] || echo "== stopped early"
	echo "== what happened"
	final_tables
else
	# No terminal: presence_watch prints a line per event among ours.
	echo "== starting presence_watch (stdout is not a terminal: one line per event)"
	presence_watch "$(watch_conninfo)" &
	WATCHERS+=($!)
	wait_watchers 1
	open_room_view() {
		presence_watch "$(watch_conninfo)" --room "$ROOM" &
		WATCHERS+=($!)
		wait_watchers 2
		narrate "presence_watch --room $ROOM follows the room too (its lines say [$ROOM])"
	}
	scenario
	final_tables
fi

narrate "done: stopping the cluster"
