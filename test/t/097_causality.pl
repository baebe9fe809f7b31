# Dots from the hybrid logical clock, and tombstones, on a 3-node TLS mesh.
#
# A row version's dot is (node, clock value): a local transaction that
# wrote a replicated table commits with a fresh value of the node's hybrid
# logical clock as its commit timestamp, and peers apply it with that very
# timestamp.  mycelium.test_clock_offset (test only) skews one node's wall
# clock: its own writes stay ordered when the clock steps back, and after
# an immediate restart the clock never goes back.  Deletes leave
# tombstones: a concurrent update (or late re-insert) of a deleted key is
# update_delete, settled by last writer wins on every node whatever the
# order each node receives the two in -- the later update brings the row
# back (and its tombstones go), a later delete removes it; a custom policy
# lets the delete win; a delete of a key that never existed is
# delete_missing; a causal re-insert is no conflict; the tombstones are
# purged once every peer has seen the delete.
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

# sync(): every node's changes applied everywhere
sub sync
{
	for my $n (@nodes)
	{
		is($n->safe_psql('postgres', "SELECT mycelium.wait_for_sync('60s')"),
			't', $n->name . ' is in sync');
	}
}

# converged($table, $name): the checksum is the same on every node
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

# dot($node, $id): the clock value of row $id's version, in µs since 2000
sub dot
{
	my ($node, $id) = @_;
	return $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin) - "
		  . "'2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint FROM ct WHERE id = $id");
}

# conflicts($node[, $id]): "type resolution remote_node" of its conflicts
# (of row $id only), in order
sub conflicts
{
	my ($node, $id) = @_;
	my $where = defined $id
	  ? "WHERE coalesce(local_row, remote_row)->>'id' = '$id'" : '';
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(conflict_type || ' ' || resolution || ' ' || remote_node, ',' "
		  . "ORDER BY conflict_id), '') FROM mycelium.conflicts $where");
}

# tombstones_of($id): how many tombstones of ct's row $id each node holds
sub tombstones_of
{
	my ($id) = @_;
	return join(',', map { $_->safe_psql('postgres',
				"SELECT count(*) FROM mycelium.tombstones WHERE key = '{\"id\": \"$id\"}'") } @nodes);
}

# rows_of($table, $id): row $id on each node ("-" where it is missing)
sub rows_of
{
	my ($table, $id) = @_;
	return join(',', map { $_->safe_psql('postgres',
				"SELECT coalesce((SELECT v FROM $table WHERE id = $id), '-')") } @nodes);
}

$n1->safe_psql('postgres', 'CREATE TABLE ct (id int PRIMARY KEY, v text)');
$n1->safe_psql('postgres', "INSERT INTO ct SELECT g, 'v' || g FROM generate_series(1, 20) g");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('ct')");
is( join(',', map { $_->safe_psql('postgres',
				"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ct'::regclass "
				  . "AND tgname = 'mycelium_tombstone'") } @nodes),
	'1,1,1', 'replicate_table gives the table its tombstone trigger on every node');
is( join(',', map { $_->safe_psql('postgres',
				"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ct'::regclass "
				  . "AND tgname = 'mycelium_key_change'") } @nodes),
	'1,1,1', 'and its key change trigger');
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
			  . "FROM mycelium.replication_peer_state()"),
		$n->name . ' streams from both peers');
}

# --- a node whose wall clock runs a minute ahead stamps its writes with it;
# every node sees the same dot
$n3->safe_psql('postgres',
	"SET mycelium.test_clock_offset = '60s'; UPDATE ct SET v = 'ahead' WHERE id = 1");
my $ahead = dot($n3, 1);
cmp_ok($ahead, '>', $n3->safe_psql('postgres',
		"SELECT (extract(epoch FROM now() + interval '50 s' - "
		  . "'2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint"),
	"n3's dot carries its skewed clock");
sync();
is(dot($n1, 1) . ' ' . dot($n2, 1), "$ahead $ahead", 'n1 and n2 see the same dot');

