# Peer replication of one large transaction: a single INSERT of ROWS rows
# (1,000,000 by default; MYCELIUM_LARGE_TXN_ROWS overrides it) on n1
# reaches n2 as one transaction, within a time bound, while the memory of
# n2's apply worker stays bounded: it applies each change as it arrives,
# nothing of the transaction is buffered (the sender's reorder buffer
# spills to disk beyond logical_decoding_work_mem).  Measured: the
# worker's private resident memory (RssAnon in /proc, sampled every
# second) and its memory contexts (pg_log_backend_memory_contexts).
# Takes about a minute on a 2-core machine.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use MyceliumMesh;

my $rows = $ENV{MYCELIUM_LARGE_TXN_ROWS} // 1_000_000;
my $bound_secs = 600;    # the whole replication must finish within this
my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n"
  . "max_wal_size = '2GB'\nlogical_decoding_work_mem = '64MB'\n";
my $mesh = MyceliumMesh->new(nodes => 2, conf => $conf);
my ($n1, $n2) = $mesh->nodes;

for my $n ($n1, $n2)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
	$n->safe_psql('postgres',
		'CREATE TABLE big (id bigint PRIMARY KEY, v text, n int);'
		  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('big')");
}
my $streaming = "SELECT worker_pid FROM mycelium.replication_peer_state() "
  . "WHERE status = 'streaming' AND worker_pid IS NOT NULL";
ok($n2->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($streaming) s"),
	'n2 streams from n1');
my $pid = $n2->safe_psql('postgres', $streaming);
my $applied = $n2->safe_psql('postgres',
	'SELECT applied_transactions FROM mycelium.replication_peer_state()');

# rss_anon_kb($pid): private resident memory of a process (kB), or undef
sub rss_anon_kb
{
	my ($p) = @_;
	open(my $fh, '<', "/proc/$p/status") or return undef;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+) kB/;
	}
	return undef;
}
my $rss_before = rss_anon_kb($pid);

my $t0 = time;
$n1->safe_psql('postgres',
	"INSERT INTO big SELECT g, md5(g::text), g % 1000 FROM generate_series(1, $rows) g");
my $t_commit = time;

# wait (bounded) for the rows, sampling the worker's memory every second
# and logging its memory contexts every 10 s
my $log_offset = -s $n2->logfile;
my ($rss_max, $count, $ticks) = ($rss_before // 0, 0, 0);
while (time - $t0 < $bound_secs)
{
	my $rss = rss_anon_kb($pid);
	$rss_max = $rss if defined $rss && $rss > $rss_max;
	$n2->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)")
	  if $ticks++ % 10 == 5;
	$count = $n2->safe_psql('postgres', 'SELECT count(*) FROM big');
	last if $count == $rows;
	sleep(1);
}
my $t_done = time;
is($count, $rows, "$rows rows of one transaction reach n2");
cmp_ok($t_done - $t0, '<', $bound_secs, "within $bound_secs s");
is($n2->safe_psql('postgres', 'SELECT applied_transactions FROM mycelium.replication_peer_state()'),
	$applied + 1, 'as one transaction');
is($n2->safe_psql('postgres', $streaming), $pid, 'by the same worker, without a restart');

# memory: the worker's private RSS grew by far less than the data
my $data_kb = int($n1->safe_psql('postgres', "SELECT pg_table_size('big')") / 1024);
my @totals = (slurp_file($n2->logfile, $log_offset) =~ /Grand total: (\d+) bytes/g);
my $ctx_max = 0;
for (@totals) { $ctx_max = $_ if $_ > $ctx_max; }
diag(sprintf('large transaction: %d rows, %.1f s insert on n1, %.1f s until on n2 '
		  . '(%.0f rows/s); apply worker RssAnon %d kB before, %d kB max; '
		  . 'memory contexts max %d kB in %d samples; table %d kB',
		$rows, $t_commit - $t0, $t_done - $t0, $rows / ($t_done - $t_commit + 0.001),
		$rss_before // -1, $rss_max, $ctx_max / 1024, scalar(@totals), $data_kb));
cmp_ok($rss_max - ($rss_before // 0), '<', 64 * 1024,
	'apply worker private memory grows by less than 64 MB');
ok(@totals > 0, 'memory contexts were logged during the apply');
cmp_ok($ctx_max, '<', 32 * 1024 * 1024, 'its memory contexts stay under 32 MB');

is($n2->safe_psql('postgres', "SELECT mycelium.table_checksum('big')"),
	$n1->safe_psql('postgres', "SELECT mycelium.table_checksum('big')"),
	'checksums equal');

$_->stop for ($n1, $n2);
done_testing();
