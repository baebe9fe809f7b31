# Chaos: three peers write concurrently (new rows and updates of a few hot
# rows) while their replication links are cut again and again -- walsenders
# and apply workers terminated, replication connections refused by
# pg_hba.conf (reloaded) -- all on 127.0.0.1.  Once the writers stop and the
# links heal, every node holds every row exactly once and the same values
# (equal checksums): conflicts were resolved identically everywhere.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n"
  . "mycelium.peer_timeout = '3s'\n";
my $mesh = MyceliumMesh->new(nodes => 3, conf => $conf);
my @nodes = $mesh->nodes;
my ($n1, $n2, $n3) = @nodes;
my $allow = "hostssl replication all 127.0.0.1/32 cert map=mycelium\n";
my $deny = "hostssl replication all 127.0.0.1/32 reject\n";

# set_replication_hba($node, $line): the node's last pg_hba.conf line
# (the replication rule) becomes $line, then reload
sub set_replication_hba
{
	my ($node, $line) = @_;
	my $file = $node->data_dir . '/pg_hba.conf';
	my $text = slurp_file($file);
	$text =~ s/^hostssl replication all 127\.0\.0\.1\/32 .*\n//mg;
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh $text . $line;
	close($fh);
	$node->reload;
}
set_replication_hba($_, $allow) for @nodes;

$n1->safe_psql('postgres', 'CREATE TABLE ch (id bigint PRIMARY KEY, v text, n int)');
$n1->safe_psql('postgres', "INSERT INTO ch SELECT g, 'hot', 0 FROM generate_series(1, 10) g");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('ch')");
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
			  . "FROM mycelium.replication_peer_state()"),
		$n->name . ' streams from both peers');
}

# three writers: 400 transactions each, a new row and an update of a hot row
my $per_node = 400;
my @runs;
for my $i (1 .. 3)
{
	my $n = $nodes[ $i - 1 ];
	my ($out, $err) = ('', '');
	push @runs, [
		$n,
		IPC::Run::start(
			[
				$n->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $n->connstr('postgres'), '-c',
				"DO \$\$BEGIN FOR i IN 1..$per_node LOOP "
				  . "INSERT INTO ch VALUES ($i * 1000000 + i, 'w$i', i); "
				  . "UPDATE ch SET v = 'n$i-' || i, n = n + 1 WHERE id = 1 + i % 10; COMMIT; "
				  . "PERFORM pg_sleep(0.005); END LOOP; END\$\$"
			],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	];
}

# chaos while they run: at most 40 cuts, at most 60 s
my %blocked;
my $t0 = time;
my $cuts = 0;
for my $round (1 .. 40)
{
	last if time - $t0 > 60;
	last if !grep { $_->[1]->pumpable } @runs;
	my $n = $nodes[ int(rand(3)) ];
	my $what = $round % 3;
	if ($what == 0)
	{
		$n->safe_psql('postgres',
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			  . "WHERE backend_type = 'walsender'");
	}
	elsif ($what == 1)
	{
		$n->safe_psql('postgres',
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			  . "WHERE backend_type = 'mycelium apply'");
	}
	else
	{
		my $name = $n->name;
		set_replication_hba($n, $blocked{$name} ? $allow : $deny);
		$blocked{$name} = !$blocked{$name};
		$n->safe_psql('postgres',
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			  . "WHERE backend_type = 'walsender'");
	}
	$cuts++;
	usleep(300_000);
}
ok($cuts >= 5, "links were cut $cuts times while the writers ran");
ok($_->[1]->finish, $_->[0]->name . ' wrote its rows') for @runs;

# heal
set_replication_hba($_, $allow) for @nodes;
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
			  . "FROM mycelium.replication_peer_state()"),
		$n->name . ' streams again once the links heal');
}
for my $n (@nodes)
{
	is($n->safe_psql('postgres', "SELECT mycelium.wait_for_sync('120s')"), 't',
		$n->name . ' is in sync');
}

my $want = 10 + 3 * $per_node;
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM ch') } @nodes),
	"$want,$want,$want", 'every node holds every row once');
my @sums = map { $_->safe_psql('postgres', "SELECT mycelium.table_checksum('ch')") } @nodes;
ok($sums[0] eq $sums[1] && $sums[1] eq $sums[2], "the three nodes converge (@sums)");
is($n1->safe_psql('postgres', "SELECT count(*) FROM ch WHERE v LIKE 'w%'"), 3 * $per_node,
	'no new row was overwritten');
note('conflicts: '
	  . join(' ', map { $_->safe_psql('postgres', 'SELECT count(*) FROM mycelium.conflicts') } @nodes));
for my $n (@nodes)
{
	ok(!$n->log_contains(qr/server process .* was terminated by signal|PANIC/),
		$n->name . ' never crashed');
}

done_testing();
