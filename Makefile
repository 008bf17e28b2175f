# Makefile for pgbatch (plain PGXS)
MODULE_big = pgbatch
OBJS = \
	src/pgbatch.o \
	src/guc.o \
	src/util.o \
	src/security.o \
	src/events.o \
	src/counters.o \
	src/validate.o \
	src/gate.o \
	src/shmem.o \
	src/endpoint.o \
	src/launcher.o \
	src/pipeline.o \
	src/claim.o \
	src/outcome.o \
	src/stage_sql.o \
	src/http.o \
	src/http_response.o \
	src/stage_http.o \
	src/item_exec.o \
	src/session_run.o \
	src/executor_main.o \
	src/requeue.o \
	src/reclaim.o

EXTENSION = pgbatch
DATA = pgbatch--1.0.sql pgbatch--1.0--1.1.sql pgbatch--1.1--1.2.sql pgbatch--1.2--1.3.sql \
	pgbatch--1.3--1.4.sql
PGFILEDESC = "pgbatch - durable batches of staged work"
SHLIB_LINK += -lcurl

# the version this library is built for: the control file's, in one place
PGB_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(dir $(lastword $(MAKEFILE_LIST)))pgbatch.control)
PG_CPPFLAGS += -DPGB_VERSION='"$(PGB_VERSION)"'


REGRESS = setup pipeline submit run retry requeue views roles endpoints security limits maintenance operators upgrade

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = src/errnames.h

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Condition names for SQLSTATEs (serialization_failure, ...), generated from
# the server's errcodes.h so that every code the server knows has its name.
ERRCODES_H := $(shell $(PG_CONFIG) --includedir-server)/utils/errcodes.h

src/errnames.h: $(ERRCODES_H) src/gen_errnames.awk
	awk -f src/gen_errnames.awk $< > $@

src/stage_sql.o: src/errnames.h

# every object depends on the headers (and on the version it is built for)
$(OBJS): $(wildcard src/*.h) pgbatch.control

# the operators' command-line tool (cli/): built, installed and cleaned with
# the extension
all: cli
install: install-cli
uninstall: uninstall-cli
clean: clean-cli

cli:
	$(MAKE) -C cli PG_CONFIG=$(PG_CONFIG)
install-cli: cli
	$(MAKE) -C cli PG_CONFIG=$(PG_CONFIG) install
uninstall-cli:
	$(MAKE) -C cli PG_CONFIG=$(PG_CONFIG) uninstall
clean-cli:
	$(MAKE) -C cli PG_CONFIG=$(PG_CONFIG) clean

.PHONY: cli install-cli uninstall-cli clean-cli
