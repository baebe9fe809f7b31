# Peer replication, apply side: every node's apply workers stream the
# other nodes' changes over TLS replication connections and apply them
# with replication origins.  INSERT/UPDATE/DELETE/TRUNCATE travel both
# ways and nothing loops; concurrent updates, inserts and deletes of one
# row record the right conflict type and converge to the last writer; an
# apply error (missing table, a value the local type refuses) is retried
# until fixed; a silent peer is marked down and caught up with; a node
# killed with -m immediate in the middle of a backlog resumes exactly; a
# third node writing concurrently converges; a removed node's worker stops.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n";
my $mesh = MyceliumMesh->new(nodes => 2, conf => $conf);
my ($n1, $n2) = $mesh->nodes;

# replication connections authenticate by node certificate too
for my $n ($n1, $n2)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
	$n->safe_psql('postgres',
		'CREATE TABLE t (id int PRIMARY KEY, v text, n int);'
		  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('t')");
}

# wait_streaming($node, $peer): its apply worker for $peer streams
sub wait_streaming
{
	my ($node, $peer) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT status = 'streaming' FROM mycelium.replication_peer_state() "
			  . "WHERE peer = '$peer'"),
		$node->name . " streams from $peer");
}
wait_streaming($n1, 'n2');
wait_streaming($n2, 'n1');

# wait_value($node, $sql, $want): poll until $sql returns $want
sub wait_value
{
	my ($node, $sql, $want, $name) = @_;
	ok($node->poll_query_until('postgres', $sql, $want), $name)
	  or diag($node->name . ': ' . $node->safe_psql('postgres', $sql));
}

# changes on n1 arrive on n2, and the other way round
$n1->safe_psql('postgres', "INSERT INTO t SELECT g, 'n1-' || g, 0 FROM generate_series(1, 100) g");
wait_value($n2, 'SELECT count(*) FROM t', '100', 'inserts on n1 reach n2');
$n2->safe_psql('postgres', "INSERT INTO t SELECT g, 'n2-' || g, 0 FROM generate_series(101, 150) g");
$n2->safe_psql('postgres', "UPDATE t SET v = 'upd-n2', n = n + 1 WHERE id <= 10");
$n2->safe_psql('postgres', 'DELETE FROM t WHERE id BETWEEN 20 AND 29');
wait_value($n1, "SELECT count(*), count(*) FILTER (WHERE v = 'upd-n2') FROM t", '140|10',
	'inserts, updates and deletes on n2 reach n1');
$n1->safe_psql('postgres', 'UPDATE t SET id = id + 1000 WHERE id = 150');
wait_value($n2, 'SELECT count(*) FROM t WHERE id = 1150', '1', 'a key update reaches n2');

# no loops: once quiet, counters and rows stay put
sub applied
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT applied_transactions FROM mycelium.replication_peer_state()');
}
sub checksums_equal
{
	my $c1 = $n1->safe_psql('postgres', "SELECT mycelium.table_checksum('t')");
	my $c2 = $n2->safe_psql('postgres', "SELECT mycelium.table_checksum('t')");
	return ($c1 eq $c2, $c1, $c2);
}
ok($n1->poll_query_until('postgres',
		"SELECT mycelium.table_checksum('t') = '"
		  . $n2->safe_psql('postgres', "SELECT mycelium.table_checksum('t')") . "'"),
	'n1 and n2 converge');
my ($a1, $a2) = (applied($n1), applied($n2));
is($a1, '3', 'n1 applied the 3 transactions of n2');
is($a2, '2', 'n2 applied the 2 transactions of n1');
# a heartbeat round trip later, nothing came back
$n1->safe_psql('postgres', 'SELECT pg_sleep(1)');
is(applied($n1) . '/' . applied($n2), "$a1/$a2", 'no transaction loops back');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.conflicts')
	  . $n2->safe_psql('postgres', 'SELECT count(*) FROM mycelium.conflicts'),
	'00', 'no conflict recorded for non-concurrent changes');


