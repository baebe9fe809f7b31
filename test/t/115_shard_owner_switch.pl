# Sharding by a table owner that is not a superuser, colocation after a
# split across nodes, draining and re-activating a node, and statements
# routed while shards move and split: they wait and then reach the new
# placement, so no client sees an error or a wrong answer.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;
my %by_name = (n1 => $n1, n2 => $n2, n3 => $n3);

sub q1
{
	my ($node, $sql, @o) = @_;
	return $node->safe_psql('postgres', $sql, @o);
}

# fails($node, $sql, $user): the verbose error text of a statement that
# must fail (run as $user when given)
sub fails
{
	my ($node, $sql, $user) = @_;
	my @params = ('-v', 'VERBOSITY=verbose');
	push @params, '-U', $user if $user;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => \@params);
	return $rc == 0 ? "unexpected success: $out" : $err;
}

my $catalog_sql =
    "SELECT string_agg(format('%s %s %s %s %s', table_name, shard_id, min_value, max_value, node_name), "
  . "E'\\n' ORDER BY shard_id) FROM mycelium.shard";
sub catalog_same_everywhere
{
	my ($what) = @_;
	my %seen = map { q1($_, $catalog_sql) => 1 } $mesh->nodes;
	is(scalar(keys %seen), 1, "$what: the shard catalog is identical on every node");
}

# --- an owner that is not a superuser ---
q1($_, 'CREATE ROLE alice LOGIN; CREATE ROLE mallory LOGIN') for $mesh->nodes;
q1($n1, q{
	CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL DEFAULT 0 CHECK (n >= 0));
	INSERT INTO acct SELECT g, 0 FROM generate_series(1, 600) g;
	ALTER TABLE acct OWNER TO alice;
	CREATE TABLE acct_log (id int, note text);
	INSERT INTO acct_log SELECT g, 'x' FROM generate_series(1, 600, 2) g;
	ALTER TABLE acct_log OWNER TO alice;
	CREATE TABLE codes (c text PRIMARY KEY);
	INSERT INTO codes VALUES ('a'), ('b');
	ALTER TABLE codes OWNER TO alice;
});
my @alice = (extra_params => [ '-U', 'alice' ]);
q1($n1, "SELECT mycelium.create_distributed_table('acct', 'id', shard_count => 6)", @alice);
q1($n1, "SELECT mycelium.create_distributed_table('acct_log', 'id', colocate_with => 'acct')", @alice);
q1($n1, "SELECT mycelium.create_reference_table('codes')", @alice);
ok(1, 'the owner distributes its tables and makes one a reference table');
is(join(' ', map { q1($_, "SELECT count(*) FILTER (WHERE pg_get_userbyid(c.relowner) = 'alice') || '/' || count(*) "
			  . "FROM mycelium.shard s JOIN pg_class c ON c.relname = s.shard_name AND c.relnamespace = 'public'::regnamespace") }
		$mesh->nodes),
	join(' ', map { my $k = q1($n1, "SELECT count(*) FROM mycelium.shard WHERE node_name = '" . $_->name . "'"); "$k/$k" }
		$mesh->nodes),
	'every shard on every node belongs to the owner');
