# Causality with version vectors, on a 3-node TLS mesh.
#
# Every replicated table gets the mycelium_context trigger, so each
# transaction carries its writer's version vector (a CONTEXT message before
# its changes).  Causally ordered updates -- each writer had seen the
# previous version, whichever node wrote it -- record no conflict anywhere.
# Concurrent writes (made while the nodes do not apply each other's
# changes: pause_replication) are conflicts, recorded on every node that
# meets them with both rows and both vectors, and resolved identically:
# every node converges (equal checksums).  A custom policy decides with a
# user function; the vector survives an immediate restart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n";
my $mesh = MyceliumMesh->new(nodes => 3, conf => $conf);
my @nodes = $mesh->nodes;
my ($n1, $n2, $n3) = @nodes;

for my $n (@nodes)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
}

# fails($node, $sql): the error text of a statement that must fail
sub fails
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return $rc == 0 ? "unexpected success: $out" : $err;
}

# wait_value($node, $sql, $want, $name): poll until $sql returns $want
sub wait_value
{
	my ($node, $sql, $want, $name) = @_;
	ok($node->poll_query_until('postgres', $sql, $want), $name)
	  or diag($node->name . ': ' . $node->safe_psql('postgres', $sql));
}

# sync(): every node's changes applied everywhere
sub sync
{
	for my $n (@nodes)
	{
		is($n->safe_psql('postgres', "SELECT mycelium.wait_for_sync('60s')"),
			't', $n->name . ' is in sync');
	}
}

# conflicts($node): "type resolution remote_node" of its conflicts, in order
sub conflicts
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(conflict_type || ' ' || resolution || ' ' || remote_node, ',' "
		  . "ORDER BY conflict_id), '') FROM mycelium.conflicts");
}

# converged($table): the checksum is the same on every node
sub converged
{
	my ($table, $name) = @_;
	my $want = $n1->safe_psql('postgres', "SELECT mycelium.table_checksum('$table')");
	for my $n ($n2, $n3)
	{
		ok($n->poll_query_until('postgres',
				"SELECT mycelium.table_checksum('$table') = '$want'"),
			"$name: " . $n->name . ' has the checksum of n1');
	}
}

# all_paused($bool): pause (or resume) every node's apply of every peer
sub all_paused
{
	my ($pause) = @_;
	my $f = $pause ? 'pause_replication' : 'resume_replication';
	$_->safe_psql('postgres', "SELECT mycelium.$f()") for @nodes;
	return if !$pause;
	for my $n (@nodes)
	{
		$n->poll_query_until('postgres',
			"SELECT bool_and(status = 'paused') FROM mycelium.replication_peer_state()")
		  or diag($n->name . ' did not pause');
	}
}

$n1->safe_psql('postgres', 'CREATE TABLE vv (id int PRIMARY KEY, v text, n int)');
$n1->safe_psql('postgres',
	"INSERT INTO vv SELECT g, 'v' || g, 0 FROM generate_series(1, 20) g");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('vv')");
is( join(',', map { $_->safe_psql('postgres',
				"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'vv'::regclass "
				  . "AND tgname = 'mycelium_context'") } @nodes),
	'1,1,1', 'replicate_table gives the table its context trigger on every node');
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
			  . "FROM mycelium.replication_peer_state()"),
		$n->name . ' streams from both peers');
}

# --- the context travels: a decoding of n2's WAL shows CONTEXT before the
# change, with the entry of n1 that n2 has applied
$n1->safe_psql('postgres', "UPDATE vv SET n = 1 WHERE id = 1");
sync();
$n2->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('peek', 'mycelium')");
$n2->safe_psql('postgres', "UPDATE vv SET n = 2 WHERE id = 1");
is( $n2->safe_psql('postgres',
		"SELECT string_agg(m->>'type', ' ' ORDER BY ord) FROM "
		  . "pg_logical_slot_peek_binary_changes('peek', NULL, NULL, 'proto_version', '1') "
		  . "WITH ORDINALITY AS c(lsn, xid, data, ord), "
		  . "LATERAL mycelium.decode_replication_message(data) m"),
	'BEGIN CONTEXT RELATION UPDATE COMMIT', 'CONTEXT precedes the changes of a transaction');