# A concurrent update of one row: n2 holds the row locked in an open
# transaction while n1 updates it and commits, so n2's apply worker waits;
# then n2 commits its own, later update.  Last writer (n2) wins on both
# nodes; both record the update_update (n2: keep_local, n1: apply_remote).
my $bg = $n2->background_psql('postgres');
$bg->query_safe("BEGIN; UPDATE t SET v = 'from-n2' WHERE id = 1");
$n1->safe_psql('postgres', "UPDATE t SET v = 'from-n1' WHERE id = 1");
ok($n2->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity "
		  . "WHERE backend_type = 'mycelium apply' AND wait_event_type = 'Lock'"),
	"n2's apply worker waits for the row");
$bg->query_safe('COMMIT');
$bg->quit;
wait_value($n1, "SELECT v FROM t WHERE id = 1", 'from-n2', 'n1 takes the later update of n2');
wait_value($n2, "SELECT v FROM t WHERE id = 1", 'from-n2', 'n2 keeps its later update');
wait_value($n2,
	"SELECT conflict_type || ' ' || resolution || ' ' || remote_node || ' ' "
	  . "|| (remote_row->>'v') || ' ' || (local_row->>'v') || ' ' || (local_version->>'node') "
	  . "FROM mycelium.conflicts",
	'update_update keep_local n1 from-n1 from-n2 n2', 'n2 records the update_update conflict');
is($n2->safe_psql('postgres',
		"SELECT (local_version->>'commit_time')::timestamptz > (remote_version->>'commit_time')::timestamptz "
		  . "FROM mycelium.conflicts"),
	't', 'the local version kept is the later one');
wait_value($n2, 'SELECT conflicts FROM mycelium.replication_peer_state()', '1',
	'the conflict is counted in the peer state');

# concurrent inserts of one key, the same way: n1 commits last and wins
$bg = $n1->background_psql('postgres');
$bg->query_safe("BEGIN; INSERT INTO t VALUES (5000, 'ins-n1', 0)");
$n2->safe_psql('postgres', "INSERT INTO t VALUES (5000, 'ins-n2', 0)");
ok($n1->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity "
		  . "WHERE backend_type = 'mycelium apply' AND wait_event_type = 'Lock'"),
	"n1's apply worker waits for the key");
$bg->query_safe('COMMIT');
$bg->quit;
wait_value($n2, "SELECT v FROM t WHERE id = 5000", 'ins-n1', 'n2 takes the later insert of n1');
wait_value($n1, "SELECT v FROM t WHERE id = 5000", 'ins-n1', 'n1 keeps its later insert');
wait_value($n1, "SELECT string_agg(conflict_type || ' ' || resolution, ',' ORDER BY conflict_id) "
	  . "FROM mycelium.conflicts",
	'update_update apply_remote,insert_insert keep_local',
	'n1 records the update_update it lost and the insert_insert it won');

# concurrent delete on n2 and update / delete on n1 of rows 2 and 3:
# n2's delete commits last, so it is the later write and wins everywhere
# (last writer wins), n2 records update_delete; both deleting 3 is no
# conflict (n2's tombstone tells it was deleted, not missing)
$bg = $n2->background_psql('postgres');
$bg->query_safe('BEGIN; DELETE FROM t WHERE id IN (2, 3)');
$n1->safe_psql('postgres', "UPDATE t SET v = 'late-update' WHERE id = 2; DELETE FROM t WHERE id = 3");
ok($n2->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity "
		  . "WHERE backend_type = 'mycelium apply' AND wait_event_type = 'Lock'"),
	"n2's apply worker waits for the deleted rows");
$bg->query_safe('COMMIT');
$bg->quit;
wait_value($n2,
	"SELECT string_agg(conflict_type || ' ' || resolution, ',' ORDER BY conflict_id) "
	  . "FROM mycelium.conflicts WHERE conflict_type IN ('update_delete', 'delete_missing')",
	'update_delete skip', 'n2 records update_delete, and no delete_missing for the double delete');
wait_value($n1, 'SELECT count(*) FROM t WHERE id IN (2, 3)', '0', 'the delete wins on n1');