# --- the clock steps back (offset gone, then a minute behind): n3's next
# writes are still ordered after its earlier ones
$n3->safe_psql('postgres', "UPDATE ct SET v = 'back' WHERE id = 1");
my $back = dot($n3, 1);
cmp_ok($back, '>', $ahead, 'a write after the clock stepped back is ordered after the earlier one');
$n3->safe_psql('postgres',
	"SET mycelium.test_clock_offset = '-60s'; UPDATE ct SET v = 'behind' WHERE id = 1");
cmp_ok(dot($n3, 1), '>', $back, 'and so is a write with the clock a minute behind');
sync();
is(join(',', map { $_->safe_psql('postgres', 'SELECT v FROM ct WHERE id = 1') } @nodes),
	'behind,behind,behind', "n3's last write is everywhere");
is(join('|', map { conflicts($_) } @nodes), '||', "n3's ordered writes record no conflict");

# --- a prepared transaction is stamped when COMMIT PREPARED runs (PostgreSQL
# takes the commit time from the session that commits it): after n3's
# earlier writes, although n3's wall clock is now well behind them
my $behind = dot($n3, 1);
$n3->safe_psql('postgres',
	"BEGIN; UPDATE ct SET v = 'prepared' WHERE id = 1; PREPARE TRANSACTION 'ct_prepared'");
$n3->safe_psql('postgres', "COMMIT PREPARED 'ct_prepared'");
my $prepared = dot($n3, 1);
cmp_ok($prepared, '>', $behind, 'a prepared transaction commits with a clock value after the earlier writes');
like($n3->safe_psql('postgres',
		"SELECT roname FROM pg_replication_origin WHERE roident = "
		  . "(SELECT (pg_xact_commit_timestamp_origin(xmin)).roident FROM ct WHERE id = 1)"),
	qr/^mycelium\.hlc:\d+$/, 'through an origin of the clock pool');
sync();
is(dot($n1, 1) . ' ' . dot($n2, 1), "$prepared $prepared", 'its dot is the same on every node');
is(join('|', map { conflicts($_) } @nodes), '||', 'the prepared write records no conflict');

# --- peers observe the clock: n1's next write of the row is later than
# n3's, though n1's wall clock is a minute behind n3's dots
$n1->safe_psql('postgres', "UPDATE ct SET v = 'n1-after' WHERE id = 1");
cmp_ok(dot($n1, 1), '>', $back, "n1's causal write is stamped after n3's");
sync();
is(join('|', map { conflicts($_) } @nodes), '||', 'a causal write on another node records no conflict');

# --- concurrent updates while n3 runs an hour behind: the larger dot wins
# (ties: the larger node name), identically on every node
all_paused(1);
$n1->safe_psql('postgres', "UPDATE ct SET v = 'c-n1' WHERE id = 2");
$n3->safe_psql('postgres',
	"SET mycelium.test_clock_offset = '-3600s'; UPDATE ct SET v = 'c-n3' WHERE id = 2");
my ($d1, $d3) = (dot($n1, 2), dot($n3, 2));
my $winner = ($d3 > $d1 || ($d3 == $d1)) ? 'c-n3' : 'c-n1';
all_paused(0);
sync();
converged('ct', 'concurrent updates with a skewed clock');
is(join(',', map { $_->safe_psql('postgres', 'SELECT v FROM ct WHERE id = 2') } @nodes),
	join(',', ($winner) x 3), 'the write with the larger clock value wins on every node');
is(join(',', map { $_->safe_psql('postgres',
				"SELECT count(*) FROM mycelium.conflicts WHERE conflict_type = 'update_update'") } ($n1, $n3)),
	'1,1', 'n1 and n3 each record the update_update conflict');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- the clock never goes back across an immediate restart
my $before = dot($n3, 1) > dot($n3, 2) ? dot($n3, 1) : dot($n3, 2);
$n3->stop('immediate');
$n3->start;
ok($n3->poll_query_until('postgres',
		"SELECT count(*) = 2 AND bool_and(status = 'streaming') FROM mycelium.replication_peer_state()"),
	'n3 streams again after an immediate restart');
