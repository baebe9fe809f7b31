# Peer replication, bad input on the stream: with the test-only setting
# mycelium.fault_injection = corrupt_replication_message, n2's apply worker
# garbles one message it receives from n1 (the length in its header).  The
# parser refuses it with SQLSTATE 08P01 and a detail, the half-applied
# remote transaction is rolled back, the worker exits (code 1, not a
# crash) and the launcher starts a new one after a backoff, which resumes
# at the replication origin's progress: every row arrives exactly once, the
# checksums are equal, and the postmaster never restarted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n"
  . "log_line_prefix = '%m [%p] %e '\n";
my $mesh = MyceliumMesh->new(nodes => 2, conf => $conf);
my ($n1, $n2) = $mesh->nodes;

for my $n ($n1, $n2)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
	$n->safe_psql('postgres',
		'CREATE TABLE t (id int PRIMARY KEY, v text);'
		  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('t')");
}

# worker_pid($node): pid of its streaming apply worker for the other node
my $streaming = "SELECT worker_pid FROM mycelium.replication_peer_state() "
  . "WHERE status = 'streaming' AND worker_pid IS NOT NULL";
ok($n2->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($streaming) s"),
	'n2 streams from n1');
ok($n1->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($streaming) s"),
	'n1 streams from n2');

$n1->safe_psql('postgres', "INSERT INTO t SELECT g, 'a' || g FROM generate_series(1, 100) g");
ok($n2->poll_query_until('postgres', 'SELECT count(*) = 100 FROM t'), 'rows reach n2');

my $started = $n2->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $old_pid = $n2->safe_psql('postgres', $streaming);
my $retries = $n2->safe_psql('postgres',
	'SELECT retries FROM mycelium.replication_peer_state()');
my $log_offset = -s $n2->logfile;

# the fault: n2's worker garbles the next message it receives
$n2->safe_psql('postgres',
	"ALTER SYSTEM SET mycelium.fault_injection = 'corrupt_replication_message'");
$n2->reload;

# one transaction of 10 rows at a time until the fault fired (the worker
# reads the setting once its latch wakes it; bounded: 30 tries)
my $next = 101;
my $fired = 0;
for my $try (1 .. 30)
{
	$n1->safe_psql('postgres',
		"INSERT INTO t SELECT g, 'b' || g FROM generate_series($next, $next + 9) g");
	$next += 10;
	usleep(300_000);
	if (slurp_file($n2->logfile, $log_offset) =~ /malformed replication message/)
	{
		$fired = 1;
		last;
	}
}
ok($fired, 'the garbled message is refused');
$n2->safe_psql('postgres', 'ALTER SYSTEM RESET mycelium.fault_injection');
$n2->reload;

ok($n2->wait_for_log(qr/exits after a protocol violation/, $log_offset),
	'the worker exits after the protocol violation');
my $log = slurp_file($n2->logfile, $log_offset);
like($log, qr/08P01 ERROR:  malformed replication message/, 'logged with SQLSTATE 08P01');
like($log, qr/DETAIL:  INSERT message header announces a body of \d+ bytes, but \d+ bytes follow/,
	'the detail says what is wrong');
like($log, qr/applying changes from node "n1", received up to/, 'the context names the peer');

# the launcher starts a new worker, which streams again
ok( $n2->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM ($streaming) s WHERE worker_pid <> $old_pid"),
	'a new worker streams');
cmp_ok($n2->safe_psql('postgres', 'SELECT retries FROM mycelium.replication_peer_state()'),
	'>', $retries, 'the restart is counted in retries');

# nothing lost, nothing applied twice, and it goes on
$n1->safe_psql('postgres',
	"INSERT INTO t SELECT g, 'c' || g FROM generate_series($next, $next + 99) g");
$next += 100;
$n1->safe_psql('postgres', "UPDATE t SET v = v || '!' WHERE id % 7 = 0");
my $want = $next - 1;
ok($n2->poll_query_until('postgres', "SELECT count(*) = $want FROM t"),
	"all $want rows on n2");
ok($n1->safe_psql('postgres', 'SELECT mycelium.wait_for_sync()') eq 't', 'n1 in sync');
is($n2->safe_psql('postgres', "SELECT mycelium.table_checksum('t')"),
	$n1->safe_psql('postgres', "SELECT mycelium.table_checksum('t')"),
	'checksums equal');
is($n2->safe_psql('postgres', 'SELECT count(DISTINCT id) = count(*) FROM t'), 't',
	'no row twice');

# the server did not crash or restart
is($n2->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
	'the postmaster did not restart');
$log = slurp_file($n2->logfile, $log_offset);
unlike($log, qr/terminated by signal|server process .* was terminated|all server processes terminated/,
	'no backend crashed');
like($log, qr/exited with exit code 1/, 'the worker exited with code 1');

$_->stop for ($n1, $n2);
done_testing();
