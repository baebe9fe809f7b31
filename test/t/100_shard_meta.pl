# Sharding metadata across a 3-node TLS mesh: create_distributed_table
# makes the catalog identical on every node, creates each shard table on
# exactly its node and the empty shell everywhere else, moves the existing
# rows into the right shards, aligns colocated tables, and reuses an
# identical empty table a member already has; create_reference_table copies
# the table with its rows to every node; add_range_shard places a shard on
# the chosen node; bad input leaves every node unchanged; a 4th node joining
# receives the shells, the reference tables and the catalog; remove_node is
# refused while a node holds shards; undistribute_table brings every row
# back to the node that runs it.  The distributed table itself is not
# queried (the router does that): rows are checked in the shard tables.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;
my %by_name = map { $_->name => $_ } $mesh->nodes;

# fails($node, $sql): the verbose error text (with SQLSTATE) of a statement
# that must fail
sub fails
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $rc == 0 ? "unexpected success: $out" : $err;
}

# on_all($sql): "name=result" of $sql on every node, joined by spaces
sub on_all
{
	my ($sql) = @_;
	my $r = $mesh->query_all($sql);
	return join(' ', map { "$_=" . $r->{$_} } sort keys %$r);
}

# the whole sharding catalog as one checksum (names, not OIDs)
my $catalog_sql = q{SELECT md5(coalesce((SELECT string_agg(format('%s|%s|%s|%s|%s',
	table_name::text, method, distribution_column, shard_count, colocation_id), ';'
	ORDER BY table_name::text) FROM mycelium.tables), '') || coalesce((SELECT
	string_agg(format('%s|%s|%s|%s|%s|%s', table_name::text, shard_id, shard_name,
	min_value, max_value, node_name), ';' ORDER BY shard_id) FROM mycelium.shards), ''))};

# same_everywhere($sql): true when $sql gives one result on every node
sub same_everywhere
{
	my ($sql, @nodes) = @_;
	@nodes = $mesh->nodes unless @nodes;
	my %seen = map { $_->safe_psql('postgres', $sql) => 1 } @nodes;
	return scalar(keys %seen) == 1;
}

# shards_of($table): [shard_id, shard_name, node_name] of every shard, from n1
sub shards_of
{
	my ($table) = @_;
	my $rows = $n1->safe_psql('postgres',
		"SELECT shard_id, shard_name, node_name FROM mycelium.shards "
		  . "WHERE table_name = '$table'::regclass ORDER BY shard_id");
	return [ map { [ split /\|/ ] } split /\n/, $rows ];
}

# local_shard_tables($node, $schema, $prefix): sorted shard tables present
sub local_shard_tables
{
	my ($node, $schema, $prefix) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(relname, ',' ORDER BY relname), '') FROM pg_class c "
		  . "JOIN pg_namespace s ON s.oid = c.relnamespace "
		  . "WHERE s.nspname = '$schema' AND relname ~ '^${prefix}_[0-9]+\$'");
}

# --- a hash table with rows, in its own schema, distributed from n1
$n1->safe_psql('postgres', q{
	CREATE SCHEMA app;
	CREATE TABLE app.orders (id bigint PRIMARY KEY, customer text NOT NULL DEFAULT 'x',
	                         amount numeric(10,2) CHECK (amount >= 0));
	CREATE INDEX orders_customer_idx ON app.orders (customer);
	INSERT INTO app.orders SELECT g, 'c' || g % 5, g FROM generate_series(1, 1000) g;
	SELECT mycelium.create_distributed_table('app.orders', 'id', shard_count => 6);
});
ok(same_everywhere($catalog_sql), 'the catalog is identical on every node');
is(on_all("SELECT shard_count FROM mycelium.tables WHERE table_name = 'app.orders'::regclass"),
	'n1=6 n2=6 n3=6', 'every node lists the 6 shards');
is(on_all(q{SELECT string_agg(node_name || ':' || n, ',' ORDER BY node_name) FROM
	(SELECT node_name, count(*) n FROM mycelium.shards GROUP BY 1) s}),
	join(' ', map { "$_=n1:2,n2:2,n3:2" } qw(n1 n2 n3)),
	'shards are placed round-robin, two per node');
is(on_all('SET mycelium.enable_routing = off; SELECT count(*) FROM ONLY app.orders'), 'n1=0 n2=0 n3=0',
	'the shell exists on every node and is empty');