$n3->safe_psql('postgres', "UPDATE ct SET v = 'restarted' WHERE id = 3");
cmp_ok(dot($n3, 3), '>', $before, "n3's first write after the restart is after all its earlier dots");
sync();

# The sections below order concurrent writes by real time, which the dots
# follow only once every node's clock is back on the wall clock: n3's
# write a minute ahead pushed every clock ahead (a clock never goes below
# the highest value it received), so wait until the wall clock passed
# every dot written so far.
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT max(pg_xact_commit_timestamp(xmin)) < clock_timestamp() - interval '10 ms' FROM ct"),
		$n->name . "'s wall clock passed every dot");
}

# --- concurrent delete (n1) and later update (n2): update_delete, the
# later update wins (last writer wins): the node that deleted the row takes
# the update's row back and drops its tombstone, the writer keeps its row
all_paused(1);
$n1->safe_psql('postgres', 'DELETE FROM ct WHERE id = 5');
$n2->safe_psql('postgres', "UPDATE ct SET v = 'u-n2' WHERE id = 5");
is($n1->safe_psql('postgres',
		"SELECT table_name || ' ' || key || ' ' || node_name || ' ' || (deleted_at IS NOT NULL) "
		  . "FROM mycelium.tombstones"),
	'ct {"id": "5"} n1 true', 'the delete leaves a tombstone with its dot');
all_paused(0);
sync();
converged('ct', 'concurrent delete and later update');
is(rows_of('ct', 5), 'u-n2,u-n2,u-n2', 'the later update wins on every node');
is(conflicts($n1), 'update_delete apply_remote n2',
	'n1 takes the later update of the key it deleted: update_delete, apply_remote');
is(conflicts($n2), 'update_delete keep_local n1', 'n2 keeps its later row over the delete: update_delete');
like(conflicts($n3), qr/^update_delete (apply_remote n2|keep_local n1)$/,
	'n3 records one update_delete, whichever came first');
is($n1->safe_psql('postgres',
		"SELECT local_version->>'node' || ' ' || (local_version->>'commit_time' IS NOT NULL) "
		  . "FROM mycelium.conflicts"),
	'n1 true', "n1's record holds the tombstone's dot as the local version");
is(tombstones_of(5), '0,0,0', 'no node keeps a tombstone of the row that came back');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- both orders on a third node: n1 deletes and n2 updates, one after the
# other, while n3 applies n1's stream before n2's, then the other way
# round.  Row a: the delete first, the update later (the row survives with
# the update's values); row b: the update first, the delete later (the row
# is gone).  Every node ends with the same rows and records the conflict.
my @rounds = ([ 'n1', 11, 12 ], [ 'n2', 13, 14 ]);
for my $round (@rounds)
{
	my ($first, $a, $b) = @$round;
	my $second = $first eq 'n1' ? 'n2' : 'n1';

	all_paused(1);
	$n1->safe_psql('postgres', "DELETE FROM ct WHERE id = $a");
	$n2->safe_psql('postgres', "UPDATE ct SET v = 'later-$a' WHERE id = $a");
	$n2->safe_psql('postgres', "UPDATE ct SET v = 'earlier-$b' WHERE id = $b");
	$n1->safe_psql('postgres', "DELETE FROM ct WHERE id = $b");
	$n3->safe_psql('postgres', "SELECT mycelium.resume_replication('$first')");
	ok($n3->poll_query_until('postgres',
			$first eq 'n1'
			? "SELECT count(*) = 0 FROM ct WHERE id IN ($a, $b)"
			: "SELECT count(*) = 2 FROM ct WHERE v IN ('later-$a', 'earlier-$b')"),
		"n3 applied ${first}'s changes first");
	all_paused(0);
	sync();
	converged('ct', "delete and update, n3 receiving $first first");
	is(rows_of('ct', $a), "later-$a,later-$a,later-$a",
		"$first first: the update after the delete wins everywhere");
	is(rows_of('ct', $b), '-,-,-', "$first first: the delete after the update wins everywhere");
	is(conflicts($n1, $a) . '|' . conflicts($n2, $a),
		'update_delete apply_remote n2|update_delete keep_local n1',
		"$first first: n1 and n2 record the later update's win");
	is(conflicts($n1, $b) . '|' . conflicts($n2, $b),
		'update_delete skip n2|update_delete apply_remote n1',
		"$first first: n1 and n2 record the later delete's win");
	is(conflicts($n3, $a) . '|' . conflicts($n3, $b),
		$first eq 'n1'
		? 'update_delete apply_remote n2|update_delete skip n2'
		: 'update_delete keep_local n1|update_delete apply_remote n1',
		"$first first: n3 records each conflict once, on the change that came second");
	is(tombstones_of($a) . ' ' . tombstones_of($b), '0,0,0 1,1,1',
		"$first first: only the delete that won leaves its tombstone, on every node");
	$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;
}