is( $n2->safe_psql('postgres',
		"SELECT (m->'vector'->>'n1')::timestamptz = "
		  . "(SELECT commit_time FROM mycelium.version_vector WHERE node_name = 'n1') FROM "
		  . "pg_logical_slot_peek_binary_changes('peek', NULL, NULL, 'proto_version', '1') c, "
		  . "LATERAL mycelium.decode_replication_message(c.data) m WHERE m->>'type' = 'CONTEXT'"),
	't', "the context holds n2's version vector entry of n1");
$n2->safe_psql('postgres', "SELECT pg_drop_replication_slot('peek')");

# --- causally ordered updates of one row, hopping between the nodes: no
# conflict anywhere (pglogical/Spock would flag each "origin differs")
for my $i (1 .. 9)
{
	my $n = $nodes[$i % 3];
	$n->safe_psql('postgres', "UPDATE vv SET v = 'hop$i', n = $i WHERE id = 2");
	sync();
}
is(join('|', map { conflicts($_) } @nodes), '||', 'causal updates record no conflict');
converged('vv', 'causal updates');
is($n3->safe_psql('postgres', 'SELECT v FROM vv WHERE id = 2'), 'hop9', 'the last update is kept');

# --- concurrent updates of one row while nobody applies: update_update
# recorded on every node, the last writer (n3) wins everywhere
all_paused(1);
$n1->safe_psql('postgres', "UPDATE vv SET v = 'c-n1' WHERE id = 3");
$n2->safe_psql('postgres', "UPDATE vv SET v = 'c-n2' WHERE id = 3");
$n3->safe_psql('postgres', "UPDATE vv SET v = 'c-n3' WHERE id = 3");
all_paused(0);
sync();
converged('vv', 'concurrent updates');
is(join(',', map { $_->safe_psql('postgres', 'SELECT v FROM vv WHERE id = 3') } @nodes),
	'c-n3,c-n3,c-n3', 'the last writer wins on every node');
is($n3->safe_psql('postgres',
		"SELECT string_agg(conflict_type || ' ' || resolution || ' ' || remote_node, ',' "
		  . "ORDER BY remote_node) FROM mycelium.conflicts"),
	'update_update keep_local n1,update_update keep_local n2',
	'n3 records two update_update conflicts and keeps its row');
like(conflicts($n1), qr/^update_update (apply_remote|keep_local) n\d,update_update (apply_remote|keep_local) n\d$/,
	'n1 records two update_update conflicts');
is($n1->safe_psql('postgres',
		"SELECT count(*) FROM mycelium.conflicts WHERE remote_node = 'n3' "
		  . "AND resolution = 'apply_remote' AND local_version ? 'vector' "
		  . "AND remote_version->'vector' ? 'n1' AND local_row->>'v' IN ('c-n1', 'c-n2') "
		  . "AND remote_row->>'v' = 'c-n3'"),
	'1', "n1's record of n3's update holds both rows and both vectors");
