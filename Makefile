# Mycelium — PGXS build.
#
#   make            build the module
#   make install    install into the PostgreSQL that pg_config names
#   make test       install missing packages, build, run every suite (scripts/test.sh)
#   make demo       install missing packages, build, install, run the 3-node demo
#
# Sources are found by wildcard: every src/*.c and src/<subsystem>/*.c is part
# of the module, and the install script is assembled from sql/parts/*.sql in
# name order, so subsystems add files without editing this Makefile.

EXTENSION = mycelium
MODULE_big = mycelium
EXTVERSION = 0.1

SRCS = $(sort $(wildcard src/*.c src/*/*.c))
OBJS = $(SRCS:.c=.o)
SQL_PARTS = $(sort $(wildcard sql/parts/*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
PGFILEDESC = "mycelium - a mesh of PostgreSQL peers"

PG_CPPFLAGS = -I$(srcdir)/src -I$(libpq_srcdir)
PG_CFLAGS = -Wall -Wmissing-prototypes -Wpointer-arith -Wdeclaration-after-statement -Werror=vla
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK = -lssl -lcrypto -lsqlite3

# Tests.  pg_regress and isolation run on a temporary instance that preloads
# the library (test/mycelium.conf); TAP tests build multi-node meshes with
# test/perl/MyceliumMesh.pm.  Specs named mesh_*.spec need several nodes and
# are driven from a TAP test instead of the temporary instance.
REGRESS = $(sort $(basename $(notdir $(wildcard test/sql/*.sql))))
REGRESS_OPTS = --inputdir=test --temp-instance=tmp_check_regress \
	--temp-config=test/mycelium.conf --host=127.0.0.1
ISOLATION = $(sort $(filter-out mesh_%,$(basename $(notdir $(wildcard test/specs/*.spec)))))
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso \
	--temp-config=test/mycelium.conf --host=127.0.0.1
TAP_TESTS = 1
PROVE_TESTS = $(or $(TAP),test/t/*.pl)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

# Debian's PGXS would also build LLVM bitcode with clang-14; Mycelium's
# functions gain nothing from JIT inlining, so skip it and the dependency.
override with_llvm = no

include $(PGXS)

# after the include: Makefile.global resets PROVE_FLAGS
PROVE_FLAGS = -I test/perl

# PGXS tracks no header dependencies: rebuild every object when any of our
# headers changes (a stale object with an old struct layout crashes).
$(OBJS): $(wildcard src/*.h src/*/*.h)

$(DATA_built): $(SQL_PARTS)
	cat $(SQL_PARTS) > $@

# One target per suite, so a runner can run them all and report each.
.PHONY: check-regress check-isolation check-tap test demo
check-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
check-isolation:
ifneq ($(strip $(ISOLATION)),)
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
endif
check-tap:
	$(prove_installcheck)

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh
