# shellcheck shell=bash
# Demo step: distributed transactions (docs/transactions.md): a transfer
# between accounts on two nodes commits with two-phase commit (n1 writes
# nothing itself, so n2 keeps the commit record and commits in one phase,
# n3 prepares); then the coordinating node is killed before n3's COMMIT
# PREPARED, and recovery finishes the transaction.
# Sourced by the demo, which provides say, demo_sql, mesh_psql and MESH_*.

say "Distributed transactions: accounts 1 on n2 and 101 on n3, a transfer from n1 touches both"
demo_sql 1 "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric NOT NULL CHECK (balance >= 0))"
demo_sql 1 "SELECT mycelium.create_distributed_table('accounts', 'id', 'range')"
demo_sql 1 "SELECT mycelium.add_range_shard('accounts', '0', '100', 'n2'), mycelium.add_range_shard('accounts', '100', '200', 'n3')"
demo_sql 1 "INSERT INTO accounts VALUES (1, 'alice', 100), (101, 'bob', 100)"
demo_sql 1 "SELECT shard_name, min_value, max_value, node_name FROM mycelium.shards WHERE table_name = 'accounts'::regclass"
demo_sql 1 "BEGIN; UPDATE accounts SET balance = balance - 30 WHERE id = 1; UPDATE accounts SET balance = balance + 30 WHERE id = 101; COMMIT"
demo_sql 2 "SELECT * FROM accounts ORDER BY id"

say "All or nothing: a transfer that fails on one node (overdraft) changes nothing on either"
demo_sql 1 "BEGIN; UPDATE accounts SET balance = balance + 500 WHERE id = 101; UPDATE accounts SET balance = balance - 500 WHERE id = 1; COMMIT"
demo_sql 3 "SELECT * FROM accounts ORDER BY id"

say "A crash mid-commit: n3 prepares, n2 commits with the commit record, then n1 is killed (pg_ctl -m immediate) before n3's COMMIT PREPARED"
# mycelium.fault_injection is a test-only setting: commit locally, tell no one
demo_sql 1 "SET mycelium.fault_injection = 'skip_commit_prepared'; BEGIN; UPDATE accounts SET balance = balance - 20 WHERE id = 1; UPDATE accounts SET balance = balance + 20 WHERE id = 101; COMMIT"
mesh_as_pg "$MESH_BIN/pg_ctl" -D "$MESH_DIR/n1" -m immediate -w stop >/dev/null
echo "${dim}(n1 killed)${off}"
say "n2 holds the decision (its commit record); n3 holds its half in doubt: prepared, locked, not yet visible"
demo_sql 2 "SELECT gid, coordinator, participants, state FROM mycelium.distributed_transactions ORDER BY started_at DESC LIMIT 1"
demo_sql 3 "SELECT gid, coordinator, participants, state FROM mycelium.distributed_transactions WHERE state = 'prepared'"
say "Until then a reader sees n2's half (alice paid) but not yet n3's (bob not yet credited)"
demo_sql 3 "SELECT * FROM accounts ORDER BY id"

say "Recovery needs no coordinator here: n2's maintenance worker finds its commit record and commits n3's half"
for _ in $(seq 300); do
	[ "$(mesh_psql 2 "SELECT count(*) FROM pg_prepared_xacts")$(mesh_psql 3 "SELECT count(*) FROM pg_prepared_xacts")" = "00" ] && break
	sleep 0.1
done
grep -h "recovery committed" "$MESH_DIR/n2.log" | tail -1 | sed 's/^.*LOG:/LOG:/'
demo_sql 3 "SELECT count(*) AS prepared_left FROM pg_prepared_xacts"
demo_sql 3 "SELECT * FROM accounts ORDER BY id"
say "n1 restarts and sees the same"
mesh_start 1
demo_sql 1 "SELECT sum(balance) AS total FROM accounts"
