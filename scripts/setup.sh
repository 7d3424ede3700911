#!/usr/bin/env bash
# setup.sh: make this machine able to build and test presence, then build and
# install it.  Idempotent.  As root on Debian 12 it installs whatever is
# missing with apt-get (apt-get update only when something is missing);
# as any other user it only checks, builds, and installs if it may write
# PostgreSQL's directories.
#
#   bash scripts/setup.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
# PG_CONFIG, else PRESENCE_PG_BIN's (as scripts/lib.sh), else the system's.
PG_CONFIG=${PG_CONFIG:-${PRESENCE_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}/pg_config}

PACKAGES=(
	build-essential                        # gcc, make, libc headers
	"postgresql-$PG_MAJOR"                 # server, contrib (dblink)
	"postgresql-server-dev-$PG_MAJOR"      # PGXS, pg_regress, TAP modules
	libpq-dev                              # presence_watch (a libpq client)
	tmux                                   # the demo's split screen, 013_watch
	"postgresql-$PG_MAJOR-pgtap"           # pgTAP extension
	libtap-parser-sourcehandler-pgtap-perl # pg_prove
	libipc-run-perl                        # PostgreSQL::Test::Cluster needs it
	libdbd-pg-perl                         # the TAP tests' connections
	clang-14                               # the fuzzer (test/fuzz) ...
	libclang-rt-14-dev                     # ... and its libFuzzer runtime
	valgrind                               # the valgrind suite
	chromium                               # the example chat's browser test (e2e) ...
	fonts-dejavu-core                      # ... and a font for its pages
)
# Node.js 20 and npm come with the machine; Debian's (18) only when missing.
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# 1. Packages.
missing=()
for pkg in "${PACKAGES[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
	say "packages: all present"
elif [ "$(id -u)" -eq 0 ]; then
	say "packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -qq -o DPkg::Lock::Timeout=300 update
	apt-get -qq -y -o DPkg::Lock::Timeout=300 --no-install-recommends \
		install "${missing[@]}" >/dev/null
	say "packages: done"
else
	die "missing packages: ${missing[*]} (run this script as root to install them)"
fi
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found"

# 2. Build (the Makefile's -Werror flags apply) and install.
cd "$ROOT"
say "building with $PG_CONFIG"
make -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG"

pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
if [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ]; then
	say "installing into $pkglibdir"
	make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
elif cmp -s presence.so "$pkglibdir/presence.so"; then
	say "not installing (no write access); the installed presence.so is this build"
else
	say "warning: not installing (no write access), and $pkglibdir/presence.so" \
		"differs from this build: tests will run the installed copy"
fi
say "ok"