my $orders = shards_of('app.orders');
my ($total, $misplaced, $sum) = (0, 0, 0);
for my $s (@$orders)
{
	my ($sid, $sname, $node) = @$s;
	my ($c, $m, $sm) = split /\|/, $by_name{$node}->safe_psql('postgres',
		"SELECT count(*), count(*) FILTER (WHERE mycelium.shard_for('app.orders', id) <> $sid), "
		  . "coalesce(sum(id), 0) FROM app.$sname");
	$total += $c;
	$misplaced += $m;
	$sum += $sm;
}
is($total, 1000, 'every row moved into a shard');
is($misplaced, 0, 'each row is in the shard its hash falls in');
is($sum, 500500, 'no row was duplicated or lost');
for my $node ($mesh->nodes)
{
	my $expect = join(',', sort map { $_->[1] } grep { $_->[2] eq $node->name } @$orders);
	is(local_shard_tables($node, 'app', 'orders'), $expect,
		'node ' . $node->name . ' has exactly its shard tables');
}
my $idx = $by_name{ $orders->[0][2] }->safe_psql('postgres',
	"SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes "
	  . "WHERE schemaname = 'app' AND tablename = '$orders->[0][1]'");
like($idx, qr/CREATE INDEX orders_customer_idx_\d+ ON app\.orders_\d+ USING btree \(customer\)/,
	'a shard has the secondary index, renamed');
like($idx, qr/CREATE UNIQUE INDEX orders_pkey_\d+ ON app\.orders_\d+ USING btree \(id\)/,
	'a shard has the primary key, renamed');

# --- colocation: explicit and by default
$n2->safe_psql('postgres', q{
	CREATE TABLE app.lines (order_id bigint, n int, PRIMARY KEY (order_id, n));
	SELECT mycelium.create_distributed_table('app.lines', 'order_id', colocate_with => 'app.orders');
});
$n3->safe_psql('postgres', q{
	CREATE TABLE app.notes (order_id bigint, body text);
	INSERT INTO app.notes SELECT g, 'n' FROM generate_series(1, 100) g;
	SELECT mycelium.create_distributed_table('app.notes', 'order_id', shard_count => 6);
});
ok(same_everywhere($catalog_sql), 'the catalog is identical on every node after colocation');
is($n1->safe_psql('postgres', q{SELECT count(DISTINCT colocation_id) FROM mycelium.tables
	WHERE table_name IN ('app.orders'::regclass, 'app.lines'::regclass, 'app.notes'::regclass)}),
	'1', 'explicitly and implicitly colocated tables share the group');
is($n1->safe_psql('postgres', q{SELECT count(*) FROM mycelium.shards a JOIN mycelium.shards b
	USING (min_value, max_value) WHERE a.table_name = 'app.orders'::regclass
	AND b.table_name IN ('app.lines'::regclass, 'app.notes'::regclass)
	AND a.node_name <> b.node_name}), '0', 'colocated shards are on the same node');
is($n1->safe_psql('postgres', q{SELECT count(*) FROM mycelium.shards a JOIN mycelium.shards b
	USING (min_value, max_value) WHERE a.table_name = 'app.orders'::regclass
	AND b.table_name = 'app.notes'::regclass}), '6', 'colocated shards cover the same hash ranges');

# --- an identical empty table on a member is reused; a different one refuses
$n2->safe_psql('postgres', 'CREATE TABLE app.reuse (k int, v text)');
$n1->safe_psql('postgres', q{CREATE TABLE app.reuse (k int, v text);
	INSERT INTO app.reuse SELECT g, 'v' FROM generate_series(1, 50) g;
	SELECT mycelium.create_distributed_table('app.reuse', 'k', shard_count => 3)});
is($n1->safe_psql('postgres', "SELECT shard_count FROM mycelium.tables WHERE table_name = 'app.reuse'::regclass"),
	'3', 'an identical empty table on a member is reused');

my $before = $n1->safe_psql('postgres', $catalog_sql);
$n3->safe_psql('postgres', 'CREATE TABLE app.clash (k int, other text)');
$n1->safe_psql('postgres', q{CREATE TABLE app.clash (k int, v text); INSERT INTO app.clash VALUES (1, 'a')});
like(fails($n1, "SELECT mycelium.create_distributed_table('app.clash', 'k')"),
	qr/42P07: a different relation named "app\.clash" already exists on node "n3"/,
	'a different table of that name on a member is refused');
$n3->safe_psql('postgres', q{DROP TABLE app.clash; CREATE TABLE app.clash (k int, v text);
	INSERT INTO app.clash VALUES (2, 'b')});
