# Two-phase commit of metadata changes and recovery of what crashes leave:
# every fault point between PREPARE and COMMIT PREPARED, on the coordinator
# and on a participant, ends with every node consistent and nothing prepared.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

# automatic recovery off at first, so each branch is driven by hand
my $mesh = MyceliumMesh->new(nodes => 3, conf => "mycelium.recovery_interval = 0\n");
my ($n1, $n2, $n3) = map { $mesh->node($_) } 1 .. 3;
my $n4 = $mesh->new_node('n4');

sub members
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(node_name, ',' ORDER BY node_id) FROM mycelium.node");
}

sub prepared
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts');
}

# joining the mesh left commit records; a recovery pass cleans them
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions(); '
	  . 'SELECT count(*) FROM mycelium.commit_record'), "0\n0",
	'finished transactions only leave commit records until the next recovery pass');

# a change that aborts leaves nothing anywhere
$n1->safe_psql('postgres', "BEGIN; SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . "); ROLLBACK;");
is(members($_), 'n1,n2,n3', $_->name . ': rolled-back add_node left no trace') for $n1, $n2, $n3;
is(members($n4), 'n4', 'n4: rolled-back add_node left no trace');
ok($mesh->no_prepared_xacts($n4), 'nothing prepared after a rollback');

# a backend terminated in the middle of a change leaves no remote
# transaction open anywhere (its connections close, the peers roll back)
my $bg = $n1->background_psql('postgres');
$bg->query_safe('BEGIN');
$bg->query_safe("SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
is($n2->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mycelium' "
		  . "AND state = 'idle in transaction'"),
	'1', 'the open change holds a remote transaction on n2');
$n1->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' "
	  . "AND pid <> pg_backend_pid() AND query LIKE '%add_node%'");
eval { $bg->quit; };
for my $n ($n2, $n3, $n4)
{
	$n->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'mycelium' "
		  . "AND state LIKE 'idle in transaction%'")
	  or die $n->name . ' kept a remote transaction of a terminated backend';
}
pass('pg_terminate_backend on the coordinator ends its remote transactions');
is(members($_), 'n1,n2,n3', $_->name . ' unchanged after the terminated change') for $n1, $n2, $n3;
ok($mesh->no_prepared_xacts($n4), 'nothing prepared after the terminated change');

# a listener for mycelium_events on the coordinator
my $listener = $n1->background_psql('postgres');
$listener->query_safe('LISTEN mycelium_events');
my $heard = '';

# collect notifications until one matches $re (bounded)
sub hear
{
	my ($re) = @_;
	for (1 .. 100)
	{
		$heard .= $listener->query_safe('SELECT 1');
		return 1 if $heard =~ $re;
		$n1->safe_psql('postgres', 'SELECT pg_sleep(0.1)');
	}
	return 0;
}

# an error after every participant prepared: the abort path rolls the
# prepared transactions back at once, and an "aborted" event follows
my ($ret, $out, $err) = $n1->psql('postgres',
	"SET mycelium.fault_injection = 'error_after_prepare'; "
	  . "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
like($err, qr/fault injection: error after PREPARE TRANSACTION/, 'the change failed after PREPARE');
ok($mesh->no_prepared_xacts($n4), 'the abort path rolled back every prepared transaction');
is(members($_), 'n1,n2,n3', $_->name . ' unchanged after the failed change') for $n1, $n2, $n3;
ok(hear(qr/"event": "aborted", "gid": "mycelium_\d+_n1", "nodes": \["n2", "n3", "n4"\]/),
	'an "aborted" event names the gid and the participants');

# coordinator commits but never sends COMMIT PREPARED (as if it died then):
# the participants hold prepared transactions until recovery commits them
$n1->safe_psql('postgres', "SET mycelium.fault_injection = 'skip_commit_prepared'; "
	  . "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
is(members($n1), 'n1,n2,n3,n4', 'the coordinator committed');
is(prepared($_), '1', $_->name . ' holds the prepared transaction') for $n2, $n3, $n4;
is(members($n2), 'n1,n2,n3', 'n2 does not see the change before COMMIT PREPARED');
like($n2->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts'),
	qr/^mycelium_\d+_n1$/, 'the gid names the coordinator and its transaction');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.commit_record'), '1',
	'the coordinator holds a commit record');
is($n1->safe_psql('postgres',
		'SELECT coordinator, participants, state FROM mycelium.distributed_transactions'),
	'n1|{n2,n3,n4}|committed', 'the coordinator shows the transaction as committed');
is($n2->safe_psql('postgres',
		'SELECT coordinator, participants, state FROM mycelium.distributed_transactions'),
	'n1|{n2}|prepared', 'a participant shows it prepared, naming the coordinator');
ok(hear(qr/"event": "prepared".*\n?.*"event": "committed", "gid": "mycelium_\d+_n1", "nodes": \["n2", "n3", "n4"\]/s),
	'"prepared" and "committed" events arrive with the commit');

# a participant crashes while prepared: the prepared transaction survives
$n3->stop('immediate');
$n3->start;
is(prepared($n3), '1', 'a prepared transaction survives a participant crash');

is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '3',
	'recovery commits the three prepared transactions');
