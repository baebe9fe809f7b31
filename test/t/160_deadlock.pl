# Distributed deadlock detection across a 3-node mesh: two transactions
# that update rows on two different nodes in opposite orders wait for each
# other on two nodes, where neither node's own deadlock detector sees a
# cycle.  The maintenance worker of the younger one's coordinating node
# finds the cycle in the global wait-for graph within two detection
# intervals and cancels it with 40P01 (detail: the cycle); the older one
# commits.  Also: waits coordinated from one node, from two nodes, with
# the coordinators waiting on local locks; a wait that is not a deadlock
# is left alone; a plain cancel stays 57014; the isolation spec
# test/specs/mesh_deadlock.spec; bad input.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use MyceliumMesh;

my $interval = 0.5;	# seconds
my $mesh = MyceliumMesh->new(nodes => 3,
	conf => "mycelium.deadlock_detection_interval = '500ms'\n");
my ($n1, $n2, $n3) = $mesh->nodes;

# dl_a and dl_b: ids 0-99 on n2, 100-199 on n3
$n1->safe_psql('postgres', q{
	CREATE TABLE dl_a (id int PRIMARY KEY, bal int NOT NULL);
	CREATE TABLE dl_b (id int PRIMARY KEY, bal int NOT NULL);
	SELECT mycelium.create_distributed_table('dl_a', 'id', 'range');
	SELECT mycelium.create_distributed_table('dl_b', 'id', 'range');
	SELECT mycelium.add_range_shard(t, '0', '100', 'n2'), mycelium.add_range_shard(t, '100', '200', 'n3')
	  FROM unnest(ARRAY['dl_a', 'dl_b']::regclass[]) t;
	INSERT INTO dl_a SELECT g, 100 FROM generate_series(0, 199) g;
	INSERT INTO dl_b SELECT g, 100 FROM generate_series(0, 199) g;
});
is($n2->safe_psql('postgres',
		"SELECT string_agg(node_name, ',' ORDER BY shard_id) FROM mycelium.shards WHERE table_name = 'dl_a'::regclass"),
	'n2,n3', 'dl_a has a shard on n2 and one on n3');

my $total = $n1->safe_psql('postgres', 'SELECT sum(bal) FROM dl_a') + 0
  + $n1->safe_psql('postgres', 'SELECT sum(bal) FROM dl_b');

# session($node): a background psql that keeps going after errors and
# reports them with their SQLSTATE
sub session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

# run_deadlock($name, $c1, $c2, [s1 first, s2 first, s1 second, s2 second],
#              $wait_node): s1 (older) and s2 (younger) each take a row, then
# s1 asks for s2's row (waiting on $wait_node) and s2 for s1's.  s2 must
# fail with 40P01 within two intervals, s1 must commit.
sub run_deadlock
{
	my ($name, $c1, $c2, $stmts, $wait_node) = @_;
	my $s1 = session($c1);
	my $s2 = session($c2);
	$s1->query_safe("BEGIN; $stmts->[0]");
	$s2->query_safe("BEGIN; $stmts->[1]");
	$s1->query_until(qr/sent/, "\\echo sent\n$stmts->[2];\n");
	$wait_node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
	  or die "$name: the first update never waited";
	my $t0 = time;
	my ($out, $failed) = $s2->query($stmts->[3]);
	my $elapsed = time - $t0;
	my $err = $s2->{stderr};
	$s2->{stderr} = '';
	ok($failed, "$name: the younger transaction fails");
	like($err, qr/ERROR:  40P01: distributed deadlock detected/, "$name: with 40P01");
	like($err, qr/DETAIL:  .*waits on node "n\d" \(process \d+\) for .*waits on node "n\d"/,
		"$name: the detail gives the cycle");
	ok($elapsed < 2 * $interval + 0.3,
		sprintf("$name: broken within two detection intervals (%.2f s)", $elapsed));
	note sprintf("%s: deadlock broken after %.3f s", $name, $elapsed);
	$s2->query_safe('ROLLBACK');
	my (undef, $commit_failed) = $s1->query('COMMIT');
	ok(!$commit_failed, "$name: the older transaction commits") or diag $s1->{stderr};
	$s1->quit;
	$s2->quit;
	return $elapsed;
}

# 1. both coordinated from n1, one table, rows on n2 and n3
run_deadlock('one coordinator', $n1, $n1,
	[ 'UPDATE dl_a SET bal = bal - 10 WHERE id = 1',
	  'UPDATE dl_a SET bal = bal - 20 WHERE id = 101',
	  'UPDATE dl_a SET bal = bal + 10 WHERE id = 101',
	  'UPDATE dl_a SET bal = bal + 20 WHERE id = 1' ], $n3);
is($n3->safe_psql('postgres', 'SELECT bal FROM dl_a WHERE id IN (1, 101) ORDER BY id'),
	"90\n110", 'only the older transaction took effect');

