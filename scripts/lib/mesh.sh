# mesh.sh — start and stop a throwaway local mesh, for the demo and the
# benchmarks (the test suites use PostgreSQL::Test::Cluster instead).
#
# Source it with these set:
#   MESH_BIN   PostgreSQL bin directory (system or staged installation)
#   MESH_DIR   an empty directory; the postgres user must be able to write it
# Then:  mesh_create 3        # n1..n3, TLS with SQL-made certificates, joined
#        (mesh_create 3 2     # the same, n3 left out until mesh_join 3)
#        mesh_psql 2 "SQL"    # run SQL on node 2, print the result
#        mesh_stop_all        # stop every node (also on EXIT if trapped)
# Nodes listen on 127.0.0.1 only; clients connect through a Unix socket in
# MESH_DIR.  Ports are picked free from 55431 upward.

MESH_PORTS=()

# mesh_as_pg CMD...: run as the postgres user when we are root
mesh_as_pg()
{
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# mesh_free_port FROM: first port from FROM on that nothing listens on
mesh_free_port()
{
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || [[ " ${MESH_PORTS[*]} " == *" $p "* ]]; do
		p=$((p + 1))
	done
	echo "$p"
}

# mesh_psql N SQL [psql options]: run SQL on node N, unaligned output
mesh_psql()
{
	local n=$1 sql=$2
	shift 2
	mesh_as_pg "$MESH_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$MESH_DIR" \
		-p "${MESH_PORTS[$((n - 1))]}" -d postgres "$@" -c "$sql"
}

# mesh_init N: initdb node N and write its configuration (TLS off)
mesh_init()
{
	local n=$1 dir="$MESH_DIR/n$1" port
	port=$(mesh_free_port $((55430 + n)))
	MESH_PORTS[$((n - 1))]=$port
	mesh_as_pg "$MESH_BIN/initdb" -D "$dir" -A trust -N >/dev/null
	cat >>"$dir/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$MESH_DIR'
shared_preload_libraries = 'mycelium'
wal_level = logical
max_connections = 60
max_prepared_transactions = 60
track_commit_timestamp = on
max_worker_processes = 16
output_plugin_libraries = 'pgoutput, test_decoding, mycelium'
mycelium.node_name = 'n$n'
mycelium.node_host = '127.0.0.1'
mycelium.ssl_mode = 'disable'
CONF
	local su
	su=$(mesh_as_pg whoami)
	echo "hostssl all all 127.0.0.1/32 cert map=mycelium" >>"$dir/pg_hba.conf"
	echo "hostssl replication all 127.0.0.1/32 cert map=mycelium" >>"$dir/pg_hba.conf"
	echo "mycelium /^n[0-9]+\$ $su" >>"$dir/pg_ident.conf"
}

# mesh_start N / mesh_restart N
mesh_start()
{
	mesh_as_pg "$MESH_BIN/pg_ctl" -D "$MESH_DIR/n$1" -l "$MESH_DIR/n$1.log" -w start >/dev/null
}
mesh_restart()
{
	mesh_as_pg "$MESH_BIN/pg_ctl" -D "$MESH_DIR/n$1" -l "$MESH_DIR/n$1.log" -w restart >/dev/null
}

# mesh_stop_all: stop every node that runs
mesh_stop_all()
{
	local d
	for d in "$MESH_DIR"/n*/; do
		[ -f "$d/postmaster.pid" ] &&
			mesh_as_pg "$MESH_BIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1
	done
	return 0
}

# mesh_make_certs COUNT: on node 1, make a CA and one certificate per node
# with mycelium.generate_ca / generate_certificate, and write them to
# MESH_DIR/certs (keys mode 0600).  Keys are passed by subquery, never as
# literals, so they never appear in a logged statement.
mesh_make_certs()
{
	local count=$1 i name
	mkdir -p "$MESH_DIR/certs"
	chmod 700 "$MESH_DIR/certs"
	[ "$(id -u)" -eq 0 ] && chown postgres "$MESH_DIR/certs"
	mesh_psql 1 "CREATE TABLE mesh_pki (name text PRIMARY KEY, certificate text, private_key text);
		INSERT INTO mesh_pki SELECT 'ca', * FROM mycelium.generate_ca('Mycelium local CA', 30);"
	for i in $(seq 1 "$count"); do
		mesh_psql 1 "INSERT INTO mesh_pki SELECT 'n$i', * FROM mycelium.generate_certificate('n$i',
			(SELECT certificate FROM mesh_pki WHERE name = 'ca'),
			(SELECT private_key FROM mesh_pki WHERE name = 'ca'), 29,
			ARRAY['localhost'], ARRAY['127.0.0.1']);"
	done
	for name in ca $(seq -f 'n%g' 1 "$count"); do
		mesh_psql 1 "SELECT certificate FROM mesh_pki WHERE name = '$name'" \
			| mesh_as_pg tee "$MESH_DIR/certs/$name.crt" >/dev/null
		mesh_psql 1 "SELECT private_key FROM mesh_pki WHERE name = '$name'" \
			| mesh_as_pg bash -c "umask 077; cat > '$MESH_DIR/certs/$name.key'"
	done
	mesh_psql 1 "DROP TABLE mesh_pki"
}

# mesh_enable_tls N: serve TLS with the node's certificate and require it
# (verify-full) on node-to-node connections
mesh_enable_tls()
{
	local c="$MESH_DIR/certs"
	cat >>"$MESH_DIR/n$1/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$c/n$1.crt'
ssl_key_file = '$c/n$1.key'
ssl_ca_file = '$c/ca.crt'
mycelium.ssl_mode = 'verify-full'
mycelium.ssl_ca_file = '$c/ca.crt'
mycelium.ssl_cert_file = '$c/n$1.crt'
mycelium.ssl_key_file = '$c/n$1.key'
CONF
}

# mesh_join N: add node N to the mesh, from n1
mesh_join()
{
	mesh_psql 1 "SELECT mycelium.add_node('n$1', '127.0.0.1', ${MESH_PORTS[$(($1 - 1))]})" >/dev/null
}

# mesh_create COUNT [JOINED]: COUNT nodes with TLS between them, the first
# JOINED of them (default all) joined from n1; join the others later with
# mesh_join
mesh_create()
{
	local count=$1 joined=${2:-$1} i
	for i in $(seq 1 "$count"); do mesh_init "$i"; done
	mesh_start 1
	mesh_psql 1 "CREATE EXTENSION mycelium"
	mesh_make_certs "$count"
	for i in $(seq 1 "$count"); do
		mesh_enable_tls "$i"
		if [ "$i" -eq 1 ]; then mesh_restart 1; else
			mesh_start "$i"
			mesh_psql "$i" "CREATE EXTENSION mycelium"
		fi
	done
	for i in $(seq 2 "$joined"); do mesh_join "$i"; done
}
