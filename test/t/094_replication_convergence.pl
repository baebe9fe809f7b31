# Convergence under random concurrent writes of the same keys: three peers
# each run a writer of random single-statement transactions on 40 hot keys
# -- UPDATE of values, DELETE, re-INSERT, and UPDATEs that change the
# primary key (a unique violation is skipped) -- while each node's apply of
# each peer is paused and resumed at random, so that nodes receive
# concurrent changes in different orders, and changes of a row before an
# earlier change of it that travels through the third node.  Once all is
# applied, every node holds the same rows (equal checksums): every conflict
# was settled alike everywhere.  All bounded: 300 transactions per writer,
# at most 40 pause rounds in at most 60 s.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n";
my $mesh = MyceliumMesh->new(nodes => 3, conf => $conf);
my @nodes = $mesh->nodes;
my ($n1, $n2, $n3) = @nodes;
for my $n (@nodes)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
}

$n1->safe_psql('postgres', 'CREATE TABLE hot (id int PRIMARY KEY, v text, n int)');
$n1->safe_psql('postgres', "INSERT INTO hot SELECT g, 'init', 0 FROM generate_series(1, 40) g");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('hot')");
for my $n (@nodes)
{
	ok($n->poll_query_until('postgres',
			"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
			  . "FROM mycelium.replication_peer_state()"),
		$n->name . ' streams from both peers');
}

# the writers: one random statement per transaction on keys 1..40
my $per_node = 300;
my @runs;
for my $i (1 .. 3)
{
	my $n = $nodes[ $i - 1 ];
	my ($out, $err) = ('', '');
	my $name = $n->name;
	push @runs, [
		$n,
		IPC::Run::start(
			[
				$n->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $n->connstr('postgres'), '-c',
				"DO \$\$DECLARE r float8; k int; k2 int; BEGIN FOR i IN 1..$per_node LOOP "
				  . "r := random(); k := 1 + floor(random() * 40); k2 := 1 + floor(random() * 40); "
				  . "BEGIN "
				  . "IF r < 0.4 THEN UPDATE hot SET v = '$name-' || i, n = n + 1 WHERE id = k; "
				  . "ELSIF r < 0.6 THEN DELETE FROM hot WHERE id = k; "
				  . "ELSIF r < 0.8 THEN INSERT INTO hot VALUES (k, '$name-new-' || i, 0) ON CONFLICT (id) DO NOTHING; "
				  . "ELSE UPDATE hot SET id = k2, v = '$name-moved-' || i WHERE id = k; "
				  . "END IF; "
				  . "EXCEPTION WHEN unique_violation THEN NULL; END; "
				  . "COMMIT; PERFORM pg_sleep(0.003); END LOOP; END\$\$"
			],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	];
}

# meanwhile: pause and resume single links at random
my $t0 = time;
my $rounds = 0;
my %paused;
for my $round (1 .. 40)
{
	last if time - $t0 > 60;
	last if !grep { $_->[1]->pumpable } @runs;
	my $n = $nodes[ int(rand(3)) ];
	my @peers = grep { $_->name ne $n->name } @nodes;
	my $peer = $peers[ int(rand(2)) ]->name;
	my $key = $n->name . '/' . $peer;
	my $f = $paused{$key} ? 'resume_replication' : 'pause_replication';
	$n->safe_psql('postgres', "SELECT mycelium.$f('$peer')");
	$paused{$key} = !$paused{$key};
	$rounds++;
	usleep(250_000);
}
ok($rounds >= 5, "links were paused and resumed $rounds times while the writers ran");
ok($_->[1]->finish, $_->[0]->name . ' ran its transactions') for @runs;

$_->safe_psql('postgres', 'SELECT mycelium.resume_replication()') for @nodes;
for my $n (@nodes)
{
	is($n->safe_psql('postgres', "SELECT mycelium.wait_for_sync('120s')"), 't',
		$n->name . ' is in sync');
}
my @sums = map { $_->safe_psql('postgres', "SELECT mycelium.table_checksum('hot')") } @nodes;
ok($sums[0] eq $sums[1] && $sums[1] eq $sums[2], "the three nodes converge (@sums)")
  or diag(join("\n", map { $_->name . ': ' . $_->safe_psql('postgres',
				"SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM hot") } @nodes));
my @conflicts = map { $_->safe_psql('postgres', 'SELECT count(*) FROM mycelium.conflicts') } @nodes;
ok((grep { $_ > 0 } @conflicts) > 0, "the concurrent writes met as conflicts (@conflicts)");
for my $n (@nodes)
{
	ok(!$n->log_contains(qr/server process .* was terminated by signal|PANIC/),
		$n->name . ' never crashed');
}

done_testing();