# --- where the delete wins whatever the dots: a large row (an update
# does not ship unchanged TOASTed values, so the deleter could not rebuild
# it; the writer, unable to tell, goes by the row's size alike), and a
# table with a custom policy (its function settles two rows)
$n1->safe_psql('postgres', 'CREATE TABLE big (id int PRIMARY KEY, v text, b text)');
$n1->safe_psql('postgres',
	"INSERT INTO big SELECT g, 'small', CASE WHEN g = 1 THEN "
	  . "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) END "
	  . 'FROM generate_series(1, 2) g');
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('big')");
for my $n (@nodes)
{
	$n->safe_psql('postgres',
		'CREATE FUNCTION public.keep_remote(t regclass, l jsonb, r jsonb) RETURNS jsonb '
		  . 'LANGUAGE sql IMMUTABLE AS $$ SELECT r $$');
}
$n1->safe_psql('postgres', 'CREATE TABLE cp (id int PRIMARY KEY, v text)');
$n1->safe_psql('postgres', "INSERT INTO cp VALUES (1, 'init')");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('cp', 'custom:keep_remote')");
sync();
all_paused(1);
$n1->safe_psql('postgres', 'DELETE FROM big; DELETE FROM cp');
$n2->safe_psql('postgres', "UPDATE big SET v = 'later'; UPDATE cp SET v = 'later'");
all_paused(0);
sync();
converged('big', 'a large row deleted and updated later');
converged('cp', 'a custom table deleted and updated later');
is(rows_of('big', 1) . ' ' . rows_of('big', 2), '-,-,- later,later,later',
	'the large row stays deleted, the small one takes the later update');
is(rows_of('cp', 1), '-,-,-', 'under a custom policy the delete wins');
is($n1->safe_psql('postgres',
		"SELECT string_agg(table_name || ':' || (remote_row->>'id') || ' ' || resolution, ',' "
		  . 'ORDER BY table_name::text, remote_row->>\'id\') FROM mycelium.conflicts'),
	'big:1 skip,big:2 apply_remote,cp:1 skip', 'n1 records each update_delete with its resolution');
is($n2->safe_psql('postgres',
		"SELECT string_agg(table_name || ':' || (local_row->>'id') || ' ' || resolution, ',' "
		  . 'ORDER BY table_name::text, local_row->>\'id\') FROM mycelium.conflicts'),
	'big:1 apply_remote,big:2 keep_local,cp:1 apply_remote', 'n2 records the same three');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- a late re-insert of a key deleted concurrently: n2 deletes and
# re-inserts 6 while n1 deletes it before; the later re-insert wins
# everywhere
all_paused(1);
$n1->safe_psql('postgres', 'DELETE FROM ct WHERE id = 6');
$n2->safe_psql('postgres', 'DELETE FROM ct WHERE id = 6');
$n2->safe_psql('postgres', "INSERT INTO ct VALUES (6, 'reborn')");
all_paused(0);
sync();
converged('ct', 'concurrent delete and re-insert');
is(rows_of('ct', 6), 'reborn,reborn,reborn', 'the later re-insert brings the row back everywhere');
is(conflicts($n1), 'update_delete apply_remote n2',
	'n1: both deleting is no conflict, the later re-insert is update_delete and wins');