is(q1($n3, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'codes'"), 'alice',
	'and so does the reference table\'s copy');
is(q1($n2, 'SELECT count(*), sum(n) FROM acct', @alice), '600|0', 'the owner reads its rows from another node');
catalog_same_everywhere('after distributing as the owner');

like(fails($n2, "SELECT mycelium.move_shard((SELECT min(shard_id) FROM mycelium.shard), 'n3')",
		'mallory'),
	qr/42501: must be owner of table public.acct to move its shards/, 'another role cannot move: 42501');
like(fails($n2, "SELECT mycelium.undistribute_table('acct')", 'mallory'),
	qr/42501: must be owner of table acct/, 'nor undistribute: 42501');
like(fails($n2, "SELECT mycelium.create_distributed_table('codes', 'c')", 'mallory'),
	qr/42501/, 'nor distribute: 42501');
like(fails($n2, "SELECT mycelium.drain_node('n3')", 'alice'), qr/42501/, 'the owner cannot drain a node: 42501');
like(fails($n2, "SELECT * FROM mycelium.rebalance()", 'alice'), qr/42501: permission denied to rebalance/,
	'nor rebalance every table: 42501');
like(fails($n2, "BEGIN; SELECT count(*) FROM acct; SELECT mycelium.move_shard((SELECT min(shard_id) FROM mycelium.shard), 'n3')",
		'alice'),
	qr/25001: cannot move shards in a transaction that has already used other nodes/,
	'an owner moves shards in a transaction of its own');

# the owner splits and moves: colocated shards split together, on the same
# node, and every row is still found by key and by a colocated join
my ($s, $snode) = split /\|/, q1($n1, "SELECT shard_id, node_name FROM mycelium.shard "
	  . "WHERE table_name = 'acct'::regclass ORDER BY min_value::int LIMIT 1");
my ($smin, $smax) = split /\|/, q1($n1, "SELECT min_value, max_value FROM mycelium.shard WHERE shard_id = $s");
my $mid = int(($smin + $smax) / 2);
my $new = q1($n2, "SELECT mycelium.split_shard($s, '$mid')", @alice);
like($new, qr/^\d+$/, 'the owner splits a shard');
is(q1($n1, "SELECT count(DISTINCT (min_value, max_value, node_name)) || ' ' || count(*) FROM mycelium.shard "
	  . "WHERE table_name IN ('acct'::regclass, 'acct_log'::regclass)"), '7 14',
	'the colocated table split at the same point: same ranges on the same nodes');
my ($other) = grep { $_ ne $snode } qw(n1 n2 n3);
q1($n3, "SELECT mycelium.move_shard($new, '$other')", @alice);
is(q1($n1, "SELECT string_agg(DISTINCT node_name, ',') FROM mycelium.shard WHERE min_value = '$mid'"), $other,
	'the owner moves the new shard, with its colocated shard');
is(q1($n2, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'acct_$new'"), 'alice',
	'the moved shard still belongs to the owner') if $other eq 'n2';
q1($n1, "CREATE TABLE acct_more (id int)");
q1($n1, "ALTER TABLE acct_more OWNER TO alice");
q1($n1, "INSERT INTO acct_more SELECT g FROM generate_series(1, 600, 3) g");
q1($n1, "SELECT mycelium.create_distributed_table('acct_more', 'id', colocate_with => 'acct')", @alice);
is(q1($n1, "SELECT count(DISTINCT (min_value, max_value, node_name)) || ' ' || count(*) FROM mycelium.shard "
	  . "WHERE table_name IN ('acct'::regclass, 'acct_log'::regclass, 'acct_more'::regclass)"), '7 21',
	'a table colocated after the split gets the split ranges on the same nodes');
for my $node ($mesh->nodes)
{
	is(q1($node, "SELECT count(*) FROM acct a JOIN acct_log l USING (id) JOIN acct_more m USING (id)"), '100',
		$node->name . ': a join of the colocated tables is right after the split');
	is(q1($node, "SELECT count(*) FROM acct WHERE id IN (1, 2, 3, 300, 599, 600)"), '6',
		$node->name . ': rows are found by key after the split and move');
}
catalog_same_everywhere('after the owner split and moved');

# --- drain, placement while draining, activate ---
is(q1($n1, "SELECT mycelium.drain_node('n3')") > 0, 1, 'n3 drained');
is(q1($n2, "SELECT status FROM mycelium.nodes WHERE node_name = 'n3'"), 'draining', 'n3 is draining');
q1($n1, 'CREATE TABLE later (k int)');
q1($n1, "SELECT mycelium.create_distributed_table('later', 'k', shard_count => 5)");
is(q1($n1, "SELECT count(*) FROM mycelium.shard WHERE node_name = 'n3'"), '0',
	'a table distributed while n3 drains gets no shard on it');
like(fails($n1, "SELECT mycelium.move_shard((SELECT min(shard_id) FROM mycelium.shard), 'n3')"),
	qr/55000: cannot move shards to node "n3" because it is draining/, 'nor does a move');
q1($n2, "SELECT mycelium.activate_node('n3')");
is(join(' ', map { q1($_, "SELECT status FROM mycelium.node WHERE node_name = 'n3'") } $mesh->nodes),
	'active active active', 'activate_node makes n3 active on every node');
my ($rc, $out, $err) = $n1->psql('postgres', "SELECT mycelium.activate_node('n3')");
like($err, qr/NOTICE:  node "n3" is already active/, 'activating an active node is a no-op with a notice');
like(fails($n1, "SELECT mycelium.activate_node('n3')", 'alice'), qr/42501/, 'only superusers activate nodes');
my $moves = q1($n1, "SELECT count(*) FROM mycelium.rebalance('later')");
ok($moves > 0, "rebalance puts shards on n3 again ($moves moves)");
ok(q1($n1, "SELECT count(*) FROM mycelium.shard WHERE node_name = 'n3' AND table_name = 'later'::regclass") > 0,
	'n3 holds shards of later');
catalog_same_everywhere('after draining and activating');

# --- statements routed while shards move and split ---
# three clients on three nodes increment and read keys of every shard
# while the shards of acct move back and forth and one splits; every
# statement must succeed and every read must see its row
my $dir = $PostgreSQL::Test::Utils::tmp_check;
my $keys = 120;
my @clients;
for my $c (1 .. 3)
{
	my $node = $by_name{"n$c"};
	open my $fh, '>', "$dir/client$c.sql" or die $!;
	for my $round (1 .. 25)
	{
		for my $k (map { $c + 3 * $_ } 0 .. 39)	# keys 1..120, disjoint per client
		{
			next unless $k % 5 == $round % 5;
			print $fh "UPDATE acct SET n = n + 1 WHERE id = $k RETURNING 'u';\n";
			print $fh "SELECT 'r' || count(*) FROM acct WHERE id = $k;\n";
		}
		print $fh "SELECT pg_sleep(0.01);\n";
	}
	close $fh;
	push @clients, IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-U', 'alice', '-f', "$dir/client$c.sql" ],
		'>', "$dir/client$c.out", '2>', "$dir/client$c.err");
}
$n1->poll_query_until('postgres', 'SELECT sum(n) >= 30 FROM acct') or die 'the clients did not start';
my @moving = split /\n/, q1($n1, "SELECT shard_id || ' ' || node_name FROM mycelium.shard "
	  . "WHERE table_name = 'acct'::regclass ORDER BY shard_id LIMIT 3");
my $moved = 0;
for my $round (1 .. 2)
{
	for my $m (@moving)
	{
		my ($id) = split / /, $m;
		my $from = q1($n1, "SELECT node_name FROM mycelium.shard WHERE shard_id = $id");
		my ($to) = grep { $_ ne $from } ($round == 1 ? qw(n1 n2 n3) : qw(n3 n2 n1));
		q1($n2, "SELECT mycelium.move_shard($id, '$to')", @alice);
		$moved++;
	}
}
my ($bid, $bmin, $bmax) = split /\|/, q1($n1, "SELECT shard_id, min_value, max_value FROM mycelium.shard "
	  . "WHERE table_name = 'acct'::regclass ORDER BY max_value::bigint - min_value::bigint DESC LIMIT 1");
q1($n3, "SELECT mycelium.split_shard($bid, '" . int(($bmin + $bmax) / 2) . "')", @alice);
q1($n1, "SELECT count(*) FROM mycelium.rebalance('acct')");
$_->finish for @clients;
my ($updates, $reads, $bad_reads, $errors) = (0, 0, 0, '');
for my $c (1 .. 3)
{
	for (split /\n/, slurp_file("$dir/client$c.out"))
	{
		$updates++ if $_ eq 'u';
		$reads++ if /^r/;
		$bad_reads++ if /^r/ && $_ ne 'r1';
	}
	$errors .= slurp_file("$dir/client$c.err");
}
is($errors, '', "no routed statement failed during $moved moves, a split and a rebalance");
is($bad_reads, 0, "every read ($reads) found its row");
is(q1($n1, 'SELECT sum(n) FROM acct'), $updates, "every acknowledged increment ($updates) is there exactly once");
is(q1($n2, 'SELECT count(*) FROM acct'), '600', 'no row lost or duplicated');
catalog_same_everywhere('after moving under load');
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

# --- and the owner undistributes ---
q1($n1, "SELECT mycelium.undistribute_table(t) FROM unnest(ARRAY['acct_more', 'acct_log', 'acct', 'codes']::regclass[]) t",
	@alice);
is(q1($n1, 'SELECT count(*), sum(n) FROM ONLY acct'), "600|$updates", 'the owner undistributes: every row is back');
is(join(' ', map { q1($_, "SELECT count(*) FROM mycelium.dist_table WHERE table_name::text LIKE 'acct%' OR table_name::text = 'codes'") }
		$mesh->nodes), '0 0 0', 'and the metadata is gone everywhere');

done_testing();
