# Faults and bad input in two-phase commit of user data: a transfer from
# n1 between a row on n2 and a row on n3 (a range-distributed table) when
# a constraint fails at PREPARE on one participant, a participant's
# session dies before COMMIT, a participant is down at BEGIN, a
# participant has max_prepared_transactions = 0, a participant stalls at
# PREPARE (prepare_timeout, statement_timeout), and the coordinator is
# killed after PREPARE and after its local commit.  Every time: all or
# nothing on every node, and nothing left prepared.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3,
	conf => "mycelium.prepare_timeout = '3s'\nmycelium.connect_attempts = 1\n"
	  . "mycelium.recovery_interval = 0\n");
my ($n1, $n2, $n3) = $mesh->nodes;

my $shard3 = $mesh->make_accounts->{n3};

# a deferred check on n3's shard: fires at PREPARE; 1500 fails, 1777 stalls
$n3->safe_psql('postgres', qq{
	CREATE FUNCTION check_bal() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
		IF NEW.bal = 1777 THEN PERFORM pg_sleep(30); END IF;
		IF NEW.bal = 1500 THEN RAISE EXCEPTION 'balance 1500 refused at commit'; END IF;
		RETURN NEW;
	END \$\$;
	CREATE CONSTRAINT TRIGGER check_bal AFTER INSERT OR UPDATE ON $shard3
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_bal();
});

sub transfer { return MyceliumMesh::transfer_sql(@_); }

# unchanged($what): both rows as they were (read on their own nodes), and
# nothing prepared anywhere
my $want = '1000|1000';
sub unchanged
{
	my ($what) = @_;
	my $state = $n2->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 1') . '|'
	  . $n3->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 101');
	is($state, $want, "$what: all or nothing on both nodes");
	ok($mesh->no_prepared_xacts, "$what: nothing left prepared");
}

# 1. a constraint fails at PREPARE on one participant
my ($ret, $out, $err) = $n1->psql('postgres', transfer(500));
like($err, qr/balance 1500 refused at commit/, 'a deferred constraint failing at PREPARE on n3 fails the commit');
unchanged('constraint failure at PREPARE');

# COPY into the distributed table: atomic across the nodes too
($ret, $out, $err) = $n1->psql('postgres', "COPY acct FROM stdin;\n5\t100\n105\t1500\n\\.\n");
like($err, qr/balance 1500 refused at commit/, 'a COPY whose rows fail at PREPARE on n3 fails');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM acct WHERE id IN (5, 105)'), '0',
	'and leaves none of its rows on n2');
$n1->safe_psql('postgres', "COPY acct FROM stdin;\n6\t100\n106\t100\n\\.\n");
is($n3->safe_psql('postgres', 'SELECT count(*) FROM acct WHERE id IN (6, 106)'), '2',
	'a COPY into shards on two nodes commits on both');
unchanged('COPY');

# 2. a participant's session dies before COMMIT
my $s = $n1->background_psql('postgres', on_error_stop => 0);
$s->query_safe('BEGIN; UPDATE acct SET bal = bal - 10 WHERE id = 1; UPDATE acct SET bal = bal + 10 WHERE id = 101');
$n3->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mycelium' AND state = 'idle in transaction'");
$s->query('COMMIT');
like($s->{stderr}, qr/connection to node "n3" was lost during the transaction|could not prepare|server closed the connection/,
	'a participant session lost before COMMIT fails the commit');
$s->quit;
unchanged('participant session lost');

# 3. a participant down at BEGIN
$n3->stop;
($ret, $out, $err) = $n1->psql('postgres', transfer(10));
like($err, qr/could not connect to node "n3"/, 'a participant down at BEGIN fails the transfer');
$n3->start;
unchanged('participant down at BEGIN');

# 4. max_prepared_transactions = 0 on a participant
$n3->append_conf('postgresql.conf', "max_prepared_transactions = 0\n");
$n3->restart;
ok($n3->log_contains('max_prepared_transactions'), 'n3 warns about max_prepared_transactions at start');
($ret, $out, $err) = $n1->psql('postgres', transfer(10));
like($err, qr/prepared transactions are disabled.*max_prepared_transactions/s,
	'max_prepared_transactions = 0 on a participant: a clear error naming the setting');
$n3->append_conf('postgresql.conf', "max_prepared_transactions = 40\n");
$n3->restart;
unchanged('max_prepared_transactions = 0');

# 5. a participant stalls at PREPARE: prepare_timeout, then a cancel
# (statement_timeout does not cover COMMIT: PostgreSQL disables it first)
my $t0 = time;
($ret, $out, $err) = $n1->psql('postgres', transfer(777));
like($err, qr/could not prepare the transaction on node "n3"/, 'a participant silent at PREPARE hits prepare_timeout');
ok(time - $t0 < 20, 'and the commit gives up early');
$n3->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE 'PREPARE%'")
  or diag 'the stalled PREPARE is still running on n3';
unchanged('prepare_timeout');
$s = $n1->background_psql('postgres', on_error_stop => 0);
my $pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_until(qr/sent/, "\\echo sent\n" . transfer(777) . "\n");
$n3->poll_query_until('postgres', "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'PREPARE%'")
  or die 'the PREPARE never started on n3';
$t0 = time;
$n1->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$s->query('SELECT 1');
like($s->{stderr}, qr/canceling statement due to user request/, 'a cancel during PREPARE fails the commit');
ok(time - $t0 < 3, 'at once, not at prepare_timeout');
$s->quit;
$n3->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE 'PREPARE%'")
  or diag 'the stalled PREPARE is still running on n3';
unchanged('cancel during PREPARE');

# a recovery pass on n1, true once no node holds a prepared transaction
# (the keeper may still be ending the dead coordinator's work on the first)
my $recovered = 'SELECT mycelium.recover_prepared_transactions() >= 0 AND NOT EXISTS '
  . "(SELECT FROM mycelium.run_command_on_nodes('SELECT count(*) FROM pg_prepared_xacts') WHERE result <> '0')";

# 6. the coordinator killed after PREPARE (no commit record): rolled back
($ret, $out, $err) = $n1->psql('postgres', transfer(10, "SET mycelium.fault_injection = 'crash_after_prepare';"));
isnt($ret, 0, 'the coordinator backend died after PREPARE');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
# (n2 keeps the commit record and commits in one phase: n3 prepares)
is($n3->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '1', 'n3 holds the transfer prepared');
$n1->poll_query_until('postgres', $recovered) or diag 'recovery did not finish';
$n2->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts');
$n3->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts');
unchanged('coordinator killed after PREPARE');

# 7. the coordinator killed after its local commit: committed by recovery
($ret, $out, $err) = $n1->psql('postgres', transfer(10, "SET mycelium.fault_injection = 'crash_after_commit';"));
isnt($ret, 0, 'the coordinator backend died after its commit');
$n1->poll_query_until('postgres', 'SELECT true') or die 'n1 did not come back';
$n1->poll_query_until('postgres', $recovered) or diag 'recovery did not finish';
$n2->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts');
$n3->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts');
$want = '990|1010';
unchanged('coordinator killed after its commit (the transfer is committed)');

done_testing();
