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

# the coordinator crashes after PREPARE, before its commit record: the
# change must roll back everywhere
my ($ret, $out, $err) = $n1->psql('postgres',
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