# TRUNCATE travels
$n1->safe_psql('postgres',
	'CREATE TABLE tr (id int PRIMARY KEY); INSERT INTO tr VALUES (1), (2);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('tr')");
$n2->safe_psql('postgres',
	'CREATE TABLE tr (id int PRIMARY KEY);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('tr')");
$n1->safe_psql('postgres', 'INSERT INTO tr VALUES (3)');
wait_value($n2, 'SELECT count(*) FROM tr', '1', 'rows of a newly listed table travel');
$n2->safe_psql('postgres', 'TRUNCATE tr');
wait_value($n1, 'SELECT count(*) FROM tr', '0', 'TRUNCATE on n2 reaches n1');

# A replicated table missing on the receiver: the worker logs the error,
# rolls back, retries with backoff, and applies once the table exists --
# nothing lost, nothing applied twice.
$n1->safe_psql('postgres',
	'CREATE TABLE late (id int PRIMARY KEY, v text);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('late')");
$n1->safe_psql('postgres', "INSERT INTO late VALUES (1, 'a'); INSERT INTO t VALUES (6000, 'after-late', 0)");
ok($n2->wait_for_log(qr/replicated table "public.late" does not exist here/),
	'a missing table is reported on n2');
ok($n2->poll_query_until('postgres',
		'SELECT retries > 0 FROM mycelium.replication_peer_state()'),
	'the failure is counted as a retry');
$n2->safe_psql('postgres', 'CREATE TABLE late (id int PRIMARY KEY, v text);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('late')");
wait_value($n2, "SELECT (SELECT count(*) FROM late) || '/' || (SELECT count(*) FROM t WHERE id = 6000)",
	'1/1', 'n2 applies the transaction once the table exists');

# an UPDATE that leaves a TOASTed value unchanged keeps it on the peer
$n1->safe_psql('postgres',
	"INSERT INTO t SELECT 8000, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 5000) g");
$n1->safe_psql('postgres', 'UPDATE t SET n = 42 WHERE id = 8000');
wait_value($n2, 'SELECT n, length(v), md5(v) = (SELECT md5(string_agg(md5(g::text), \'\')) '
	  . 'FROM generate_series(1, 5000) g) FROM t WHERE id = 8000',
	'42|160000|t', 'an unchanged TOASTed value survives an update');

# A value the local type refuses: logged, retried, applied once the local
# column type is fixed (the relation is mapped again after ALTER TABLE).
$n1->safe_psql('postgres', 'CREATE TABLE typed (id int PRIMARY KEY, v text);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('typed')");
$n2->safe_psql('postgres', 'CREATE TABLE typed (id int PRIMARY KEY, v int);'
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('typed')");
$n1->safe_psql('postgres', "INSERT INTO typed VALUES (1, 'abc')");
ok($n2->wait_for_log(qr/invalid input syntax for type integer: "abc"/),
	'a value the local type refuses is reported');
$n2->safe_psql('postgres', 'ALTER TABLE typed ALTER v TYPE text');
wait_value($n2, 'SELECT v FROM typed WHERE id = 1', 'abc', 'it applies once the type is fixed');

# A silent peer: freeze the walsender on n1 that serves n2 (SIGSTOP).
# After mycelium.peer_timeout n2 marks n1 down and retries; once the
# walsender runs again, n2 streams again and catches up.
my $wpid = $n1->safe_psql('postgres',
	"SELECT pid FROM pg_stat_replication WHERE application_name = 'mycelium apply n2'");
ok($wpid =~ /^\d+$/, 'n1 has a walsender for n2');
kill 'STOP', $wpid;
$n1->safe_psql('postgres', "INSERT INTO t VALUES (7000, 'while-silent', 0)");
ok($n2->poll_query_until('postgres',
		"SELECT status = 'down' FROM mycelium.replication_peer_state() WHERE peer = 'n1'"),
	'n2 marks a silent n1 down');
ok($n2->wait_for_log(qr/node "n1" sent nothing for 2000 ms/), 'the timeout is logged');
kill 'CONT', $wpid;
wait_streaming($n2, 'n1');
wait_value($n2, 'SELECT count(*) FROM t WHERE id = 7000', '1', 'n2 catches up after the silence');

# Crash n2 (-m immediate) while n1 writes single-row transactions; after
# the restart n2 resumes exactly: every row once (an ALWAYS trigger counts
# each apply), same checksum.
$n2->safe_psql('postgres',
	'CREATE TABLE seen (id int);'
	  . 'CREATE FUNCTION seen() RETURNS trigger LANGUAGE plpgsql AS '
	  . '$$BEGIN INSERT INTO seen VALUES (NEW.id); RETURN NEW; END$$;'
	  . 'CREATE TRIGGER seen AFTER INSERT OR UPDATE ON t FOR EACH ROW '
	  . 'WHEN (NEW.id >= 10000) EXECUTE FUNCTION seen();'
	  . 'ALTER TABLE t ENABLE ALWAYS TRIGGER seen');
my $writes = 2500;
my $bgw = $n1->background_psql('postgres');
$bgw->query_safe("DO \$\$BEGIN FOR i IN 10000..11999 LOOP "
	  . "INSERT INTO t VALUES (i, 'burst', 0); COMMIT; END LOOP; END\$\$");
my $before = $n2->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id >= 10000');
$n2->stop('immediate');
note("n2 had applied $before of 2000 rows when it was killed");
$bgw->query_safe("DO \$\$BEGIN FOR i IN 12000..12499 LOOP "
	  . "INSERT INTO t VALUES (i, 'burst', 0); COMMIT; END LOOP; END\$\$");
$bgw->quit;
$n2->start;
wait_streaming($n2, 'n1');
wait_value($n2, 'SELECT count(*) FROM t WHERE id >= 10000', $writes,
	'n2 catches up after a crash');
is($n2->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM seen'),
	"$writes|$writes", 'every row was applied exactly once');
my ($same, $c1, $c2);
for (1 .. 50)
{
	($same, $c1, $c2) = checksums_equal();
	last if $same;
	$n1->safe_psql('postgres', 'SELECT pg_sleep(0.2)');
}
ok($same, "checksums equal after the crash ($c1 vs $c2)");

# the slot dropped on the source while the worker is away: the worker
# creates it again and warns that changes made meanwhile are lost here
my $n2_id = $n2->safe_psql('postgres', 'SELECT node_id FROM mycelium.nodes WHERE is_local');
$n2->stop;
$n1->safe_psql('postgres', "SELECT pg_drop_replication_slot('mycelium_node_$n2_id')");
$n2->start;
ok($n2->wait_for_log(qr/replication slot "mycelium_node_$n2_id" was missing on node "n1"/),
	'a slot dropped under the worker is recreated with a warning');
wait_streaming($n2, 'n1');

# n1 restarted under another node_name: n2 refuses its transactions
# (rolled back, retried) until it has its name back, then applies them
# (the name is read when decoding, so the held-back one comes as "n1")
$n1->append_conf('postgresql.conf', "mycelium.node_name = 'n1x'\n");
$n1->restart;
$n1->safe_psql('postgres', "INSERT INTO t VALUES (9000, 'renamed', 0)");
ok($n2->wait_for_log(qr/node "n1" sent a transaction of node "n1x"/),
	'transactions of a renamed peer are refused');
$n1->append_conf('postgresql.conf', "mycelium.node_name = 'n1'\n");
$n1->restart;
$n1->safe_psql('postgres', "INSERT INTO t VALUES (9001, 'named', 0)");
wait_value($n2, 'SELECT count(*) FROM t WHERE id IN (9000, 9001)', '2',
	'with its name back, the peer streams again, the refused transaction too');

# A third node: same table and rows (copied while the mesh is quiet), then
# every node writes at once; all three converge.
my $n3 = $mesh->new_node('n3', conf => $conf);
$n3->append_conf('pg_hba.conf', "hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
$n3->reload;
my $copy = $PostgreSQL::Test::Utils::tmp_check . '/t.copy';
$n1->safe_psql('postgres', "COPY t TO '$copy'");
$n3->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v text, n int);'
	  . "COPY t FROM '$copy';"
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('t')");
$n1->safe_psql('postgres', "SELECT mycelium.add_node('n3', '127.0.0.1', " . $n3->port . ')');
wait_streaming($n1, 'n3');
wait_streaming($n2, 'n3');
wait_streaming($n3, 'n1');
wait_streaming($n3, 'n2');
my @runs;
for my $i (1 .. 3)
{
	my $n = ($n1, $n2, $n3)[ $i - 1 ];
	my ($out, $err) = ('', '');
	push @runs, [
		$n,
		IPC::Run::start(
			[
				$n->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $n->connstr('postgres'), '-c',
				"DO \$\$BEGIN FOR i IN 1..300 LOOP "
				  . "INSERT INTO t VALUES (${i}00000 + i, 'three', $i); "
				  . "UPDATE t SET v = 'three-$i', n = n + 1 WHERE id = 1 + i % 7; COMMIT; "
				  . "END LOOP; END\$\$"
			],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	];
}
ok($_->[1]->finish, $_->[0]->name . ' wrote its rows') for @runs;
my @sums;
for (1 .. 100)
{
	@sums = map { $_->safe_psql('postgres', "SELECT mycelium.table_checksum('t')") } ($n1, $n2, $n3);
	last if $sums[0] eq $sums[1] && $sums[1] eq $sums[2];
	$n1->safe_psql('postgres', 'SELECT pg_sleep(0.2)');
}
ok($sums[0] eq $sums[1] && $sums[1] eq $sums[2],
	"three nodes writing at once converge (@sums)");
is($n3->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id >= 100000'), '900',
	'n3 holds every node\'s rows');

# removing n3 from the mesh stops the apply workers for it
my $n3_id = $n3->safe_psql('postgres', "SELECT node_id FROM mycelium.nodes WHERE is_local");
is($n1->safe_psql('postgres',
		"SELECT peer || ' ' || active FROM mycelium.replication_slots WHERE slot_name = 'mycelium_node_$n3_id'"),
	'n3 true', "mycelium.replication_slots shows n3's slot on n1");
$n1->safe_psql('postgres', "SELECT mycelium.remove_node('n3')");
for my $n ($n1, $n2)
{
	ok( $n->poll_query_until('postgres',
			"SELECT (SELECT count(*) FROM mycelium.replication_peer_state() WHERE peer = 'n3') = 0 "
			  . "AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mycelium apply') = 1"),
		$n->name . ' stops applying from a removed node');
}
# ... and the launcher drops the slot n3 streamed from, on every source
for my $n ($n1, $n2)
{
	ok( $n->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = 'mycelium_node_$n3_id'"),
		$n->name . " drops the removed node's slot");
}
ok($n1->log_contains(qr/dropped replication slot "mycelium_node_$n3_id" of removed node $n3_id/),
	'the drop is logged');

# a slot holding more WAL than mycelium.max_slot_lag: WARNING and metric
$n1->safe_psql('postgres', "ALTER SYSTEM SET mycelium.max_slot_lag = 0; SELECT pg_reload_conf()");
$n2->safe_psql('postgres', "SELECT mycelium.pause_replication('n1')");
$n1->safe_psql('postgres', "INSERT INTO t SELECT g, 'lag', 0 FROM generate_series(900000, 900999) g");
ok( $n1->poll_query_until('postgres',
		"SELECT bool_and(over_max_slot_lag) AND bool_and(lag_bytes > 0) FROM mycelium.replication_slots"),
	'mycelium.replication_slots shows the slot over max_slot_lag');
ok($n1->wait_for_log(qr/WARNING:  replication slot "mycelium_node_\d+" holds \d+ MB of WAL for node/),
	'the launcher warns about the lagging slot');
$n1->safe_psql('postgres', "ALTER SYSTEM RESET mycelium.max_slot_lag; SELECT pg_reload_conf()");
$n2->safe_psql('postgres', "SELECT mycelium.resume_replication('n1')");
ok( $n2->poll_query_until('postgres', "SELECT count(*) = 1000 FROM t WHERE v = 'lag'"),
	'n2 catches up after the pause');

done_testing();
