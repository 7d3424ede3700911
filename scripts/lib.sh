# lib.sh: shell functions shared by the project's scripts (demo.sh, test.sh,
# examples/*/run.sh, bench/run.sh): a clean environment, running commands as
# the cluster owner, and throwaway clusters on a private port and socket.
#
#   . "$ROOT/scripts/lib.sh"
#
# Defines PG_MAJOR, PG_BIN, PG_CONFIG, OWNER and as_owner, and unsets every
# PG* variable of the caller so that nothing can steer a connection to
# another server.  PostgreSQL refuses to run as root: as root, clusters run
# as the postgres user; otherwise as the invoking user.

PG_MAJOR=15
# PRESENCE_PG_BIN overrides the PostgreSQL bin directory (a private build
# during development); the default is the system server, what CI uses.
PG_BIN=${PRESENCE_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=$PG_BIN/pg_config

while read -r var; do unset "$var"; done < <(compgen -e | grep '^PG' || true)
export LC_ALL=C.UTF-8 LANG=C.UTF-8
export PATH="$PG_BIN:$PATH"

if [ "$(id -u)" -eq 0 ]; then
	OWNER=postgres
	# HOME points at a directory postgres may write (psql's history, npm's
	# cache); callers set LIB_HOME, else /tmp.
	as_owner() { runuser -u postgres -- env HOME="${LIB_HOME:-/tmp}" PATH="$PATH" "$@"; }
else
	OWNER=$(id -un)
	as_owner() { "$@"; }
fi

# cluster_start DIR [SETTING...]: initdb a cluster in DIR/data, with presence
# preloaded, a random private port, the socket in DIR and no TCP, plus any
# extra postgresql.conf lines given; start it (log in DIR/server.log).  Sets
# CLUSTER_PORT.  Returns non-zero, with the log tail printed, on failure.
cluster_start() {
	local dir=$1 line
	shift
	CLUSTER_PORT=$((55000 + RANDOM % 5000))
	mkdir -p "$dir" || return 1
	if [ "$OWNER" != "$(id -un)" ]; then chown "$OWNER": "$dir" || return 1; fi
	as_owner initdb -D "$dir/data" -A trust -N >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	{
		echo "port = $CLUSTER_PORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "fsync = off"
		echo "shared_preload_libraries = 'presence'"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	as_owner pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ tail -n 40 "$dir/server.log"; return 1; }
}

# pgdata_stop PGDATA: stop the server of that data directory (fast, else
# immediate).  cluster_stop DIR: the same for a cluster_start cluster.
pgdata_stop() {
	as_owner pg_ctl -D "$1" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		as_owner pg_ctl -D "$1" -m immediate -w stop >/dev/null 2>&1
}
cluster_stop() { pgdata_stop "$1/data"; }

# cluster_stop_all DIR: stop every server whose data directory is under DIR
# (for cleanup traps: also the temp instances of an interrupted pg_regress).
cluster_stop_all() {
	local pidfile
	while IFS= read -r pidfile; do
		pgdata_stop "$(dirname "$pidfile")"
	done < <(find "$1" -name postmaster.pid 2>/dev/null)
}