is(members($_), 'n1,n2,n3,n4', $_->name . ' sees the recovered change') for $n2, $n3, $n4;
ok($mesh->no_prepared_xacts($n4), 'nothing prepared after recovery');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions(); '
	  . 'SELECT count(*) FROM mycelium.commit_record'), "0\n0",
	'commit records are cleaned up once every participant finished');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.distributed_transactions'), '0',
	'nothing is in flight any more');
ok(hear(qr/"event": "recovered", "gid": "mycelium_\d+_n1", "nodes": \["n3"\]/),
	'recovery announces each transaction it finished');
$listener->quit;

# the coordinator crashes after PREPARE, before its commit record: the
# change must roll back everywhere
($ret, $out, $err) = $n1->psql('postgres',
	"SET mycelium.fault_injection = 'crash_after_prepare'; SELECT mycelium.remove_node('n4')");
isnt($ret, 0, 'the coordinator backend died after PREPARE');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
is(prepared($_), '1', $_->name . ' is left with a prepared transaction') for $n2, $n3, $n4;
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '3',
	'recovery resolves the three');
is(members($_), 'n1,n2,n3,n4', $_->name . ': the change without a commit record rolled back')
  for $n1, $n2, $n3, $n4;
ok($mesh->no_prepared_xacts($n4), 'nothing prepared after rollback recovery');

# the coordinator crashes after its local commit, before COMMIT PREPARED:
# the change must commit everywhere, this time through the automatic
# recovery of the maintenance worker
$n1->append_conf('postgresql.conf', "mycelium.recovery_interval = '500ms'\n");
$n1->reload;
($ret, $out, $err) = $n1->psql('postgres',
	"SET mycelium.fault_injection = 'crash_after_commit'; SELECT mycelium.remove_node('n4')");
isnt($ret, 0, 'the coordinator backend died after its commit');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
for my $n ($n2, $n3, $n4)
{
	$n->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts')
	  or die $n->name . ' kept its prepared transaction';
}
pass('the maintenance worker finished every prepared transaction');
is(members($_), 'n1,n2,n3', $_->name . ': the committed removal reached it') for $n1, $n2, $n3;
is(members($n4), 'n4', 'n4 was reset to a mesh of one');
$n1->poll_query_until('postgres', 'SELECT count(*) = 0 FROM mycelium.commit_record')
  or die 'commit record never cleaned';
pass('the commit record was cleaned up');

# a participant that is down at COMMIT PREPARED time catches up when back
$n1->safe_psql('postgres', "SET mycelium.fault_injection = 'skip_commit_prepared'; "
	  . "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
$n2->stop('immediate');
$n3->poll_query_until('postgres', "SELECT count(*) = 4 FROM mycelium.node")
  or die 'n3 not recovered while n2 is down';
is(prepared($n3), '0', 'recovery finished the reachable participants');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.commit_record'), '1',
	'the commit record stays while a participant is unreachable');
$n2->start;
$n2->poll_query_until('postgres', "SELECT count(*) = 4 FROM mycelium.node")
  or die 'n2 never recovered';
pass('a participant that comes back gets its prepared transaction committed');
$n1->poll_query_until('postgres', 'SELECT count(*) = 0 FROM mycelium.commit_record')
  or die 'commit record never cleaned';
ok($mesh->no_prepared_xacts($n4), 'nothing prepared anywhere at the end');
is(members($_), 'n1,n2,n3,n4', $_->name . ' consistent at the end') for $n1, $n2, $n3, $n4;

done_testing();
