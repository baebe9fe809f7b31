# Shard moves, splits, rebalancing and draining across a mesh: a move
# with a concurrent writer loses no acknowledged row and leaves the catalog
# identical everywhere with the old copy gone; every copy path (relayed,
# from the local node, to the local node); colocated shards move and split
# together; bad input fails with its SQLSTATE; a target killed in the middle
# of a copy changes nothing and the move succeeds when retried.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = map { $mesh->node($_) } 1 .. 3;
my %by_name = (n1 => $n1, n2 => $n2, n3 => $n3);

# catalog(): the shard catalog as one string, to compare between nodes
my $catalog_sql =
    "SELECT string_agg(format('%s %s %s %s %s', table_name, shard_id, min_value, max_value, node_name), "
  . "E'\\n' ORDER BY shard_id) FROM mycelium.shard";

sub catalog_same_everywhere
{
	my ($what, @nodes) = @_;
	@nodes = $mesh->nodes unless @nodes;
	my %seen = map { $_->safe_psql('postgres', $catalog_sql) => 1 } @nodes;
	is(scalar(keys %seen), 1, "$what: the shard catalog is identical on every node");
}

sub q1
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# placement($shard_id): the node holding a shard, per n1's catalog
sub placement
{
	my ($id) = @_;
	return q1($n1, "SELECT node_name FROM mycelium.shard WHERE shard_id = $id");
}

# rows($shard_id): count and checksum of a shard table on its node
sub rows
{
	my ($id) = @_;
	my $node = $by_name{ placement($id) };
	my $name = q1($n1, "SELECT shard_name FROM mycelium.shard WHERE shard_id = $id");
	return q1($node, "SELECT count(*) || ' ' || mycelium.table_checksum('public.$name') FROM public.$name");
}

# exists_on($node, $shard_name): whether the shard table exists there
sub exists_on
{
	my ($node, $name) = @_;
	return q1($node, "SELECT to_regclass('public.$name') IS NOT NULL") eq 't';
}

q1($n1, "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x', n int)");
q1($n1, "INSERT INTO items SELECT i, 'row ' || i, i % 7 FROM generate_series(1, 2000) i");
q1($n1, "SELECT mycelium.create_distributed_table('items', 'id', shard_count => 6)");
q1($n1, "CREATE TABLE details (id int, note text)");
q1($n1, "INSERT INTO details SELECT i, 'note ' || i FROM generate_series(1, 2000, 3) i");
q1($n1, "SELECT mycelium.create_distributed_table('details', 'id', shard_count => 6, colocate_with => 'items')");
catalog_same_everywhere('after distributing');

# the shard of items at index $i (by hash range) and its colocated details shard
sub shard_at
{
	my ($table, $i) = @_;
	return q1($n1, "SELECT shard_id FROM mycelium.shard WHERE table_name = '$table'::regclass "
		  . "ORDER BY min_value::int OFFSET $i LIMIT 1");
}

# --- a move relayed by a third node, with a writer on the source ---
my $s = q1($n1, "SELECT shard_id FROM mycelium.shard WHERE table_name = 'items'::regclass "
	  . "AND node_name = 'n1' ORDER BY shard_id LIMIT 1");
my $s_name = "items_$s";
my $idx = q1($n1, "SELECT count(*) FROM mycelium.shard WHERE table_name = 'items'::regclass "
	  . "AND min_value::int < (SELECT min_value::int FROM mycelium.shard WHERE shard_id = $s)");
my $d = shard_at('details', $idx);
is(placement($d), 'n1', 'the colocated details shard is on the same node');
my $d_before = rows($d);

my @ids = split /,/, q1($n1, "SELECT string_agg(i::text, ',') FROM (SELECT i FROM generate_series(100001, 140000) i "
	  . "WHERE mycelium.shard_for('items', i) = $s LIMIT 300) x");
