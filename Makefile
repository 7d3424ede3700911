# Makefile for the presence extension (PGXS)

EXTENSION = presence
EXTVERSION = 1.0
# The release's version (META.json), EXTVERSION as x.y.z; test/t/014 checks both.
DISTVERSION = 1.0.0
MODULE_big = presence
OBJS = \
	src/presence.o \
	src/status.o \
	src/validate.o \
	src/spi.o \
	src/event.o \
	src/state.o \
	src/sweep.o \
	src/api.o \
	src/payload.o \
	src/channel.o \
	src/rooms.o \
	src/shmem.o \
	src/cache.o \
	src/launcher.o \
	src/worker.o \
	src/hooks.o \
	src/restore.o
DATA = presence--1.0.sql
PGFILEDESC = "presence - real-time user presence with timed transitions and NOTIFY events"

PG_CPPFLAGS = -I$(srcdir)/src
# -Wextra, less the unused-parameter warning that PostgreSQL's own headers
# (ilist.h, bufpage.h) raise.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

# pg_regress (test/sql -> expected/) and isolation (test/specs -> expected/)
# run against throwaway clusters without the library preloaded: they drive
# time explicitly with presence.sweep(as_of), and no worker may act on the
# deadlines behind their backs.  TAP (test/t) starts its own clusters with
# the worker.  test/expected is a link to expected/, because PG 15's
# pg_regress reads the expected output from <inputdir>/expected.
REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --temp-instance=tmp_check --load-extension=dblink
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso
ifneq ($(wildcard test/t/*.pl),)
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
endif

# presence_watch, the live terminal viewer (watch/): a libpq client built
# here and installed into PostgreSQL's bindir with the extension.
WATCH_OBJS = $(patsubst %.c,%.o,$(sort $(wildcard watch/*.c)))
SCRIPTS_built = watch/presence_watch

EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results regression.diffs regression.out \
	$(WATCH_OBJS)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# make dist: the PGXN release archive $(EXTENSION)-$(DISTVERSION).zip of the
# committed tree (HEAD), every file under the directory $(EXTENSION)-$(DISTVERSION)/.
dist:
	git archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ \
		-o $(EXTENSION)-$(DISTVERSION).zip HEAD

.PHONY: dist

# presence_watch is a client program: libpq's headers and library, none of
# the server's.  Its own rules win over PGXS's %.o: %.c (a longer pattern).
WATCH_CFLAGS = $(CFLAGS) -Wall -Wextra -Wunused-parameter -Werror -D_GNU_SOURCE -I$(includedir) \
	-DWATCH_VERSION='"$(EXTVERSION)"'

watch/%.o: watch/%.c watch/watch.h
	$(CC) $(WATCH_CFLAGS) -c -o $@ $<

watch/presence_watch: $(WATCH_OBJS)
	$(CC) $(WATCH_CFLAGS) $(LDFLAGS) -o $@ $(WATCH_OBJS) -L$(libdir) -lpq