like(fails($n1, "SELECT mycelium.create_distributed_table('app.clash', 'k')"),
	qr/already exists on node "n3" and is not empty/, 'a non-empty table of that name is refused');
$n1->safe_psql('postgres', q{CREATE TABLE app.nullish (k int); INSERT INTO app.nullish VALUES (1), (NULL)});
like(fails($n1, "SELECT mycelium.create_distributed_table('app.nullish', 'k')"),
	qr/23502: column "k" of table "app\.nullish" contains null values/,
	'NULL distribution values are refused');
like(fails($n2, "SELECT mycelium.create_distributed_table('app.lines', 'order_id')"),
	qr/42710: table "app\.lines" is already distributed/, 'distributing twice is refused');
like(fails($n2, "SELECT mycelium.add_range_shard('app.orders', '1', '2')"),
	qr/22023: table "app\.orders" is not range-distributed/, 'range shards only for range tables');
is(on_all($catalog_sql), join(' ', map { "$_=$before" } qw(n1 n2 n3)),
	'failed attempts changed no node\'s catalog');
is(on_all(q{SELECT count(*) FROM pg_class WHERE relname ~ '^(clash|nullish)_[0-9]+$'}),
	'n1=0 n2=0 n3=0', 'failed attempts left no shard table anywhere');
is(on_all("SELECT to_regclass('app.nullish') IS NULL"), 'n1=f n2=t n3=t',
	'failed attempts left no shell anywhere');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM ONLY app.clash'), '1',
	'the refused table keeps its rows');
ok($mesh->no_prepared_xacts, 'no prepared transaction is left');

# --- reference table, made on n2
$n2->safe_psql('postgres', q{
	CREATE TABLE app.countries (code text PRIMARY KEY, name text NOT NULL);
	INSERT INTO app.countries VALUES ('fr', 'France'), ('jp', 'Japan'), ('pe', 'Peru');
	SELECT mycelium.create_reference_table('app.countries');
});
is(on_all("SELECT string_agg(code || ':' || name, ',' ORDER BY code) FROM ONLY app.countries"),
	join(' ', map { "$_=fr:France,jp:Japan,pe:Peru" } qw(n1 n2 n3)),
	'the reference table and its rows are on every node');
is(on_all("SELECT method FROM mycelium.tables WHERE table_name = 'app.countries'::regclass"),
	'n1=reference n2=reference n3=reference', 'every node lists it as a reference table');

# --- range table with shards on chosen nodes
$n3->safe_psql('postgres', q{CREATE TABLE app.events (day date, what text);
	SELECT mycelium.create_distributed_table('app.events', 'day', 'range')});
my $r1 = $n1->safe_psql('postgres',
	"SELECT mycelium.add_range_shard('app.events', '2024-01-01', '2024-02-01', 'n2')");
# a session on n3 that has read the cache sees the next change from n1
my $watcher = $n3->background_psql('postgres');
is($watcher->query_safe("SELECT mycelium.shard_for('app.events', '2024-02-14'::date) IS NULL"),
	't', 'no shard covers February yet');
my $r2 = $n1->safe_psql('postgres',
	"SELECT mycelium.add_range_shard('app.events', '2024-02-01', '2024-03-01')");
is($watcher->query_safe("SELECT mycelium.shard_for('app.events', '2024-02-14'::date)"),
	$r2, 'a backend on another node sees the new shard once the change commits');
$watcher->quit;
is(on_all("SELECT to_regclass('app.events_$r1') IS NOT NULL"), 'n1=f n2=t n3=f',
	'a range shard is created on the node asked for');
ok(same_everywhere($catalog_sql), 'the catalog is identical on every node after range shards');
like(fails($n2, "SELECT mycelium.add_range_shard('app.events', '2024-01-20', '2024-02-10')"),
	qr/42P17: range shard would overlap shard $r1/, 'overlapping range shards are refused');
is(on_all("SELECT mycelium.shard_for('app.events', '2024-02-14'::date)"),
	"n1=$r2 n2=$r2 n3=$r2", 'shard_for agrees on every node');

# --- two nodes distributing at once: serialized, shard ids unique
$n1->safe_psql('postgres', 'CREATE TABLE app.c1 (k int)');
$n2->safe_psql('postgres', 'CREATE TABLE app.c2 (k int)');
my $s1 = $n1->background_psql('postgres');
my $s2 = $n2->background_psql('postgres');
$s1->query_safe('BEGIN');
$s1->query_safe("SELECT mycelium.create_distributed_table('app.c1', 'k', shard_count => 4)");
$s2->query_until(qr/started/,
	"\\echo started\nSELECT mycelium.create_distributed_table('app.c2', 'k', shard_count => 5);\n");
