# Two-phase commit of user data around COMMIT PREPARED: the session's
# next statement, and other sessions, see the transfer at once (and the
# session itself with mycelium.synchronous_commit_prepared off); a
# participant down at COMMIT PREPARED ends committed once recovery reaches
# it; a participant crashed right after a commit ends committed too; a
# cancel while the remote work waits for a lock rolls everything back.
# Transfers from n1 between a row on n2 and a row on n3 (a
# range-distributed table); nothing is left prepared.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3,
	conf => "mycelium.connect_attempts = 1\nmycelium.recovery_interval = 0\n");
my ($n1, $n2, $n3) = $mesh->nodes;

my $shard3 = $mesh->make_accounts->{n3};

sub transfer { return MyceliumMesh::transfer_sql(@_); }

# balances($what, $want): both rows (read on their own nodes) are $want
sub balances
{
	my ($what, $want) = @_;
	my $state = $n2->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 1') . '|'
	  . $n3->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 101');
	is($state, $want, "$what: $want on both nodes");
}

# wait_unprepared: every participant finished (bounded by poll_query_until)
sub wait_unprepared
{
	for my $n ($n2, $n3)
	{
		$n->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts')
		  or diag $n->name . ' still holds a prepared transaction';
	}
	return $mesh->no_prepared_xacts;
}

# 1. read your own writes: each transfer is followed at once, in the same
# session and in another session on n2, by reads of both rows
my $s = $n1->background_psql('postgres', on_error_stop => 1);
my $other = $n2->background_psql('postgres', on_error_stop => 1);
my ($bad, $bad_other) = (0, 0);
for my $i (1 .. 40)
{
	$s->query_safe(transfer(1));
	my $got = $s->query_safe('SELECT string_agg(bal::text, \'|\' ORDER BY id) FROM acct WHERE id IN (1, 101)');
	$bad++ if $got ne (1000 - $i) . '|' . (1000 + $i);
	# and a statement on one participant only, then a write there
	$got = $s->query_safe('SELECT bal FROM acct WHERE id = 101');
	$bad++ if $got ne 1000 + $i;
	$got = $other->query_safe('SELECT string_agg(bal::text, \'|\' ORDER BY id) FROM acct WHERE id IN (1, 101)');
	$bad_other++ if $got ne (1000 - $i) . '|' . (1000 + $i);
}
is($bad, 0, 'the session\'s next statement always sees its own two-phase writes');
is($bad_other, 0, 'another session sees each transfer as soon as COMMIT returned');
$other->quit;
$s->query_safe('UPDATE acct SET bal = bal + 0 WHERE id = 1');
$s->quit;
ok(wait_unprepared(), 'nothing left prepared after the session ends');
balances('after 40 transfers', '960|1040');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions(); '
	  . 'SELECT count(*) FROM mycelium.commit_record'), "0\n0",
	'a recovery pass deletes the commit records of finished transfers');

# 2. a participant down at COMMIT PREPARED: the coordinator committed but
# could not finish n3 (skip_commit_prepared, then n3 stops); recovery
# commits n2 at once, keeps the commit record, and commits n3 once back
# (the commit record on n1, which a node keeping it would not be: see 186)
$n1->safe_psql('postgres', transfer(10, "SET mycelium.fault_injection = 'skip_commit_prepared'; "
	  . 'SET mycelium.enable_commit_keeper = off;'));
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'n3 holds the transfer prepared');
$n3->stop('immediate');
my ($ret, $out, $err) = $n1->psql('postgres', 'SELECT mycelium.recover_prepared_transactions()');
is($out, '1', 'recovery commits the transfer on the reachable participant');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0', 'n2 finished');
is($n2->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 1'), '950', 'n2 shows the transfer');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.commit_record'), '1',
	'the commit record stays while n3 is down');
$n3->start;
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1',
	'the prepared transfer survived n3\'s crash');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '1',
	'recovery commits it once n3 is back');
ok(wait_unprepared(), 'nothing left prepared');
balances('participant down at COMMIT PREPARED', '950|1050');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions(); '
	  . 'SELECT count(*) FROM mycelium.commit_record'), "0\n0", 'and the commit record is cleaned up');

