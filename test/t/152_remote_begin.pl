# Remote transactions begun with their first statement (the begin is
# deferred and pipelined with it, transport/remote_xact.c): the remote work
# still gets the local isolation level, lock_timeout and savepoints; a
# first statement that fails leaves the connection usable and no remote
# transaction open; savepoints taken before a node is first used, and
# rolled back, leave nothing there.  Table acct: ids 0-99 on n2, 100-199
# on n3; the sessions are on n1, which holds no shard.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;
my $shard3 = $mesh->make_accounts->{n3};

# open_remote($node): remote sessions of n1's backends still in a transaction
sub open_remote
{
	my ($node) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity "
		  . "WHERE application_name = 'mycelium' AND state LIKE 'idle in transaction%'");
}

# try($session, $sql): run $sql, which may fail; returns its stderr
sub try
{
	my ($session, $sql) = @_;
	$session->{stderr} = '';
	$session->query($sql);
	my $err = $session->{stderr};
	$session->{stderr} = '';
	return $err;
}

# 1. the isolation level: REPEATABLE READ keeps the first read's snapshot
# on n3, READ COMMITTED does not
my $s = $n1->background_psql('postgres', on_error_stop => 0);
my $other = $n1->background_psql('postgres');
for my $case (['REPEATABLE READ', '1000'], ['READ COMMITTED', '2000'])
{
	my ($level, $want) = @$case;
	$other->query_safe('UPDATE acct SET bal = 1000 WHERE id = 101');
	$s->query_safe("BEGIN ISOLATION LEVEL $level");
	is($s->query_safe('SELECT bal FROM acct WHERE id = 101'), '1000', "$level: first read on n3");
	$other->query_safe('UPDATE acct SET bal = 2000 WHERE id = 101');
	is($s->query_safe('SELECT bal FROM acct WHERE id = 101'), $want,
		"$level: a second read after another session's commit sees $want");
	$s->query_safe('COMMIT');
}
$other->query_safe('UPDATE acct SET bal = 1000 WHERE id = 101');

# 2. lock_timeout reaches a remote lock wait begun by the first statement
my $locker = $n3->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT bal FROM $shard3 WHERE id = 101 FOR UPDATE");
my $t0 = time;
like(try($s, "SET lock_timeout = '300ms'; BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = 101; COMMIT; RESET lock_timeout"),
	qr/canceling statement due to lock timeout/, 'lock_timeout ends the remote lock wait');
ok(time - $t0 < 10, 'at once');
$locker->query_safe('ROLLBACK');
$locker->quit;

# 3. a first statement that fails: the error is relayed, nothing stays
# open, the connection serves the next transaction
like(try($s, 'BEGIN; UPDATE acct SET bal = bal / 0 WHERE id = 1; COMMIT'), qr/division by zero/,
	'an error in the first statement on n2 is relayed');
is($s->query_safe('SELECT bal FROM acct WHERE id = 1'), '1000', 'the next statement works');
is(open_remote($n2), '0', 'no remote transaction is left open on n2');

# 4. savepoints: rolled back before and after a node is first used
$s->query_safe('BEGIN; SAVEPOINT a; UPDATE acct SET bal = bal + 1 WHERE id = 1; ROLLBACK TO SAVEPOINT a; '
	  . 'UPDATE acct SET bal = bal + 10 WHERE id = 101; COMMIT');
is($s->query_safe('SELECT string_agg(bal::text, \'|\' ORDER BY id) FROM acct WHERE id IN (1, 101)'), '1000|1010',
	'a savepoint rolled back on n2 undoes only its own work');
$s->query_safe('BEGIN; SAVEPOINT a; SAVEPOINT b; UPDATE acct SET bal = bal + 1 WHERE id = 1; RELEASE SAVEPOINT b; '
	  . 'ROLLBACK TO SAVEPOINT a; UPDATE acct SET bal = bal - 10 WHERE id = 101; SAVEPOINT c; '
	  . 'UPDATE acct SET bal = bal + 5 WHERE id = 1; COMMIT');
is($s->query_safe('SELECT string_agg(bal::text, \'|\' ORDER BY id) FROM acct WHERE id IN (1, 101)'), '1005|1000',
	'nested savepoints, the node first used inside them');
like(try($s, 'BEGIN; SAVEPOINT a; UPDATE acct SET bal = bal / 0 WHERE id = 101; ROLLBACK TO SAVEPOINT a; '
	  . 'UPDATE acct SET bal = bal + 1 WHERE id = 101; COMMIT'), qr/division by zero/, 'the statement in the savepoint fails');
is($s->query_safe('SELECT bal FROM acct WHERE id = 101'), '1001',
	'a failed first statement inside a savepoint is rolled back to it, and the transaction goes on');

# 5. many short transactions across both nodes, some failing in their
# first or second statement: the total holds, nothing stays open
my $fails = 0;
for my $i (1 .. 60)
{
	my ($a, $b) = $i % 2 ? (1, 101) : (101, 1);
	my $first = $i % 5 == 0 ? 'bal / 0' : 'bal - 1';
	my $second = $i % 7 == 0 ? 'bal / 0' : 'bal + 1';
	$fails++
	  if try($s, "BEGIN; UPDATE acct SET bal = $first WHERE id = $a; UPDATE acct SET bal = $second WHERE id = $b; COMMIT")
	  =~ /division by zero/;
}
ok($fails > 10, "$fails of 60 transfers failed as meant");
is($s->query_safe('SELECT sum(bal) FROM acct WHERE id IN (1, 101)'), '2006', 'the total holds');
is(open_remote($n2) . open_remote($n3), '00', 'no remote transaction is left open');
ok($mesh->no_prepared_xacts, 'nothing left prepared');
$s->quit;
$other->quit;

done_testing();