$n1->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
	  . "WHERE NOT l.granted AND a.application_name = 'mycelium'")
  or die 'the change from n2 never waited for n1';
pass('a table distributed from n2 waits for the one open on n1');
$s1->query_safe('COMMIT');
$s1->quit;
$s2->quit;
is($n3->safe_psql('postgres', q{SELECT string_agg(table_name::text || ':' || shard_count, ',' ORDER BY 1)
	FROM mycelium.tables WHERE table_name::text IN ('app.c1', 'app.c2')}),
	'app.c1:4,app.c2:5', 'both tables are distributed');
is($n3->safe_psql('postgres', 'SELECT count(*) = count(DISTINCT shard_id) FROM mycelium.shards'),
	't', 'shard ids are unique across concurrent changes');
ok(same_everywhere($catalog_sql), 'the catalog is identical on every node after concurrent changes');

# --- a 4th node joins: shells, reference tables and the catalog
my $n4 = $mesh->new_node('n4');
$n1->safe_psql('postgres', "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
ok(same_everywhere($catalog_sql, $n1, $n4), 'the new node has the same catalog');
is($n4->safe_psql('postgres', 'SET mycelium.enable_routing = off; SELECT count(*) FROM ONLY app.orders'), '0',
	'the new node has the empty shell');
is($n4->safe_psql('postgres', "SELECT string_agg(code, ',' ORDER BY code) FROM ONLY app.countries"),
	'fr,jp,pe', 'the new node has the reference table with its rows');
is($n4->safe_psql('postgres', "SELECT mycelium.shard_for('app.orders', 42::bigint)"),
	$n1->safe_psql('postgres', "SELECT mycelium.shard_for('app.orders', 42::bigint)"),
	'the new node maps values to the same shards');
is(local_shard_tables($n4, 'app', 'orders'), '', 'the new node holds no shard');

# --- remove_node: refused while the node holds shards, fine once it holds none
like(fails($n1, "SELECT mycelium.remove_node('n3')"),
	qr/55006: node "n3" still holds \d+ shards.*HINT:  Run mycelium.drain_node\('n3'\) first/s,
	'remove_node refuses a node that holds shards');
is(on_all("SELECT count(*) FROM mycelium.nodes"), 'n1=4 n2=4 n3=4', 'n3 is still a member');
$n1->safe_psql('postgres', "SELECT mycelium.remove_node('n4')");
is($n4->safe_psql('postgres', 'SELECT count(*) FROM mycelium.dist_table'), '0',
	'a node that leaves forgets the sharding catalog');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM mycelium.nodes'), '3', 'n4 is gone');

# --- undistribute from n2: every row comes back to n2
$n2->safe_psql('postgres', "SELECT mycelium.undistribute_table('app.orders')");
is($n2->safe_psql('postgres', 'SELECT count(*), sum(id) FROM ONLY app.orders'), '1000|500500',
	'undistribute brings every row back');
is(on_all("SELECT count(*) FROM mycelium.shards WHERE shard_name ~ '^orders_'"),
	'n1=0 n2=0 n3=0', 'its shards are gone from every catalog');
is(on_all(q{SELECT count(*) FROM pg_class WHERE relname ~ '^orders_[0-9]+$'}),
	'n1=0 n2=0 n3=0', 'its shard tables are dropped everywhere');
is(on_all("SELECT to_regclass('app.orders') IS NOT NULL"), 'n1=f n2=t n3=f',
	'the table stays only on the node that undistributed it');
ok(same_everywhere($catalog_sql), 'the catalog is identical on every node at the end');
ok($mesh->no_prepared_xacts, 'no prepared transaction is left at the end');

# --- without the preload, the table policies say what is missing
my $np = $mesh->new_node('np', preload => 0);
$np->safe_psql('postgres', 'CREATE TABLE t (k int)');
like(fails($np, "SELECT mycelium.create_distributed_table('t', 'k')"),
	qr/55000: mycelium must be loaded via shared_preload_libraries/,
	'create_distributed_table needs the preload');
like(fails($np, "SELECT mycelium.shard_for('t', 1)"),
	qr/22023: table "public\.t" is not a distributed table/,
	'shard_for works without the preload');

done_testing();