# 3. a participant crashed right after the client saw COMMIT: committed
# everywhere in the end, and the session keeps working (its cached
# connection to the restarted participant is noticed dead and replaced)
$s = $n1->background_psql('postgres', on_error_stop => 0);
$s->query_safe(transfer(10));
$n3->stop('immediate');
$s->query('SELECT bal FROM acct WHERE id = 1');
$n3->start;
$n1->poll_query_until('postgres', 'SELECT mycelium.recover_prepared_transactions() >= 0 AND '
	  . '(SELECT count(*) FROM mycelium.commit_record) = 0')
  or diag 'recovery did not finish';
ok(wait_unprepared(), 'nothing left prepared after n3 is back');
balances('participant stopped after the commit', '940|1060');
is($s->query_safe('SELECT sum(bal) FROM acct WHERE id IN (1, 101)'), '2000',
	'the session works on after the participant came back');
$s->quit;

# 4. a cancel while the remote work waits for a lock on n3: everything
# rolls back, nothing is prepared, no remote transaction is left open
my $locker = $n3->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT bal FROM $shard3 WHERE id = 101 FOR UPDATE");
$s = $n1->background_psql('postgres', on_error_stop => 0);
my $pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_until(qr/sent/, "\\echo sent\n" . transfer(5) . "\n");
$n3->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'mycelium' AND wait_event_type = 'Lock'")
  or die 'the transfer never waited for the lock on n3';
$n1->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$s->query('SELECT 1');
like($s->{stderr}, qr/canceling statement due to user request/, 'a cancel during the remote work fails the transfer');
$locker->query_safe('COMMIT');
$locker->quit;
$n3->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'mycelium' "
	  . "AND (wait_event_type = 'Lock' OR state LIKE 'idle in transaction%')")
  or diag 'a remote transaction of the cancelled transfer is still open on n3';
pass('the cancelled transfer left no remote transaction open on n3');
ok($mesh->no_prepared_xacts, 'nothing prepared after the cancel');
balances('cancel during the remote work', '940|1060');
$s->quit;
is($n1->safe_psql('postgres', transfer(5) . ' SELECT sum(bal) FROM acct WHERE id IN (1, 101)'), '2000',
	'transfers work on after the cancel');

# 5. synchronous_commit_prepared = off: COMMIT returns once decided, and
# the session's next statement on either node still sees the transfer;
# the COMMIT PREPARED left in flight is read at the session's next use of
# n3, or when it ends (nothing stays prepared)
$s = $n1->background_psql('postgres', on_error_stop => 1);
$s->query_safe('SET mycelium.synchronous_commit_prepared = off');
$bad = 0;
for my $i (1 .. 40)
{
	$s->query_safe(transfer(1));
	my $got = $s->query_safe($i % 2 ? 'SELECT bal FROM acct WHERE id = 101'
		: 'SELECT string_agg(bal::text, \'|\' ORDER BY id) FROM acct WHERE id IN (1, 101)');
	$bad++ if $got ne ($i % 2 ? 1065 + $i : (935 - $i) . '|' . (1065 + $i));
}
is($bad, 0, 'with synchronous_commit_prepared off the session still reads its own writes');
$s->query_safe(transfer(10));
$s->quit;
ok(wait_unprepared(), 'a session that ends right after COMMIT leaves nothing prepared');
balances('synchronous_commit_prepared off', '885|1115');
# a participant stopped with the COMMIT PREPARED in flight: committed
# after it is back and recovery ran
$s = $n1->background_psql('postgres', on_error_stop => 0);
$s->query_safe('SET mycelium.synchronous_commit_prepared = off');
$s->query_safe(transfer(10));
$n3->stop('immediate');
$n3->start;
$s->query('SELECT bal FROM acct WHERE id = 1');
$s->quit;
$n1->poll_query_until('postgres', 'SELECT mycelium.recover_prepared_transactions() >= 0 AND NOT EXISTS '
	  . "(SELECT FROM mycelium.run_command_on_nodes('SELECT count(*) FROM pg_prepared_xacts') WHERE result <> '0')")
  or diag 'recovery did not finish';
$n2->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()');
ok(wait_unprepared(), 'nothing left prepared after the participant came back');
balances('participant stopped with COMMIT PREPARED in flight', '875|1125');

done_testing();
