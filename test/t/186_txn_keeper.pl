# Two-phase commit with the commit record kept by a writing node (the
# keeper, txn/commit_record.c): transfers from n1, which writes nothing
# itself, between a row on n2 (the keeper: first writer by name) and a row
# on n3 (prepared).  The record lands on n2 and is cleaned up there; a
# local write on n1, or mycelium.enable_commit_keeper = off, keeps it on
# n1.  Faults: the keeper's commit failing, stalling past prepare_timeout,
# or its node dying with the answer in flight (08007, then recovery); the
# coordinator killed before and after the keeper's commit; the keeper
# unreachable at recovery; the coordinator down while the keeper resolves.  Every time: all or nothing, nothing left
# prepared.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3,
	conf => "mycelium.prepare_timeout = '2s'\nmycelium.connect_attempts = 1\n"
	  . "mycelium.recovery_interval = 0\n");
my ($n1, $n2, $n3) = $mesh->nodes;

my $shard2 = $mesh->make_accounts->{n2};
$n1->safe_psql('postgres', q{
	CREATE TABLE journal (note text);
});

# a deferred check on the keeper's shard: fires at the keeper's COMMIT;
# 500 fails, 777 stalls 5 s, 888 stalls 20 s
$n2->safe_psql('postgres', qq{
	CREATE FUNCTION check_bal() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
		IF NEW.bal = 777 THEN PERFORM pg_sleep(5); END IF;
		IF NEW.bal = 888 THEN PERFORM pg_sleep(20); END IF;
		IF NEW.bal = 500 THEN RAISE EXCEPTION 'balance 500 refused at commit'; END IF;
		RETURN NEW;
	END \$\$;
	CREATE CONSTRAINT TRIGGER check_bal AFTER INSERT OR UPDATE ON $shard2
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_bal();
});

# transfer($amount, $prefix): $amount from 1 (n2) to 101 (n3)
sub transfer { return MyceliumMesh::transfer_sql(@_); }

# to_bal($bal): a transfer that leaves row 1 at $bal
my $bal1 = 1000;
sub to_bal
{
	my ($bal, $prefix) = @_;
	return transfer($bal1 - $bal, $prefix);
}

# records(): commit records on n1, n2, n3
sub records
{
	return join '|', map { $_->safe_psql('postgres', 'SELECT count(*) FROM mycelium.commit_record') } $mesh->nodes;
}

# settled($what, $want): after recovery passes on every node (up to 60 s),
# nothing is prepared, both rows are as $want (row 1 on n2, row 101 on
# n3), and no commit record is left anywhere
sub settled
{
	my ($what, $want) = @_;
	my $left;
	for (1 .. 60)
	{
		$_->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()') for $mesh->nodes;
		$left = 0;
		$left += $_->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') for $mesh->nodes;
		last if $left == 0;
		sleep 1;
	}
	is($left, 0, "$what: nothing left prepared");
	$_->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()') for $mesh->nodes;
	is(records(), '0|0|0', "$what: no commit record left after recovery");
	my $state = $n2->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 1') . '|'
	  . $n3->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 101');
	is($state, $want, "$what: $want on both nodes");
	($bal1) = split /\|/, $want;
}

# the set-up's own two-phase commits (metadata, the multi-shard INSERT)
settled('set-up', '1000|1000');

# 1. the keeper keeps the record, in its own transaction
$n1->safe_psql('postgres', to_bal(990, "SET mycelium.fault_injection = 'skip_commit_prepared';"));
is(records(), '0|1|0', 'the commit record is on n2, the keeper');
my ($gid, $coord, $parts) = split /\|/, $n2->safe_psql('postgres',
	"SELECT gid, coordinator, participants FROM mycelium.distributed_transactions WHERE state = 'committed'");
like($gid, qr/^mycelium_\d+_n1\.n2\.\d+\.\d+$/, 'its gid names the coordinator and the keeper');
is("$coord $parts", 'n1 {n3}', 'n2 shows it committed, coordinated by n1, prepared on n3');
is($n2->safe_psql('postgres', "SELECT mycelium.commit_outcome('$gid')"), 't', 'commit_outcome on n2: committed');
is($n3->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts'), $gid, 'n3 holds the same gid prepared');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '1',
	'recovery on n1 asks n2 and commits n3');
settled('keeper', '990|1010');

