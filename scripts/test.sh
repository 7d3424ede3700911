#!/usr/bin/env bash
# test.sh: the project's test command.
#
#   bash scripts/test.sh
#
# Runs scripts/setup.sh (install what is missing, build with -Werror, install),
# copies the source tree into a fresh temporary directory and runs there, as
# the postgres user (or as the invoking user when not root):
#   regress    make installcheck, pg_regress part  (test/sql, temp instance)
#   isolation  make installcheck, isolation part   (test/specs, temp instance)
#   tap        make installcheck, TAP part         (test/t/*.pl)
#   pgtap      pg_prove test/pgtap/*.sql against a throwaway cluster
#   fuzz       libFuzzer on the payload and channel code (test/fuzz),
#              FUZZ_SECONDS (30) per target, in a throwaway cluster
#   valgrind   pg_regress again, the server under valgrind memcheck: any
#              error reported in the extension's code fails it
#   e2e        the example chat (examples/chat) end to end: two users in
#              headless Chromium, its server and a throwaway cluster
# A suite with no test files is skipped.  On failure it prints the diffs and
# log tails.  It leaves no server running, and it ends with one line
# "N passed, M failed" counting the build and the suites; the exit status is
# non-zero when anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"

say() { printf '\n=== %s\n' "$*"; }

passed=0 failed=0 skipped=()
WORK=''

