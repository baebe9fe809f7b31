# Chaos test of distributed transactions: concurrent bank transfers between
# accounts of a table distributed over 3 nodes, each from a random node,
# while nodes are killed with pg_ctl -m immediate and restarted at random
# moments (bounded in count and time).  Afterwards, once recovery has run:
# the total is unchanged seen from every node, every account's balance is
# what the logged transfers say (no partial transfer), every transfer a
# client saw commit is there, none a client saw fail is, and no prepared
# transaction or commit record is left.  Half the transfers run with
# mycelium.synchronous_commit_prepared = off.
#
# CHAOS_SEED=<n> replays a run's random choices (the seed is printed).
use strict;
use warnings;

use POSIX ();
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use MyceliumMesh;

my $seed = $ENV{CHAOS_SEED} // int(rand(1_000_000));
note "chaos seed: $seed";
srand($seed);

my $accounts = 24;
my $clients = 4;
my $chaos_secs = 20;
my $max_per_client = 400;
my $kills = 4;

my $mesh = MyceliumMesh->new(nodes => 3,
	conf => "mycelium.recovery_interval = '1s'\n"
	  . "mycelium.deadlock_detection_interval = '500ms'\n"
	  . "mycelium.connect_attempts = 1\n"
	  . "mycelium.prepare_timeout = '5s'\n");
my @nodes = $mesh->nodes;
my $n1 = $nodes[0];

$n1->safe_psql('postgres', qq{
	CREATE TABLE accounts (id int PRIMARY KEY, bal bigint NOT NULL);
	CREATE TABLE transfers (tid bigint PRIMARY KEY, src int, dst int, amount int);
	SELECT mycelium.create_distributed_table('accounts', 'id', shard_count => 6);
	SELECT mycelium.create_distributed_table('transfers', 'tid', shard_count => 6);
	INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, $accounts) g;
});
is($n1->safe_psql('postgres', 'SELECT count(DISTINCT node_name) FROM mycelium.shards'), '3',
	'the shards are on all three nodes');
my $total = 1000 * $accounts;

# client($i): make transfers from random nodes until the time or count
# runs out; log "tid committed|failed|unknown" per transfer
my $logdir = PostgreSQL::Test::Utils::tempdir();
my $end = time + $chaos_secs;
my @pids;
for my $c (1 .. $clients)
{
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		srand($seed + $c);
		open my $log, '>', "$logdir/client$c" or POSIX::_exit(1);
		$log->autoflush(1);
		for (my $i = 1; $i <= $max_per_client && time < $end; $i++)
		{
			my $node = $nodes[ int(rand(@nodes)) ];
			my $tid = $c * 100000 + $i;
			my $src = 1 + int(rand($accounts));
			my $dst = 1 + int(rand($accounts));
			$dst = $dst % $accounts + 1 if $dst == $src;
			my $amount = 1 + int(rand(50));
			# half the transfers answer once decided, before COMMIT PREPARED
			my $early = rand() < 0.5 ? "SET LOCAL mycelium.synchronous_commit_prepared = off;\n" : '';
			my $sql = "BEGIN;\nSET LOCAL statement_timeout = '8s';\n$early"
			  . "UPDATE accounts SET bal = bal - $amount WHERE id = $src;\n"
			  . "UPDATE accounts SET bal = bal + $amount WHERE id = $dst;\n"
			  . "INSERT INTO transfers VALUES ($tid, $src, $dst, $amount);\nCOMMIT;\n";
			my ($out, $err) = ('', '');
			my @cmd = ('timeout', '20', 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
				'-h', $node->host, '-p', $node->port, '-d', 'postgres', '-f', '-');
			# psql may exit before reading its input (its node is down):
			# the broken pipe must not kill this child, whose death would
			# run the parent's END blocks and stop every node
			my $rc = eval { IPC::Run::run(\@cmd, '<', \$sql, '>', \$out, '2>', \$err); 1 } ? $? >> 8 : 255;
			# 0: COMMIT answered; 3: an ERROR (the transaction rolled
			# back), except 08007 (a keeper that never answered: committed
			# everywhere or nowhere); anything else (connection lost,
			# timeout): unknown
			my $status = $rc == 0 ? 'committed'
			  : $rc == 3 && $err !~ /could not learn whether/ ? 'failed' : 'unknown';
			print $log "$tid $status\n";
			sleep(0.2) if $rc != 0 && $rc != 3;	# its node is down
		}
		close $log;
		POSIX::_exit(0);	# never run the parent's END blocks
	}
	push @pids, $pid;
}

# chaos: kill a random node at a random moment, restart it a moment later
my $killed = 0;
while (time < $end - 2 && $killed < $kills)
{
	sleep(0.5 + rand(3));
	my $victim = $nodes[ int(rand(@nodes)) ];
	note 'killing ' . $victim->name;
	$victim->stop('immediate');
	sleep(rand(2));
	$victim->start;
	$killed++;
}
waitpid($_, 0) for @pids;
ok($killed >= 1, "$killed nodes killed and restarted during the transfers");

# recovery: every node's worker runs every second; also run it by hand
my $deadline = time + 60;
my $clean = 0;
while (time < $deadline)
{
	$_->psql('postgres', 'SELECT mycelium.recover_prepared_transactions()') for @nodes;
	my $left = 0;
	$left += $_->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM pg_prepared_xacts) + (SELECT count(*) FROM mycelium.commit_record)')
	  for @nodes;
	if ($left == 0)
	{
		$clean = 1;
		last;
	}
	sleep(0.5);
}
ok($clean, 'no prepared transaction and no commit record left after recovery');

# what the clients saw
my (%status, %count);
for my $c (1 .. $clients)
{
	open my $fh, '<', "$logdir/client$c" or die "no log of client $c";
	while (<$fh>)
	{
		my ($tid, $st) = split;
		$status{$tid} = $st;
		$count{$st}++;
	}
}
note sprintf('transfers: %d committed, %d failed, %d unknown',
	map { $count{$_} // 0 } qw(committed failed unknown));
ok(($count{committed} // 0) > 50, 'transfers committed during the chaos');

for my $n (@nodes)
{
	is($n->safe_psql('postgres', 'SELECT sum(bal) FROM accounts'), $total,
		$n->name . ': the total is unchanged');
}
my %present = map { $_ => 1 } split /\n/, $n1->safe_psql('postgres', 'SELECT tid FROM transfers');
my @lost = grep { $status{$_} eq 'committed' && !$present{$_} } keys %status;
my @ghost = grep { $status{$_} eq 'failed' && $present{$_} } keys %status;
is(scalar(@lost), 0, 'every transfer a client saw commit is there') or diag "lost: @lost";
is(scalar(@ghost), 0, 'no transfer a client saw fail is there') or diag "ghosts: @ghost";

# no partial transfer: each balance is what the logged transfers make it
my %want = map { $_ => 1000 } 1 .. $accounts;
for (split /\n/, $nodes[1]->safe_psql('postgres', 'SELECT src, dst, amount FROM transfers'))
{
	my ($src, $dst, $amount) = split /\|/;
	$want{$src} -= $amount;
	$want{$dst} += $amount;
}
my @wrong;
for (split /\n/, $nodes[2]->safe_psql('postgres', 'SELECT id, bal FROM accounts'))
{
	my ($id, $bal) = split /\|/;
	push @wrong, "$id: $bal (want $want{$id})" if $bal != $want{$id};
}
is(scalar(@wrong), 0, 'every balance matches the logged transfers: no partial transfer')
  or diag "@wrong";

done_testing();