is(conflicts($n2), 'update_delete keep_local n1', 'n2: its later re-insert wins over the delete');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- causal: a re-insert by a node that had seen the delete, and a delete
# by a node that had seen the update, are no conflict
$n1->safe_psql('postgres', 'DELETE FROM ct WHERE id = 7');
sync();
$n2->safe_psql('postgres', "INSERT INTO ct VALUES (7, 'again')");
$n2->safe_psql('postgres', "UPDATE ct SET v = 'seen' WHERE id = 8");
sync();
$n3->safe_psql('postgres', 'DELETE FROM ct WHERE id = 8');
sync();
converged('ct', 'causal re-insert and delete');
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM ct WHERE id IN (7, 8)') } @nodes),
	'1,1,1', 'the causal re-insert and delete are applied everywhere');
is(join('|', map { conflicts($_) } @nodes), '||', 'and record no conflict');

# --- a delete of a key that never existed on the other nodes:
# delete_missing (the row was written on n2 under a foreign origin, so it
# never left n2)
$n2->safe_psql('postgres',
	"SELECT pg_replication_origin_create('test_local'); "
	  . "SELECT pg_replication_origin_session_setup('test_local'); "
	  . "INSERT INTO ct VALUES (100, 'local only');");
$n2->safe_psql('postgres', 'DELETE FROM ct WHERE id = 100');
sync();
is(conflicts($n1) . '|' . conflicts($n3), 'delete_missing skip n2|delete_missing skip n2',
	'a delete of a key that never existed is delete_missing');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- an UPDATE that changes the key is a delete of the old key and an
# insert of the new one: against a concurrent delete of the old key, the
# row lives on under its new key everywhere, whichever order n3 receives
# the two in (the writer leaves a tombstone of the old key)
$n1->safe_psql('postgres', "INSERT INTO ct SELECT g, 'v' || g FROM generate_series(31, 33) g");
sync();
for my $round ([ 'n1', 31 ], [ 'n2', 33 ])
{
	my ($first, $k) = @$round;
	my $nk = $k + 100;

	all_paused(1);
	$n1->safe_psql('postgres', "DELETE FROM ct WHERE id = $k");
	$n2->safe_psql('postgres', "UPDATE ct SET id = $nk WHERE id = $k");
	$n3->safe_psql('postgres', "SELECT mycelium.resume_replication('$first')");
	ok($n3->poll_query_until('postgres',
			$first eq 'n1'
			? "SELECT count(*) = 0 FROM ct WHERE id = $k"
			: "SELECT count(*) = 1 FROM ct WHERE id = $nk"),
		"n3 applied ${first}'s change first");
	all_paused(0);
	sync();
	converged('ct', "key change and delete of the old key, n3 receiving $first first");
	is(rows_of('ct', $k) . ' ' . rows_of('ct', $nk), "-,-,- v$k,v$k,v$k",
		"$first first: the old key is gone and the row lives on under the new key everywhere");
	is(conflicts($n1) . '|' . conflicts($n2), 'update_delete apply_remote n2|',
		"$first first: the deleting node records the update of the key it deleted");
	is(conflicts($n3), $first eq 'n1' ? 'update_delete apply_remote n2' : '',
		"$first first: n3 records it only when the delete came first");
	is(tombstones_of($k), '2,2,2', "$first first: both deletes of the old key leave a tombstone everywhere");
	$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;
}

# ... a large row: its unchanged TOASTed value is sent with the new key
# (the key change trigger), so the node that deleted the old key can insert
# the whole row
$n1->safe_psql('postgres',
	"INSERT INTO big SELECT 3, 'large', string_agg(md5(i::text), '') FROM generate_series(1, 300) i");