is(scalar(@ids), 300, 'found new keys of the moving shard');
my $script = join '', map { "INSERT INTO public.$s_name (id, v) VALUES ($_, 'w') RETURNING id;\nSELECT pg_sleep(0.01);\n" } @ids;
# files, not scalars: IPC::Run only feeds and drains scalars while pumped
my $dir = $PostgreSQL::Test::Utils::tmp_check;
open my $fh, '>', "$dir/writer.sql" or die $!;
print $fh $script;
close $fh;
my $writer = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $n1->connstr('postgres'), '-f', "$dir/writer.sql" ],
	'>', "$dir/writer.out", '2>', "$dir/writer.err");
$n1->poll_query_until('postgres', "SELECT count(*) >= 20 FROM public.$s_name WHERE v = 'w'")
  or die 'the writer did not start: ' . slurp_file("$dir/writer.err");
q1($n3, "SELECT mycelium.move_shard($s, 'n2')");
$writer->finish;
my $w_out = slurp_file("$dir/writer.out");
my $w_err = slurp_file("$dir/writer.err");
my @acked = grep { /^\d+$/ } split /\n/, $w_out;
ok(@acked >= 20, 'the writer committed rows before the move (' . scalar(@acked) . ')');
like($w_err, qr/does not exist|could not open relation/, 'writes to the old copy fail once it is gone');
is(placement($s), 'n2', 'the shard is on n2');
is(placement($d), 'n2', 'its colocated shard moved with it');
is(q1($n2, "SELECT count(*) FROM public.$s_name WHERE id IN (" . join(',', @acked) . ")"),
	scalar(@acked), 'every acknowledged write is in the moved shard');
is(q1($n2, "SELECT count(*) FROM public.$s_name WHERE v = 'w'"), scalar(@acked),
	'and nothing else was written');
ok(!exists_on($n1, $s_name), 'the old copy is dropped');
ok(!exists_on($n1, "details_$d"), 'the old colocated copy is dropped');
is(rows($d), $d_before, 'the colocated shard kept its rows');
catalog_same_everywhere('after a relayed move');
my $after = q1($n1, "SELECT i FROM generate_series(140001, 200000) i WHERE mycelium.shard_for('items', i) = $s LIMIT 1");
q1($n2, "INSERT INTO public.$s_name (id, v) VALUES ($after, 'after')");
ok(1, 'the moved shard takes writes on its new node');

# --- the source is the local node, then the target is ---
my $before = rows($s);
q1($n2, "SELECT mycelium.move_shard($s, 'n3')");
is(placement($s), 'n3', 'moved from the local node');
is(rows($s), $before, 'rows and checksum kept (local source)');
ok(!exists_on($n2, $s_name), 'old copy gone (local source)');
q1($n1, "SELECT mycelium.move_shard($s, 'n1')");
is(placement($s), 'n1', 'moved to the local node');
is(rows($s), $before, 'rows and checksum kept (local target)');
ok(!exists_on($n3, $s_name), 'old copy gone (local target)');
catalog_same_everywhere('after local moves');
is(q1($n1, 'SELECT count(*) FROM pg_prepared_xacts'), '0', 'nothing left prepared');

# --- two moves off one node in one transaction: the second copies under a
# lock (a logical slot cannot be created where the transaction already wrote) ---
my @two = split /\n/, q1($n1, "SELECT shard_id FROM mycelium.shard WHERE table_name = 'items'::regclass "
	  . "AND node_name = 'n2' ORDER BY shard_id LIMIT 2");
if (@two == 2)
{
	my %before = map { $_ => rows($_) } @two;
	q1($n3, "BEGIN; SELECT mycelium.move_shard($two[0], 'n1'); SELECT mycelium.move_shard($two[1], 'n3'); COMMIT");
	is(placement($two[0]) . ' ' . placement($two[1]), 'n1 n3', 'two moves in one transaction');
	is(rows($_), $before{$_}, "shard $_ kept its rows (online, then locked copy)") for @two;
	ok(!exists_on($n2, "items_$_"), "old copy of $_ dropped") for @two;
	catalog_same_everywhere('after two moves in one transaction');
	q1($n1, "BEGIN; SELECT mycelium.move_shard($two[0], 'n2'); SELECT mycelium.move_shard($two[1], 'n2'); COMMIT");
	is(placement($two[0]) . ' ' . placement($two[1]), 'n2 n2', 'and back');
}
else
{
	fail('n2 holds two shards of items');
}