# a local write on n1, or the setting off: the record stays on n1
$n1->safe_psql('postgres', "SET mycelium.fault_injection = 'skip_commit_prepared'; BEGIN; "
	  . "INSERT INTO journal VALUES ('transfer'); UPDATE acct SET bal = bal - 10 WHERE id = 1; "
	  . "UPDATE acct SET bal = bal + 10 WHERE id = 101; COMMIT;");
is(records(), '1|0|0', 'with a local write the record is on n1');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'and n2 prepared too');
settled('local write', '980|1020');
$n1->safe_psql('postgres', to_bal(970,
	"SET mycelium.fault_injection = 'skip_commit_prepared'; SET mycelium.enable_commit_keeper = off;"));
is(records(), '1|0|0', 'with enable_commit_keeper off the record is on n1');
settled('enable_commit_keeper off', '970|1030');

# 2. the keeper's commit fails (a deferred check): all rolled back
my ($ret, $out, $err) = $n1->psql('postgres', to_bal(500));
like($err, qr/balance 500 refused at commit/, 'the keeper\'s failing commit fails the transfer');
settled('keeper commit fails', '970|1030');

# 3. the keeper stalls past prepare_timeout: its commit is cancelled
my $t0 = time;
($ret, $out, $err) = $n1->psql('postgres', to_bal(777));
like($err, qr/could not commit the transaction on node "n2".*prepare_timeout/s,
	'a keeper silent past prepare_timeout is cancelled and fails the transfer');
ok(time - $t0 < 5, 'before its stall ends');
settled('keeper stalls', '970|1030');

# 4. the keeper's node dies with its answer in flight: 08007, then
# recovery rolls n3 back (n2 never committed)
my $s = $n1->background_psql('postgres', on_error_stop => 0);
$s->query_until(qr/sent/, "\\set VERBOSITY verbose\n\\echo sent\n"
	  . to_bal(888, "SET mycelium.prepare_timeout = '60s';") . "\n");
$n2->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'SELECT mycelium.keep_commit_record%'")
  or die 'the keeper\'s commit never started';
$n2->stop('immediate');
$s->query('SELECT 1');
like($s->{stderr}, qr/08007.*could not learn whether node "n2" committed the transaction/s,
	'the keeper lost with its answer in flight: 08007');
$s->quit;
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'n3 is left prepared');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '0',
	'recovery leaves it while n2 is down');
$n2->start;
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '1',
	'and rolls it back once n2 tells it never committed');
settled('keeper lost in flight', '970|1030');

# 5. the coordinator killed after PREPARE, before the keeper's commit
($ret, $out, $err) = $n1->psql('postgres', to_bal(960, "SET mycelium.fault_injection = 'crash_after_prepare';"));
isnt($ret, 0, 'the coordinator backend died after PREPARE');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'n3 holds the transfer prepared');
settled('coordinator killed before the keeper committed', '970|1030');

# 6. the coordinator killed after the keeper committed: recovery commits n3
($ret, $out, $err) = $n1->psql('postgres', to_bal(960, "SET mycelium.fault_injection = 'crash_after_commit';"));
isnt($ret, 0, 'the coordinator backend died after the keeper\'s commit');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
settled('coordinator killed after the keeper committed', '960|1040');

# 7. the keeper down at recovery: n3 waits, then commits
$n1->safe_psql('postgres', to_bal(950, "SET mycelium.fault_injection = 'skip_commit_prepared';"));
$n2->stop('immediate');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '0',
	'recovery cannot decide while the keeper is down');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'so n3 stays prepared');
$n2->start;
is($n2->safe_psql('postgres', 'SELECT count(*) FROM mycelium.commit_record'), '1',
	'the keeper\'s record survived its crash');
is($n1->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '1',
	'recovery commits n3 once the keeper is back');
settled('keeper down at recovery', '950|1050');

# 8. the coordinator down for good: the keeper resolves on its own
$n1->safe_psql('postgres', to_bal(940, "SET mycelium.fault_injection = 'skip_commit_prepared';"));
$n1->stop('immediate');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'n3 holds the transfer prepared');
is($n2->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions()'), '1',
	'with n1 down, recovery on n2 (the keeper) commits n3');
is($n3->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 101'), '1060', 'n3 shows the transfer');
is($n2->safe_psql('postgres', 'SELECT mycelium.recover_prepared_transactions(); SELECT count(*) FROM mycelium.commit_record'),
	"0\n0", 'and n2 cleans up its record');
$n1->start;
settled('coordinator down, keeper resolves', '940|1060');

done_testing();
