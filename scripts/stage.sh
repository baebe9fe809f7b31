#!/usr/bin/env bash
# Stage a private PostgreSQL installation with Mycelium installed into it,
# the way PostgreSQL's own `make check` uses tmp_install: the system's
# PostgreSQL 15 binaries are copied (they are relocatable) and the extension
# is installed there with DESTDIR.  Test suites then run against the staged
# copy, so they never touch (or race on) the system installation.
#
# usage: scripts/stage.sh DIR      prints the staged pg_config path
set -euo pipefail
dest=$1
sys_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$($sys_config --bindir)        # /usr/lib/postgresql/15/bin
sharedir=$($sys_config --sharedir)    # /usr/share/postgresql/15
libroot=$(dirname "$bindir")          # /usr/lib/postgresql/15
incdir=$($sys_config --includedir)    # /usr/include/postgresql

mkdir -p "$dest$(dirname "$libroot")" "$dest$(dirname "$sharedir")" "$dest$(dirname "$incdir")"
cp -a "$libroot" "$dest$(dirname "$libroot")/"
cp -a "$sharedir" "$dest$(dirname "$sharedir")/"
ln -sfn "$incdir" "$dest$incdir"
make -s install DESTDIR="$dest" PG_CONFIG="$sys_config" >/dev/null
echo "$dest$bindir/pg_config"