# Stop every server started under $WORK (the pgTAP cluster, and any temp
# instance an interrupted pg_regress or TAP test left), then clean up.
cleanup() {
	local status=$?
	set +e
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		cluster_stop_all "$WORK"
		if [ "$status" -eq 0 ] && [ "$failed" -eq 0 ]; then
			rm -rf "$WORK"
		else
			echo "(kept $WORK for inspection)"
		fi
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

tail_file() {
	local f=$1 n=${2:-60}
	[ -s "$f" ] || return 0
	echo "----- ${f#"$WORK"/} (last $n lines)"
	tail -n "$n" "$f"
}

# 1. Packages, build, install.
say "setup"
if bash "$ROOT/scripts/setup.sh"; then
	passed=$((passed + 1))
else
	echo "setup/build FAILED"
	failed=$((failed + 1))
	echo "$passed passed, $failed failed"
	exit 1
fi

# 2. A private copy of the source tree, owned by whoever runs the tests.
WORK=$(mktemp -d /tmp/presence-test.XXXXXX)
LIB_HOME=$WORK
SRC=$WORK/src
mkdir "$SRC"
say "copying the source tree to $SRC"
if files=$(cd "$ROOT" && git ls-files -z -c -o --exclude-standard 2>/dev/null | tr '\0' '\n') &&
	[ -n "$files" ]; then
	(cd "$ROOT" && while IFS= read -r f; do
		if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
	done <<<"$files" | tar --null --no-recursion -T - -cf -) | tar -C "$SRC" -xf -
else
	tar -C "$ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' --exclude=tmp_check --exclude=tmp_check_iso \
		--exclude=results --exclude=output_iso --exclude=log \
		--exclude=node_modules --exclude=regression.diffs \
		--exclude=regression.out -cf - . | tar -C "$SRC" -xf -
fi
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER": "$WORK"
cd "$SRC"

has_files() { compgen -G "$1" >/dev/null; }

record() {	# record NAME STATUS
	if [ "$2" -eq 0 ]; then
		echo "--- $1: passed"
		passed=$((passed + 1))
	else
		echo "--- $1: FAILED"
		failed=$((failed + 1))
	fi
}

# 3. make installcheck, one part at a time so that each is reported and a
#    failure in one does not hide the others.  Variables given on the make
#    command line switch the other parts off.
installcheck() {
	as_owner make -s PG_CONFIG="$PG_CONFIG" installcheck "$@"
}

say "regress (pg_regress, test/sql)"
if has_files 'test/sql/*.sql'; then
	st=0; installcheck ISOLATION= TAP_TESTS= || st=$?
	if [ "$st" -ne 0 ]; then
		tail_file "$SRC/regression.diffs" 300
		tail_file "$SRC/tmp_check/log/postmaster.log" 40
	fi
	record regress "$st"
else
	echo "no tests in test/sql: skipped"; skipped+=(regress)
fi

say "isolation (pg_isolation_regress, test/specs)"
if has_files 'test/specs/*.spec'; then
	st=0; installcheck REGRESS= TAP_TESTS= || st=$?
	if [ "$st" -ne 0 ]; then
		tail_file "$SRC/output_iso/regression.diffs" 300
		tail_file "$SRC/tmp_check_iso/log/postmaster.log" 40
	fi
	record isolation "$st"
else
	echo "no tests in test/specs: skipped"; skipped+=(isolation)
fi

# The logs of the failed TAP scripts (all logs when none is recognised):
# regress_log_NAME and each node's server log NAME_NODE.log.
tap_logs() {
	local log=$SRC/tmp_check/log f name shown=0
	for f in "$log"/regress_log_*; do
		[ -f "$f" ] || continue
		grep -qE '(^|\) )not ok |# Looks like |Bail out!' "$f" || continue
		name=${f##*/regress_log_}
		tail_file "$f" 80
		for g in "$log/${name}"_*.log; do tail_file "$g" 30; done
		shown=1
	done
	if [ "$shown" -eq 0 ]; then
		for f in "$log"/*; do tail_file "$f" 40; done
	fi
}

say "tap (prove, test/t)"
if has_files 'test/t/*.pl'; then
	st=0; installcheck REGRESS= ISOLATION= || st=$?
	[ "$st" -eq 0 ] || tap_logs
	record tap "$st"
else
	echo "no tests in test/t: skipped"; skipped+=(tap)
fi

# A throwaway cluster with the worker preloaded, in DIR, started; sets
# CLUSTER_PORT.  Stopped by the cleanup at the latest.
start_cluster() {
	cluster_start "$1" "presence.startup_grace = 0" || return 1
	echo "started a cluster on port $CLUSTER_PORT (socket in $1)"
}

# 4. pgTAP.
pgtap_suite() {
	local dir=$WORK/pgtap db=presence_tap
	start_cluster "$dir" || return 1
	local port=$CLUSTER_PORT
	as_owner createdb -h "$dir" -p "$port" "$db" || return 1
	as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d "$db" \
		-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION presence' ||
		{ tail_file "$dir/server.log" 40; return 1; }
	local st=0
	as_owner pg_prove --psql-bin "$PG_BIN/psql" -h "$dir" -p "$port" -d "$db" \
		test/pgtap/*.sql || st=$?
	[ "$st" -eq 0 ] || tail_file "$dir/server.log" 40
	as_owner pg_ctl -D "$dir/data" -m fast -w stop >/dev/null || st=1
	return "$st"
}

say "pgtap (pg_prove, test/pgtap)"
if has_files 'test/pgtap/*.sql'; then
	st=0; pgtap_suite || st=$?
	record pgtap "$st"
else
	echo "no tests in test/pgtap: skipped"; skipped+=(pgtap)
fi

# 5. The fuzzer: built with clang and libFuzzer, installed next to the
#    extension, run in a backend of a throwaway cluster (see fuzz_presence.c).
fuzz_suite() {
	local dir=$WORK/fuzz secs=${FUZZ_SECONDS:-30} st=0 target runs
	as_owner make -s -C test/fuzz PG_CONFIG="$PG_CONFIG" CLANG=clang-14 || return 1
	make -s -C test/fuzz PG_CONFIG="$PG_CONFIG" CLANG=clang-14 install || return 1
	start_cluster "$dir" || return 1
	as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$CLUSTER_PORT" -d postgres \
		-c "CREATE FUNCTION presence_fuzz_run(text, integer) RETURNS bigint
			AS '\$libdir/presence_fuzz', 'presence_fuzz_run' LANGUAGE C STRICT" ||
		return 1
	for target in payload channel; do
		if runs=$(as_owner psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir" -p "$CLUSTER_PORT" \
			-d postgres -c "SELECT presence_fuzz_run('$target', $secs)"); then
			echo "$target: $runs inputs in ${secs} s, no failure ($(grep -E '^#[0-9]+[[:space:]]+DONE' "$dir/server.log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+'))"
		else
			st=1
			grep -E -A 12 'presence fuzz:|ERROR: libFuzzer' "$dir/server.log" | tail -n 40
		fi
	done
	as_owner pg_ctl -D "$dir/data" -m fast -w stop >/dev/null || st=1
	return "$st"
}

say "fuzz (libFuzzer, test/fuzz)"
if has_files 'test/fuzz/*.c'; then
	st=0; fuzz_suite || st=$?
	record fuzz "$st"
else
	echo "no fuzz targets in test/fuzz: skipped"; skipped+=(fuzz)
fi

# 6. pg_regress with the server under valgrind memcheck.  pg_regress runs
#    the server from --bindir: a copy of the server's bin directory whose
#    postgres runs the real one under valgrind (pg_ctl is copied rather
#    than linked, since it looks for postgres next to its resolved path).
#    The Debian build has no valgrind annotations, so memcheck also reports
#    PostgreSQL's known false positives (uninitialised padding written to
#    WAL): only errors with one of the extension's source files among their
#    top frames count.
valgrind_suite() {
	local dir=$WORK/valgrind f st=0
	mkdir -p "$dir/bin" "$dir/logs" || return 1
	for f in "$PG_BIN"/*; do ln -s "$f" "$dir/bin/"; done
	rm -f "$dir/bin/postgres" "$dir/bin/pg_ctl"
	cp "$PG_BIN/pg_ctl" "$dir/bin/pg_ctl"
	cat >"$dir/bin/postgres" <<-WRAP
		#!/bin/sh
		case "\$1" in -V|--version|-C|--describe-config) exec "$PG_BIN/postgres" "\$@" ;; esac
		exec valgrind --quiet --error-limit=no --num-callers=40 --leak-check=no \\
			--log-file="$dir/logs/%p.log" "$PG_BIN/postgres" "\$@"
	WRAP
	chmod 755 "$dir/bin/postgres"
	if [ "$OWNER" != "$(id -un)" ]; then chown -R "$OWNER": "$dir" || return 1; fi
	installcheck bindir="$dir/bin" ISOLATION= TAP_TESTS= || st=$?
	[ "$st" -eq 0 ] || tail_file "$SRC/regression.diffs" 100
	# Error blocks: a message line, then frames; ours if one of the top
	# four frames is in one of the extension's source files.
	local ours
	ours=$(cd src && ls -- *.c | paste -sd '|')
	awk -v ours="^($ours):[0-9]+$" '
		/^==[0-9]+== [A-Z]/ && !/^==[0-9]+== +(at|by) / { flush(); msg = $0; n = 0; mine = 0; next }
		/^==[0-9]+== +(at|by) / {
			block = block $0 "\n"; n++
			if (n <= 4) { f = $NF; gsub(/[()]/, "", f); if (f ~ ours) mine = 1 }
			next
		}
		function flush() {
			if (msg != "") { total++; if (mine) { presence++; printf "%s\n%s", msg, block } }
			msg = ""; block = ""
		}
		END { flush(); printf "memcheck: %d errors, %d of them in presence\n", total, presence; exit presence > 0 }
	' "$dir"/logs/*.log || st=1
	return "$st"
}

say "valgrind (pg_regress under valgrind memcheck)"
if ! command -v valgrind >/dev/null; then
	echo "valgrind is not installed"; record valgrind 1
elif has_files 'test/sql/*.sql'; then
	st=0; valgrind_suite || st=$?
	record valgrind "$st"
else
	echo "no tests in test/sql: skipped"; skipped+=(valgrind)
fi

# 7. The example chat end to end (examples/chat/run.sh --test): npm ci, a
#    throwaway cluster, server.js and test/e2e.test.js driving two users in
#    headless Chromium.  As the owner, never root, so that Chromium keeps
#    its sandbox; screenshots in $WORK/e2e.
say "e2e (the example chat in headless Chromium, examples/chat)"
if has_files 'examples/chat/test/*.test.js'; then
	st=0
	as_owner env TMPDIR="$WORK" CHAT_ARTIFACTS="$WORK/e2e" \
		bash examples/chat/run.sh --test --no-setup || st=$?
	record e2e "$st"
else
	echo "no tests in examples/chat/test: skipped"; skipped+=(e2e)
fi

say "summary"
[ ${#skipped[@]} -eq 0 ] || echo "skipped (no tests): ${skipped[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