# 2. coordinated from n2 and n3, two tables, each starting on its local shard
run_deadlock('two coordinators', $n2, $n3,
	[ 'UPDATE dl_a SET bal = bal - 10 WHERE id = 2',
	  'UPDATE dl_b SET bal = bal - 20 WHERE id = 102',
	  'UPDATE dl_b SET bal = bal + 10 WHERE id = 102',
	  'UPDATE dl_a SET bal = bal + 20 WHERE id = 2' ], $n3);

# 3. the coordinators themselves wait, on local locks held by remote work
run_deadlock('coordinators waiting locally', $n2, $n3,
	[ 'UPDATE dl_a SET bal = bal - 10 WHERE id = 103',
	  'UPDATE dl_a SET bal = bal - 20 WHERE id = 3',
	  'UPDATE dl_a SET bal = bal + 10 WHERE id = 3',
	  'UPDATE dl_a SET bal = bal + 20 WHERE id = 103' ], $n2);

for my $n ($n1, $n2, $n3)
{
	is($n->safe_psql('postgres', 'SELECT (SELECT sum(bal) FROM dl_a) + (SELECT sum(bal) FROM dl_b)'),
		$total, $n->name . ': the total is unchanged');
}
ok($mesh->no_prepared_xacts, 'nothing left prepared');
ok($n3->log_contains('mycelium: distributed deadlock detected, cancelling the transaction of process'),
	'the victim\'s coordinator logs the cancel');

# a wait that is no deadlock is left alone for several intervals
{
	my $s1 = session($n1);
	my $s2 = session($n2);
	$s1->query_safe('BEGIN; UPDATE dl_a SET bal = bal + 1 WHERE id = 110');
	$s2->query_until(qr/sent/, "\\echo sent\nUPDATE dl_a SET bal = bal - 1 WHERE id = 110;\n");
	$n3->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
	  or die 'the update never waited';
	# while it waits, lock_waits() on n3 shows both ends as distributed
	like($n3->safe_psql('postgres',
			'SELECT waiting_xact, waiting_distributed, blocking_xact, blocking_distributed FROM mycelium.lock_waits()'),
		qr/^n2:\d+:\d+\|t\|n1:\d+:\d+\|t$/, 'lock_waits() names the distributed transactions');
	sleep(4 * $interval);
	$s1->query_safe('COMMIT');
	my (undef, $failed) = $s2->query('SELECT 1');
	ok(!$failed, 'a plain wait is not cancelled') or diag $s2->{stderr};
	$s1->quit;
	$s2->quit;
}

# a user's cancel of a remote wait stays a cancel (57014)
{
	my $s1 = session($n1);
	my $s2 = session($n2);
	$s1->query_safe('BEGIN; UPDATE dl_a SET bal = bal + 1 WHERE id = 111');
	my $pid = $s2->query_safe('SELECT pg_backend_pid()');
	$s2->query_until(qr/sent/, "\\echo sent\nBEGIN; UPDATE dl_a SET bal = bal - 1 WHERE id = 111;\n");
	$n3->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
	  or die 'the update never waited';
	$n2->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$s2->query('SELECT 1');
	like($s2->{stderr}, qr/57014: canceling statement due to user request/,
		'a cancel during a remote wait is still 57014');
	$s1->query_safe('ROLLBACK');
	$s1->quit;
	$s2->quit;
}

# bad input
my ($ret, $out, $err) = $n1->psql('postgres', "SET mycelium.distributed_transaction_id = 'garbage'");
like($err, qr/invalid value for parameter "mycelium.distributed_transaction_id".*\n.*DETAIL:  A distributed transaction id has the form/,
	'a malformed distributed transaction id is refused');
($ret, $out, $err) = $n1->psql('postgres', "SET mycelium.distributed_transaction_id = 'n1:0:5'");
like($err, qr/invalid value/, 'a pid of 0 is refused');
is($n1->safe_psql('postgres', q{
	BEGIN; SET LOCAL mycelium.distributed_transaction_id = 'n9:123:456';
	SELECT count(*) FROM mycelium.lock_waits(); COMMIT;
	SHOW mycelium.distributed_transaction_id}), "0\n", 'a well-formed id is accepted and reset at commit');
$n1->safe_psql('postgres', 'CREATE ROLE dl_user LOGIN');
($ret, $out, $err) = $n1->psql('postgres', 'SET ROLE dl_user; SELECT * FROM mycelium.lock_waits()');
like($err, qr/permission denied for function lock_waits/, 'lock_waits() is not for PUBLIC');

# the isolation spec, against n1
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $outdir = "$PostgreSQL::Test::Utils::tmp_check/isolation_deadlock";
mkdir $outdir;
my $ok = run_log([
		"$pkglibdir/pgxs/src/test/isolation/pg_isolation_regress",
		'--use-existing', '--host=' . $n1->host, '--port=' . $n1->port,
		'--dbname=postgres', '--inputdir=test', "--outputdir=$outdir",
		'mesh_deadlock' ]);
ok($ok, 'isolation spec mesh_deadlock');
if (!$ok && -f "$outdir/regression.diffs")
{
	diag(slurp_file("$outdir/regression.diffs"));
}
ok($mesh->no_prepared_xacts, 'nothing prepared after the isolation spec');

done_testing();
