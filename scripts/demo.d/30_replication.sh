# shellcheck shell=bash
# Demo step: multi-master replication of a table (docs/replication.md).
# Sourced by the demo, which provides say, demo_sql and mesh_psql.

say "Replication: one table, written on every node, the same everywhere"
demo_sql 1 "CREATE TABLE notes (id bigint PRIMARY KEY DEFAULT mycelium.next_id(), author text, body text)"
demo_sql 1 "INSERT INTO notes (author, body) VALUES ('n1', 'written before replication')"
demo_sql 1 "SELECT mycelium.replicate_table('notes')"
demo_sql 2 "INSERT INTO notes (author, body) VALUES ('n2', 'hello from n2')"
demo_sql 3 "INSERT INTO notes (author, body) VALUES ('n3', 'hello from n3')"
for i in 1 2 3; do mesh_psql "$i" "SELECT mycelium.wait_for_sync('30s')" >/dev/null; done
demo_sql 1 "SELECT author, body, (mycelium.id_parts(id)).node_id AS made_on FROM notes ORDER BY id"
demo_sql 2 "SELECT node_name, result AS checksum FROM mycelium.run_command_on_nodes(\$\$SELECT mycelium.table_checksum('notes')\$\$)"
demo_sql 1 "SELECT peer, state, applied_transactions, conflicts FROM mycelium.stat_replication"

say "A concurrent update of one row on two nodes is a conflict: logged everywhere, resolved the same way"
# pause every node's apply so the two updates cannot see each other
for i in 1 2 3; do mesh_psql "$i" "SELECT mycelium.pause_replication()" >/dev/null; done
for i in 1 2 3; do
	for _ in $(seq 100); do
		[ "$(mesh_psql "$i" "SELECT bool_and(status = 'paused') FROM mycelium.replication_peer_state()")" = t ] && break
		sleep 0.1
	done
done
demo_sql 2 "UPDATE notes SET body = 'edited on n2' WHERE author = 'n1'"
demo_sql 3 "UPDATE notes SET body = 'edited on n3' WHERE author = 'n1'"
for i in 1 2 3; do mesh_psql "$i" "SELECT mycelium.resume_replication()" >/dev/null; done
for i in 1 2 3; do mesh_psql "$i" "SELECT mycelium.wait_for_sync('30s')" >/dev/null; done
demo_sql 1 "SELECT conflict_type, remote_node, resolution, local_row->>'body' AS local, remote_row->>'body' AS remote FROM mycelium.conflicts ORDER BY conflict_id"
demo_sql 1 "SELECT node_name, result AS body FROM mycelium.run_command_on_nodes(\$\$SELECT body FROM notes WHERE author = 'n1'\$\$)"