sync();
all_paused(1);
$n1->safe_psql('postgres', 'DELETE FROM big WHERE id = 3');
$n2->safe_psql('postgres', 'UPDATE big SET id = 103 WHERE id = 3');
all_paused(0);
sync();
converged('big', 'a large row moved to another key and deleted');
is(join(',', map { $_->safe_psql('postgres', 'SELECT v || length(b) FROM big WHERE id = 103') } @nodes),
	'large9600,large9600,large9600', 'the large row lives on under its new key, whole, everywhere');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# ... a concurrent later update of the old key keeps (or brings back) the
# old key: each key settles by itself, alike everywhere
all_paused(1);
$n2->safe_psql('postgres', 'UPDATE ct SET id = 132 WHERE id = 32');
$n1->safe_psql('postgres', "UPDATE ct SET v = 'n1-later' WHERE id = 32");
all_paused(0);
sync();
converged('ct', 'key change and a later update of the old key');
is(rows_of('ct', 32) . ' ' . rows_of('ct', 132), 'n1-later,n1-later,n1-later v32,v32,v32',
	'the later update keeps the old key, the new key has the moved row, on every node');
is(conflicts($n1) . '|' . conflicts($n2), 'update_delete keep_local n2|update_delete apply_remote n1',
	'the old key: update_delete, the later update wins on both sides');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- streams of different peers are not ordered: n3 receives n2's change
# of a row before n1's insert of it that n2 had seen.  The update inserts
# the row, the delete leaves its tombstone; the earlier insert then loses
# to them (recorded as conflicts on n3 only), so n3 ends like the others
$n3->safe_psql('postgres', 'SELECT mycelium.pause_replication()');
$n3->poll_query_until('postgres',
	"SELECT bool_and(status = 'paused') FROM mycelium.replication_peer_state()")
  or diag('n3 did not pause');
$n1->safe_psql('postgres', "INSERT INTO ct VALUES (40, 'n1-new'), (41, 'n1-new')");
ok($n2->poll_query_until('postgres', 'SELECT count(*) = 2 FROM ct WHERE id IN (40, 41)'),
	'n2 has the rows inserted on n1');
$n2->safe_psql('postgres', "UPDATE ct SET v = 'n2-seen' WHERE id = 40; DELETE FROM ct WHERE id = 41");
$n3->safe_psql('postgres', "SELECT mycelium.resume_replication('n2')");
ok($n3->poll_query_until('postgres', "SELECT count(*) = 1 FROM ct WHERE v = 'n2-seen'"),
	"n3 applied n2's update before n1's insert");
$n3->safe_psql('postgres', "SELECT mycelium.resume_replication('n1')");
sync();
converged('ct', 'changes arriving before the insert they follow');
is(rows_of('ct', 40) . ' ' . rows_of('ct', 41), 'n2-seen,n2-seen,n2-seen -,-,-',
	'the update and the delete win over the insert that arrived after them');
is(conflicts($n1) . '|' . conflicts($n2), '|', 'n1 and n2 received them in order: no conflict');
is(conflicts($n3, 40) . '|' . conflicts($n3, 41),
	'update_delete apply_remote n2,insert_insert keep_local n1|delete_missing skip n2,update_delete skip n1',
	'n3 records what it met out of order');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# ... an UPDATE that leaves an unchanged TOASTed value out cannot be
# inserted: n3 waits until it has applied what n2 had seen (n1's insert),
# then updates the row like everyone else
$n3->safe_psql('postgres', "SELECT mycelium.pause_replication('n1')");
$n3->poll_query_until('postgres',
	"SELECT status = 'paused' FROM mycelium.replication_peer_state() WHERE peer = 'n1'")
  or diag('n3 did not pause n1');
$n1->safe_psql('postgres',
	"INSERT INTO big SELECT 50, 'large', string_agg(md5(i::text), '') FROM generate_series(1, 300) i");
ok($n2->poll_query_until('postgres', 'SELECT count(*) = 1 FROM big WHERE id = 50'),
	'n2 has the large row inserted on n1');
$n2->safe_psql('postgres', "UPDATE big SET v = 'n2-updated' WHERE id = 50");
sleep(1);
is($n3->safe_psql('postgres', 'SELECT count(*) FROM big WHERE id = 50'), '0',
	"n3 holds n2's update back while n1's insert has not arrived");