wait_value($n3, "SELECT sum(conflicts) FROM mycelium.stat_replication", '2',
	'stat_replication counts the conflicts');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- concurrent insert/insert, update/delete and delete/delete (n2's
# delete of 4 comes after n1's update: the later write, it wins)
all_paused(1);
$n1->safe_psql('postgres', "INSERT INTO vv VALUES (100, 'i-n1', 0)");
$n2->safe_psql('postgres', "INSERT INTO vv VALUES (100, 'i-n2', 0)");
$n1->safe_psql('postgres', "UPDATE vv SET v = 'u-n1' WHERE id = 4");
$n2->safe_psql('postgres', 'DELETE FROM vv WHERE id = 4');
$n1->safe_psql('postgres', 'DELETE FROM vv WHERE id = 5');
$n2->safe_psql('postgres', 'DELETE FROM vv WHERE id = 5');
all_paused(0);
sync();
converged('vv', 'concurrent insert, update and delete');
is($n3->safe_psql('postgres', "SELECT v FROM vv WHERE id = 100") . ' '
	  . $n3->safe_psql('postgres', 'SELECT count(*) FROM vv WHERE id IN (4, 5)'),
	'i-n2 0', 'the later insert wins and the deletes win');
is($n1->safe_psql('postgres',
		"SELECT string_agg(conflict_type || ' ' || resolution, ',' ORDER BY conflict_type) FROM mycelium.conflicts"),
	'insert_insert apply_remote,update_delete apply_remote',
	'n1 records insert_insert and update_delete; both deleting 5 is no conflict (tombstone)');
is($n2->safe_psql('postgres',
		"SELECT string_agg(conflict_type || ' ' || resolution, ',' ORDER BY conflict_type) FROM mycelium.conflicts"),
	'insert_insert keep_local,update_delete skip',
	'n2 records the same two conflicts');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- custom policy: a function decides (here: the larger n wins, a
# symmetric choice, so every node converges)
like(fails($n1, "SELECT mycelium.replicate_table('vv', 'custom')"),
	qr/policy "custom" needs a function/, 'custom without a function is refused');
$n1->safe_psql('postgres', 'CREATE TABLE cu (id int PRIMARY KEY, n int, who text)');
like(fails($n1, "SELECT mycelium.replicate_table('cu', 'custom:public.nosuch')"),
	qr/function public.nosuch\(regclass, jsonb, jsonb\) does not exist/,
	'an unknown custom function is refused');
for my $n (@nodes)
{
	$n->safe_psql('postgres',
		'CREATE FUNCTION public.bigger(t regclass, l jsonb, r jsonb) RETURNS jsonb '
		  . "LANGUAGE sql IMMUTABLE AS \$\$ SELECT CASE WHEN (l->>'n')::int >= (r->>'n')::int "
		  . "THEN l ELSE r END \$\$");
}
$n1->safe_psql('postgres', "INSERT INTO cu VALUES (1, 0, 'init')");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('cu', 'custom:bigger')");
is($n2->safe_psql('postgres', "SELECT conflict_resolution FROM mycelium.replicated_table WHERE relid = 'cu'::regclass"),
	'custom:public.bigger', 'the custom policy is recorded with its function everywhere');
all_paused(1);
$n1->safe_psql('postgres', "UPDATE cu SET n = 50, who = 'n1' WHERE id = 1");
$n2->safe_psql('postgres', "UPDATE cu SET n = 7, who = 'n2' WHERE id = 1");
all_paused(0);
sync();
converged('cu', 'custom policy');
is($n3->safe_psql('postgres', 'SELECT n, who FROM cu'), '50|n1',
	'the custom function chose the row, not the last writer');
is($n1->safe_psql('postgres', "SELECT string_agg(resolution, ',') FROM mycelium.conflicts"),
	'custom', 'n1 records the conflict resolved by the custom function');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- the version vector survives an immediate restart: n2's next update of
# a row n1 wrote is still causal
$n1->safe_psql('postgres', "UPDATE vv SET v = 'before-crash' WHERE id = 6");
sync();
$n2->stop('immediate');
$n2->start;
ok($n2->poll_query_until('postgres',
		"SELECT count(*) = 2 AND bool_and(status = 'streaming') FROM mycelium.replication_peer_state()"),
	'n2 streams again after an immediate restart');
$n2->safe_psql('postgres', "UPDATE vv SET v = 'after-crash' WHERE id = 6");
sync();
is(join('|', map { conflicts($_) } @nodes), '||', 'no conflict after the restart');
is($n1->safe_psql('postgres', 'SELECT v FROM vv WHERE id = 6'), 'after-crash',
	"n2's update reaches n1");

# --- bad input
like(fails($n1, 'SELECT mycelium.replication_context()'),
	qr/must be called as a statement trigger/,
	'the context trigger function refuses a direct call');
like(fails($n1, "SELECT mycelium.decode_replication_message('\\x56000000030001ff'::bytea)"),
	qr/malformed replication message/, 'a truncated CONTEXT message is refused');

done_testing();