# --- bad input ---
my ($ret, $out, $err);
$ret = $n1->psql('postgres', "SELECT mycelium.move_shard(42, 'n2')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42704: shard 42 does not exist/, 'unknown shard: 42704');
$n1->psql('postgres', "SELECT mycelium.move_shard($s, 'n9')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42704: node "n9" is not a member/, 'unknown node: 42704');
$n1->psql('postgres', "SELECT mycelium.move_shard($s, NULL)", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22004/, 'NULL target: 22004');
($ret, $out, $err) = $n1->psql('postgres', "SELECT mycelium.move_shard($s, 'n1')");
like($err, qr/already on node "n1"/, 'moving to the node that holds it is a no-op with a notice');
q1($n1, "CREATE ROLE mallory LOGIN");
$n1->psql('postgres', "SET ROLE mallory; SELECT mycelium.move_shard($s, 'n2')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42501: must be owner of table/, 'a role that does not own the table cannot move: 42501');
$n1->psql('postgres', "SET ROLE mallory; SELECT mycelium.split_shard($s, '0')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42501: must be owner of table/, 'nor split: 42501');
$n1->psql('postgres', "SET ROLE mallory; SELECT mycelium.drain_node('n2')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42501/, 'nor drain a node: 42501');
for my $bad ('abc', '', '99999999999', '1.5')
{
	$n1->psql('postgres', "SELECT mycelium.split_shard($s, '$bad')", stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/22023: invalid split point/, "split point '$bad': 22023");
}
my ($smin, $smax) = split /\|/, q1($n1, "SELECT min_value, max_value FROM mycelium.shard WHERE shard_id = $s");
$n1->psql('postgres', "SELECT mycelium.split_shard($s, '$smin')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22023: invalid split point/, 'split at the lower bound: 22023');
$n1->psql('postgres', "SELECT mycelium.split_shard($s, '" . ($smax + 1) . "')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ])
  if $smax < 2147483647;
like($err, qr/22023: invalid split point/, 'split above the upper bound: 22023');

# a target that is down: a clear error, nothing changes
$n3->stop('immediate');
$n1->psql('postgres', "SELECT mycelium.move_shard($s, 'n3')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/08006: could not connect to node "n3"/, 'target down: 08006 naming the node');
is(placement($s), 'n1', 'the shard stayed');
$n3->start;
catalog_same_everywhere('after the refused moves');

# --- split (hash): the shard and its colocated shard split at one point ---
my $mid = int(($smin + $smax) / 2);
my $items_before = q1($n1, "SELECT count(*) FROM public.$s_name");
my $new = q1($n2, "SELECT mycelium.split_shard($s, '$mid')");
like($new, qr/^\d+$/, 'split_shard returns the new shard id');
is(q1($n1, "SELECT min_value || ' ' || max_value || ' ' || node_name FROM mycelium.shard WHERE shard_id = $new"),
	"$mid $smax n1", 'the new shard covers the upper part, on the same node');
is(q1($n1, "SELECT max_value FROM mycelium.shard WHERE shard_id = $s"), $mid - 1,
	'the old shard keeps the lower part');
is(q1($n1, "SELECT (SELECT count(*) FROM public.$s_name) + (SELECT count(*) FROM public.items_$new)"),
	$items_before, 'no row lost or duplicated');
is(q1($n1, "SELECT count(*) FROM public.items_$new WHERE mycelium.shard_for('items', id) <> $new"),
	'0', 'every row of the new shard belongs to it');
is(q1($n1, "SELECT count(*) FROM public.$s_name WHERE mycelium.shard_for('items', id) <> $s"),
	'0', 'every row left in the old shard belongs to it');
is(q1($n1, "SELECT count(*) FROM mycelium.shard WHERE table_name = 'details'::regclass "
	  . "AND min_value = '$mid' AND node_name = 'n1'"), '1', 'the colocated shard split at the same point');
is(q1($n1, "SELECT count(*) FROM details WHERE false") , '0', 'the shell table is still fine');
catalog_same_everywhere('after a split');

# --- split and move (range) ---
q1($n1, "CREATE TABLE events (day date, what text)");
q1($n1, "SELECT mycelium.create_distributed_table('events', 'day', 'range')");
my $r = q1($n1, "SELECT mycelium.add_range_shard('events', '2024-01-01', '2024-03-01', 'n2')");
q1($n2, "INSERT INTO public.events_$r SELECT d, 'e' FROM generate_series('2024-01-01'::date, '2024-02-29', '1 day') d");
for my $bad ('2024-01-01', '2024-03-01', '2025-01-01', 'someday')
{
	$n1->psql('postgres', "SELECT mycelium.split_shard($r, '$bad')", stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/22023: invalid split point/, "range split point '$bad': 22023");
}
my $r2 = q1($n1, "SELECT mycelium.split_shard($r, '2024-02-01')");
is(q1($n1, "SELECT string_agg(min_value || ' ' || max_value || ' ' || node_name, ', ' ORDER BY shard_id) "
	  . "FROM mycelium.shard WHERE table_name = 'events'::regclass"),
	'2024-01-01 2024-02-01 n2, 2024-02-01 2024-03-01 n2', 'a range shard splits into [lower, point) and [point, upper)');
is(q1($n2, "SELECT (SELECT count(*) FROM public.events_$r WHERE day < '2024-02-01') || ' ' || "
	  . "(SELECT count(*) FROM public.events_$r) || ' ' || (SELECT count(*) FROM public.events_$r2 WHERE day >= '2024-02-01')"),
	'31 31 29', 'rows of a range shard go to the half that covers them');
q1($n3, "SELECT mycelium.move_shard($r2, 'n3')");
is(q1($n3, "SELECT count(*) FROM public.events_$r2"), '29', 'a range shard moves');
is(placement($r), 'n2', 'without its neighbour (range tables are not colocated)');
catalog_same_everywhere('after splitting and moving a range shard');

# --- a target killed in the middle of a copy ---
q1($n1, "CREATE TABLE big (id int PRIMARY KEY, pad text)");
q1($n1, "SELECT mycelium.create_distributed_table('big', 'id', shard_count => 1)");
my $b = q1($n1, "SELECT shard_id || ' ' || node_name FROM mycelium.shard WHERE table_name = 'big'::regclass");
my ($bid, $bnode) = split / /, $b;
my $src = $by_name{$bnode};
my ($tname) = grep { $_ ne $bnode && $_ ne 'n1' } qw(n2 n3);
$tname //= 'n2';
my $tgt = $by_name{$tname};
q1($src, "INSERT INTO public.big_$bid SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 300000) i");
my $big_before = rows($bid);

# a move cancelled in the middle of its copy changes nothing
$n1->psql('postgres', "SET statement_timeout = '300ms'; SELECT mycelium.move_shard($bid, '$tname')",
	stderr => \$err, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/57014/, 'a move cancelled by statement_timeout fails with 57014');
is(placement($bid), $bnode, 'the cancelled move left the shard on its source');
is(rows($bid), $big_before, 'with all its rows');
# (replication objects the cancel left, if it struck mid-command, are
# removed by the next move of the shard: checked after it below)
catalog_same_everywhere('after a cancelled move');
# while the rows are copied (logical replication), the moving shard stays
# readable and writable on its source; the writes made meanwhile arrive
my $syncing = "SELECT count(*) > 0 FROM pg_stat_progress_copy";
my $mover0 = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $n1->connstr('postgres'), '-c', "SELECT mycelium.move_shard($bid, '$tname')" ],
	'>', "$dir/online.out", '2>', "$dir/online.err");
$tgt->poll_query_until('postgres', $syncing) or die 'the copy did not start';
is(q1($src, "SET lock_timeout = '5s'; SELECT count(*) FROM public.big_$bid"), '300000',
	'reads of the moving shard go on during the copy');
q1($src, "SET lock_timeout = '1s'; INSERT INTO public.big_$bid VALUES (0, 'during the copy')");
ok(1, 'writes to the moving shard go on during the copy');
$mover0->finish;
is(slurp_file("$dir/online.err"), '', 'the move succeeds');
is(placement($bid), $tname, 'the shard moved');
is(q1($tgt, "SELECT count(*) FROM public.big_$bid"), '300001', 'with the rows written during the copy');
is(q1($tgt, "SELECT count(*) FROM pg_subscription"), '0', 'no subscription is left on the target');
is(q1($src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'mycelium_move%'")
	  . q1($src, "SELECT count(*) FROM pg_publication"), '00', 'no slot or publication is left on the source');
ok(!exists_on($src, "big_$bid"), 'the old copy is dropped');
# back to where it was for the crash test
q1($tgt, "DELETE FROM public.big_$bid WHERE id = 0");
q1($n1, "SELECT mycelium.move_shard($bid, '$bnode')");
is(placement($bid), $bnode, 'and moves back');
$big_before = rows($bid);

my $mover = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $n1->connstr('postgres'), '-c', "SELECT mycelium.move_shard($bid, '$tname')" ],
	'>', "$dir/mover.out", '2>', "$dir/mover.err");
$tgt->poll_query_until('postgres', $syncing) or die 'the copy did not start';
$tgt->stop('immediate');
$mover->finish;
my $m_err = slurp_file("$dir/mover.err");
like($m_err, qr/ERROR/, 'the move fails when its target dies: ' . ($m_err =~ /ERROR:\s*(.*)/ ? $1 : ''));
is(placement($bid), $bnode, 'the shard stays on its source');
is(rows($bid), $big_before, 'with all its rows');
catalog_same_everywhere('after the failed move', grep { $_ ne $tgt } $mesh->nodes);
is(q1($src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'mycelium_move%'")
	  . q1($src, "SELECT count(*) FROM pg_publication"), '00', 'the source dropped its slot and publication');
$tgt->start;
$n1->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts') or die 'prepared left';
q1($n1, "SELECT mycelium.move_shard($bid, '$tname')");
is(placement($bid), $tname, 'the retried move succeeds');
is(rows($bid), $big_before, 'and keeps every row');
ok(!exists_on($src, "big_$bid"), 'and drops the old copy');
is(q1($tgt, "SELECT count(*) FROM pg_subscription"), '0', 'what the failed attempt left on the target is gone');
$src->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name LIKE 'pg_%sync%' OR slot_name LIKE 'mycelium_move%'")
  or die 'replication slots left on the source';
ok(1, 'and on the source');
catalog_same_everywhere('after the retried move');

# --- rebalance after adding a fourth node ---
my $n4 = $mesh->new_node('n4');
$by_name{n4} = $n4;
q1($n1, "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
push @{ $mesh->{nodes} }, $n4;
my $moves = q1($n1, "SELECT shard_id || ' ' || from_node || ' ' || to_node FROM mycelium.rebalance('items')");
like($moves, qr/ n4$/m, "rebalance moves shards to the new node:\n$moves");
is(q1($n1, "SELECT max(c) - min(c) <= 1 FROM (SELECT n.node_name, count(s.shard_id) c FROM mycelium.node n "
	  . "LEFT JOIN mycelium.shard s ON s.node_name = n.node_name AND s.table_name = 'items'::regclass "
	  . "GROUP BY n.node_name) x"), 't', 'items is balanced over the four nodes');
is(q1($n1, "SELECT count(*) FROM mycelium.shard a JOIN mycelium.shard b ON a.min_value = b.min_value "
	  . "WHERE a.table_name = 'items'::regclass AND b.table_name = 'details'::regclass AND a.node_name <> b.node_name"),
	'0', 'colocated shards stayed together');
is(q1($n1, "SELECT count(*) FROM mycelium.rebalance('items')"), '0', 'a second rebalance has nothing to do');
q1($n1, "SELECT count(*) FROM mycelium.rebalance()");
catalog_same_everywhere('after rebalancing');
$n1->psql('postgres', "SELECT * FROM mycelium.rebalance('pg_class')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22023/, 'rebalancing a table that is not distributed: 22023');

# --- drain n4, then remove it ---
my $on_n4 = q1($n1, "SELECT count(*) FROM mycelium.shard WHERE node_name = 'n4'");
ok($on_n4 > 0, "n4 holds $on_n4 shards");
$n1->psql('postgres', "SELECT mycelium.remove_node('n4')", stderr => \$err);
like($err, qr/ERROR/, 'remove_node refuses a node that holds shards');
is(q1($n1, "SELECT mycelium.drain_node('n4')"), $on_n4, 'drain_node returns the number of shards moved');
is(q1($n1, "SELECT count(*) FROM mycelium.shard WHERE node_name = 'n4'"), '0', 'n4 holds no shard');
is(q1($n2, "SELECT status FROM mycelium.node WHERE node_name = 'n4'"), 'draining', 'n4 is draining');
is(q1($n4, "SELECT count(*) FROM pg_tables WHERE tablename ~ '^(items|details|big)_[0-9]+\$'"), '0',
	'no shard table is left on n4');
is(q1($n1, "SELECT count(*) FROM mycelium.rebalance()"), '0', 'rebalance puts nothing on a draining node');
catalog_same_everywhere('after draining');
q1($n1, "SELECT mycelium.remove_node('n4')");
pop @{ $mesh->{nodes} };
is(q1($n2, "SELECT count(*) FROM mycelium.node WHERE node_name = 'n4'"), '0', 'then remove_node works');
$n1->psql('postgres', "SELECT mycelium.drain_node('n9')", stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42704/, 'draining an unknown node: 42704');

# every row of items is still somewhere, exactly once
my $total = 0;
for my $node ($n1, $n2, $n3)
{
	$total += q1($node, "SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s', c.oid::regclass), false, true, '')))[1]::text::int), 0) "
		  . "FROM pg_class c WHERE c.relname ~ '^items_[0-9]+\$' AND c.relkind = 'r'");
}
is($total, 2000 + scalar(@acked) + 1, 'every row of items is in exactly one shard');

# --- through the distributed table (the router) ---
my $routed_total = 2000 + scalar(@acked) + 1;
is($_->safe_psql('postgres', 'SELECT count(*) FROM items'), $routed_total,
	$_->name . ': a query on the distributed table sees every row after the moves')
  for $n1, $n2, $n3;
my ($rs, $rnode) = split / /, q1($n1, "SELECT shard_id || ' ' || node_name FROM mycelium.shard "
	  . "WHERE table_name = 'items'::regclass ORDER BY shard_id LIMIT 1");
my ($rtarget) = grep { $_ ne $rnode } qw(n1 n2 n3);
my @rids = split /,/, q1($n1, "SELECT string_agg(i::text, ',') FROM (SELECT i FROM generate_series(200001, 260000) i "
	  . "WHERE mycelium.shard_for('items', i) = $rs LIMIT 200) x");
open $fh, '>', "$dir/routed.sql" or die $!;
print $fh map { "INSERT INTO items (id, v) VALUES ($_, 'routed') RETURNING id;\nSELECT pg_sleep(0.01);\n" } @rids;
close $fh;
my $rwriter = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $n2->connstr('postgres'), '-f', "$dir/routed.sql" ],
	'>', "$dir/routed.out", '2>', "$dir/routed.err");
$n1->poll_query_until('postgres', "SELECT count(*) >= 20 FROM items WHERE v = 'routed'")
  or die 'the routed writer did not start: ' . slurp_file("$dir/routed.err");
q1($n3, "SELECT mycelium.move_shard($rs, '$rtarget')");
$rwriter->finish;
my @racked = grep { /^\d+$/ } split /\n/, slurp_file("$dir/routed.out");
ok(@racked >= 20, 'the writer through the distributed table committed rows (' . scalar(@racked) . ')');
is(placement($rs), $rtarget, 'the shard it wrote to moved');
is($_->safe_psql('postgres', "SELECT count(*) FROM items WHERE id IN (" . join(',', @racked) . ")"),
	scalar(@racked), $_->name . ': every acknowledged routed write is there')
  for $n1, $n2, $n3;
is(q1($n1, "SELECT count(*) FROM items"), $routed_total + scalar(@racked), 'and nothing else');
q1($n2, "INSERT INTO items (id, v) VALUES ($rids[0] + 1000000, 'after the move')");
is(q1($n3, "SELECT v FROM items WHERE id = $rids[0] + 1000000"), 'after the move',
	'routed writes and reads work after the move');

done_testing();
