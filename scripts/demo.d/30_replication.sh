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
