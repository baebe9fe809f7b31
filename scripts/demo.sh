#!/usr/bin/env bash
# `make demo`: install what is missing, build and install Mycelium, start a
# throwaway local 3-node mesh with TLS, and walk through what Mycelium can
# do.  Each capability adds a step in scripts/demo.d/ (sourced in name
# order).  DEMO_KEEP=1 leaves the mesh running at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'
[ -t 1 ] || { bold=''; dim=''; off=''; }

# say TEXT: narrate a step
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
# demo_sql N SQL: show SQL, run it on node N, show the result (or the
# error, which some steps show on purpose) as psql would
demo_sql()
{
	local n=$1 sql=$2
	printf '%sn%s=# %s%s\n' "$dim" "$n" "$sql" "$off"
	mesh_as_pg "$MESH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$MESH_DIR" \
		-p "${MESH_PORTS[$((n - 1))]}" -d postgres -c "$sql" || true
}

say "Installing missing packages, building and installing Mycelium"
bash scripts/deps.sh
make -s -j2
if [ "$(id -u)" -eq 0 ]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi

MESH_BIN=$(pg_config --bindir)
MESH_DIR=$(mktemp -d /tmp/mycelium-demo.XXXXXX)
chmod 755 "$MESH_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$MESH_DIR"
# shellcheck source=lib/mesh.sh
. scripts/lib/mesh.sh
finish()
{
	if [ -n "${DEMO_KEEP:-}" ]; then
		say "The mesh keeps running in $MESH_DIR (ports ${MESH_PORTS[*]}); stop it with:"
		echo "  for d in $MESH_DIR/n*; do $(id -u | grep -q '^0$' && echo 'runuser -u postgres -- ')$MESH_BIN/pg_ctl -D \$d stop; done"
	else
		mesh_stop_all
		rm -rf "$MESH_DIR"
	fi
}
trap finish EXIT
DEMO_DIR=$MESH_DIR

say "Starting three PostgreSQL 15 servers (n1, n2, n3) on 127.0.0.1 with shared_preload_libraries = 'mycelium'"
for i in 1 2 3; do mesh_init "$i"; done
mesh_start 1
demo_sql 1 "CREATE EXTENSION mycelium"

say "Making a CA and a certificate per node in SQL (EC P-256), written to $MESH_DIR/certs"
mesh_make_certs 3
demo_sql 1 "SELECT subject, is_ca, not_after::date FROM mycelium.certificate_info(pg_read_file('$MESH_DIR/certs/ca.crt'))"

say "Turning on TLS: every node-to-node connection is verify-full, peers log in with their certificate"
for i in 1 2 3; do
	mesh_enable_tls "$i"
	if [ "$i" -eq 1 ]; then mesh_restart 1; else mesh_start "$i"; demo_sql "$i" "CREATE EXTENSION mycelium"; fi
done

say "Forming the mesh from n1"
demo_sql 1 "SELECT mycelium.add_node('n2', '127.0.0.1', ${MESH_PORTS[1]})"
demo_sql 1 "SELECT mycelium.add_node('n3', '127.0.0.1', ${MESH_PORTS[2]})"

say "Every node has the same metadata (each change committed on all of them with two-phase commit)"
for i in 1 2 3; do demo_sql "$i" "SELECT * FROM mycelium.nodes"; done

say "Running a command on every node at once, from n2"
demo_sql 2 "SELECT * FROM mycelium.run_command_on_nodes(\$\$SELECT current_setting('mycelium.node_name') || ' runs ' || split_part(version(), ' ', 2)\$\$)"

say "A command that fails on some nodes reports it per node"
demo_sql 3 "SELECT * FROM mycelium.run_command_on_nodes('SELECT 1 / (' || ${MESH_PORTS[0]} || ' - current_setting(''port'')::int)')"

say "Node-to-node traffic is encrypted and authenticated by certificate (seen from n3)"
# the maintenance workers of n1 and n2 health-check n3 every second
for _ in $(seq 50); do
	[ "$(mesh_psql 3 "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'mycelium'")" -ge 2 ] && break
	sleep 0.1
done
demo_sql 3 "SELECT a.application_name, s.version, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'mycelium' ORDER BY client_dn"

say "Bad input gets a clear error and changes nothing"
demo_sql 1 "SELECT mycelium.add_node('n2', '127.0.0.1', ${MESH_PORTS[1]})"
demo_sql 1 "SELECT mycelium.add_node('n9', '127.0.0.1', 1)"

for step in scripts/demo.d/*.sh; do
	[ -e "$step" ] || continue
	# shellcheck source=/dev/null
	. "$step"
done

say "Done: Mycelium formed a 3-node TLS mesh. See README.md and docs/ for more."