$n3->safe_psql('postgres', "SELECT mycelium.resume_replication('n1')");
sync();
converged('big', 'an update of a large row arriving before its insert');
is(join(',', map { $_->safe_psql('postgres', 'SELECT v || length(b) FROM big WHERE id = 50') } @nodes),
	'n2-updated9600,n2-updated9600,n2-updated9600', 'the update is applied on top of the insert everywhere');
is(conflicts($n3, 50), '', 'and n3 records no conflict for it');
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- keys print the same in every session: a timestamptz key deleted
# under another TimeZone still finds its tombstone (the later update is
# compared with it, and wins)
$n1->safe_psql('postgres', 'CREATE TABLE tz (at timestamptz PRIMARY KEY, v text)');
$n1->safe_psql('postgres', "INSERT INTO tz VALUES ('2020-01-01 00:00:00+00', 'x')");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('tz')");
sync();
all_paused(1);
$n1->safe_psql('postgres', "SET TimeZone = 'Asia/Tokyo'; DELETE FROM tz");
$n2->safe_psql('postgres', "UPDATE tz SET v = 'y'");
all_paused(0);
sync();
is(join(',', map { $_->safe_psql('postgres', 'SELECT v FROM tz') } @nodes),
	'y,y,y', 'the later update of the timestamptz key wins everywhere');
is($n1->safe_psql('postgres',
		"SELECT conflict_type || ' ' || resolution || ' ' || (local_version->>'node') "
		  . "FROM mycelium.conflicts"),
	'update_delete apply_remote n1', "n1 matched the update with its tombstone, whatever the TimeZone");
$_->safe_psql('postgres', 'TRUNCATE mycelium.conflicts') for @nodes;

# --- tombstones are purged once every peer has seen the delete: each node
# writes after applying the deletes, so its context tells the others (a
# fresh delete first: the earlier ones may be purged already)
$n1->safe_psql('postgres', 'DELETE FROM ct WHERE id = 15');
sync();
ok($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.tombstones') > 0,
	'n1 holds tombstones');
my $purged = 0;
for my $round (1 .. 20)
{
	for my $n (@nodes)
	{
		$n->safe_psql('postgres',
			"INSERT INTO ct VALUES (1000 + $round * 10 + " . substr($n->name, 1) . ", 'tick')");
	}
	sync();
	$purged = join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM mycelium.tombstones') } @nodes);
	last if $purged eq '0,0,0';
	sleep(1);
}
is($purged, '0,0,0', 'every node purged its tombstones');
is(join('|', map { conflicts($_) } @nodes), '||', 'the writes after the deletes record no conflict');
converged('ct', 'after the purge');

# --- stop_replicating_table drops the trigger and the table's tombstones
$n1->safe_psql('postgres', 'DELETE FROM ct WHERE id = 9');
$n1->safe_psql('postgres', "SELECT mycelium.stop_replicating_table('ct')");
is($n1->safe_psql('postgres',
		"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ct'::regclass AND tgname = 'mycelium_tombstone'")
	  . ' ' . $n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.tombstones'),
	'0 0', 'stop_replicating_table drops the tombstone trigger and the tombstones');

# --- bad input
my ($rc, $out, $err) = $n1->psql('postgres', 'SELECT mycelium.tombstone_trigger()');
like($err, qr/trigger functions can only be called as triggers|must be called as a row trigger/,
	'the tombstone trigger function refuses a direct call');
($rc, $out, $err) = $n1->psql('postgres', 'SELECT mycelium.key_change_trigger()');
like($err, qr/trigger functions can only be called as triggers|must be called as a BEFORE UPDATE row trigger/,
	'the key change trigger function refuses a direct call');
($rc, $out, $err) = $n1->psql('postgres', "SET mycelium.test_clock_offset = '48h'");
like($err, qr/is outside the valid range/, 'a clock offset beyond a day is refused');

done_testing();
