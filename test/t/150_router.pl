# Query routing across a 3-node mesh: a hash-distributed table, a
# colocated one and a reference table, queried and written from every
# node.  Point queries prune to one shard (EXPLAIN says so), fan-out
# aggregates are computed from partial aggregates, joins and other shapes
# give the answer a local table gives, writes that span nodes commit
# atomically, prepared statements prune per execution, and the shapes the
# router cannot run fail with 0A000 instead of answering wrongly.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;

$n1->safe_psql('postgres', q{
	CREATE TABLE orders (id int PRIMARY KEY, cust int NOT NULL, amount numeric, note text);
	CREATE TABLE items (order_id int, line int, qty int, PRIMARY KEY (order_id, line));
	CREATE TABLE region (cust int PRIMARY KEY, name text);
	CREATE TABLE l_orders (LIKE orders);
	CREATE TABLE l_items (LIKE items);
	SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 8);
	SELECT mycelium.create_distributed_table('items', 'order_id', shard_count => 8,
											 colocate_with => 'orders');
	SELECT mycelium.create_reference_table('region');
});

# rows go in through the router from another node
$n2->safe_psql('postgres', q{
	INSERT INTO orders SELECT g, g % 10, g * 1.5, 'note ' || g FROM generate_series(1, 1000) g;
	INSERT INTO items SELECT o, l, o + l FROM generate_series(1, 1000) o, generate_series(1, 3) l;
	INSERT INTO region SELECT c, 'region ' || c FROM generate_series(0, 9) c;
});
$n1->safe_psql('postgres', q{
	INSERT INTO l_orders SELECT g, g % 10, g * 1.5, 'note ' || g FROM generate_series(1, 1000) g;
	INSERT INTO l_items SELECT o, l, o + l FROM generate_series(1, 1000) o, generate_series(1, 3) l;
});

for my $n ($n1, $n2, $n3)
{
	my $name = $n->name;
	is($n->safe_psql('postgres', 'SELECT count(*), sum(amount), min(id), max(id) FROM orders'),
		'1000|750750.0|1|1000', "$name: fan-out aggregates");
	is($n->safe_psql('postgres', 'SELECT count(*) FROM region'), '10',
		"$name: reference table has every row");
	is($n->safe_psql('postgres', 'SELECT cust, note FROM orders WHERE id = 77'), '7|note 77',
		"$name: point query");
	is($n->safe_psql('postgres',
			'SELECT string_agg(id::text, \',\' ORDER BY id) FROM orders WHERE id IN (3, 500, 999, 4242)'),
		'3,500,999', "$name: IN list");
	is($n->safe_psql('postgres',
			'SELECT cust, count(*), avg(amount)::numeric(10,3) FROM orders GROUP BY cust HAVING cust < 3 ORDER BY cust'),
		$n1->safe_psql('postgres',
			'SELECT cust, count(*), avg(amount)::numeric(10,3) FROM l_orders GROUP BY cust HAVING cust < 3 ORDER BY cust'),
		"$name: GROUP BY / HAVING / avg as on a local table");
	is($n->safe_psql('postgres',
			'SELECT o.id, sum(i.qty), r.name FROM orders o JOIN items i ON i.order_id = o.id '
			  . 'JOIN region r ON r.cust = o.cust WHERE o.id < 5 GROUP BY o.id, r.name ORDER BY o.id'),
		"1|9|region 1\n2|12|region 2\n3|15|region 3\n4|18|region 4",
		"$name: colocated join with a reference table");
	is($n->safe_psql('postgres',
			'SELECT id FROM orders WHERE amount > 1490 ORDER BY id DESC LIMIT 3 OFFSET 1'),
		"999\n998\n997", "$name: ORDER BY / LIMIT / OFFSET");
	is($n->safe_psql('postgres',
			'SELECT count(*) FROM orders WHERE id IN (SELECT order_id FROM items WHERE qty > 1000)'),
		'3', "$name: subquery");
}

# EXPLAIN shows the pruned shard, its node and the SQL
my $explain = $n1->safe_psql('postgres', 'EXPLAIN SELECT * FROM orders WHERE id = 42');
like($explain, qr/MyceliumScan/, 'EXPLAIN shows the routed scan');
like($explain, qr/Shards: 1 of 8/, 'EXPLAIN shows one shard of eight');
like($explain, qr/SQL: SELECT .* FROM public\.orders_\d+ t WHERE \(t\.id = 42\)/,
	'EXPLAIN shows the shard query');
like($n1->safe_psql('postgres', 'EXPLAIN SELECT count(*) FROM orders'), qr/Shards: 8 of 8/,
	'a fan-out reads every shard');
like($n1->safe_psql('postgres', 'EXPLAIN SELECT id FROM orders ORDER BY amount DESC LIMIT 3 OFFSET 1'),
	qr/ORDER BY t\.amount DESC NULLS FIRST LIMIT 4/, 'ORDER BY ... LIMIT is sent to the shards');
$n1->safe_psql('postgres', 'CREATE FUNCTION local_even(int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN RETURN $1 % 2 = 0; END$$');
unlike($n1->safe_psql('postgres', 'EXPLAIN SELECT id FROM orders WHERE local_even(id) ORDER BY amount DESC LIMIT 3'),
	qr/LIMIT 3/, 'no LIMIT on the shards when a filter must run here');
is($n1->safe_psql('postgres', 'SELECT id FROM orders WHERE local_even(id) ORDER BY amount DESC LIMIT 3'),
	"1000\n998\n996", 'a local filter with ORDER BY ... LIMIT');
like($n1->safe_psql('postgres', 'EXPLAIN SELECT cust, count(*) FROM orders GROUP BY cust'),
	qr/GROUP BY t\.cust/, 'aggregates are computed on the shards');

# prepared statements prune per execution, also with a generic plan
is($n3->safe_psql('postgres', q{
	SET plan_cache_mode = force_generic_plan;
	PREPARE p(int) AS SELECT note FROM orders WHERE id = $1;
	EXECUTE p(10); EXECUTE p(20); EXECUTE p(5000);
}), "note 10\nnote 20", 'generic plans route by the parameter value');
like($n3->safe_psql('postgres', q{
	SET plan_cache_mode = force_generic_plan;
	PREPARE p(int) AS SELECT note FROM orders WHERE id = $1;
	EXPLAIN EXECUTE p(10);
}), qr/Shards: 1 of 8/, 'EXPLAIN EXECUTE prunes with the parameter');

# writes: routed, RETURNING, multi-shard atomic
is($n2->safe_psql('postgres', "UPDATE orders SET note = 'changed' WHERE id = 5 RETURNING id, note"),
	'5|changed', 'single-shard UPDATE with RETURNING');
is($n3->safe_psql('postgres', "SELECT note FROM orders WHERE id = 5"), 'changed',
	'the update is visible from another node');
my ($rc, $out, $err) = $n1->psql('postgres', q{
	BEGIN;
	UPDATE orders SET amount = amount + 1;
	SELECT 1/0;
	COMMIT;
});
is($n2->safe_psql('postgres', 'SELECT sum(amount) FROM orders'), '750750.0',
	'a failed multi-shard UPDATE leaves nothing behind');
is($n1->safe_psql('postgres', 'UPDATE orders SET amount = amount + 1 WHERE cust = 3'), '',
	'multi-shard UPDATE');
is($n3->safe_psql('postgres', 'SELECT sum(amount) FROM orders'), '750850.0',
	'multi-shard UPDATE committed on every node');
is($n2->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO orders VALUES (2001, 1, 1, 'a'), (2002, 2, 2, 'b');
	SELECT count(*) FROM orders WHERE id > 2000;
	COMMIT;
}), '2', 'reads in a transaction see its own writes');
is($n1->safe_psql('postgres',
		"INSERT INTO orders VALUES (2001, 9, 9, 'x') ON CONFLICT (id) DO UPDATE SET note = excluded.note RETURNING note"),
	'x', 'INSERT ON CONFLICT DO UPDATE RETURNING');
is($n1->safe_psql('postgres', 'DELETE FROM orders WHERE id > 2000'), '', 'DELETE');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM orders'), '1000', 'deleted everywhere');
is($n1->safe_psql('postgres', "UPDATE region SET name = 'R' || cust::text WHERE cust = 1"), '',
	'reference table UPDATE');
is(join(',', map { $_->safe_psql('postgres', 'SELECT name FROM region WHERE cust = 1') } ($n1, $n2, $n3)),
	'R1,R1,R1', 'reference table UPDATE reached every copy');
ok($mesh->no_prepared_xacts, 'no prepared transactions left');

# bad input
sub fails_with
{
	my ($node, $sql, $state, $name) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($err, qr/ERROR:\s+$state/, $name) or diag($err);
}
fails_with($n1, "INSERT INTO orders VALUES (NULL, 1, 1, 'x')", '23502',
	'NULL distribution value');
fails_with($n1, 'UPDATE orders SET id = id + 1 WHERE id = 3', '0A000',
	'updating the distribution column');
fails_with($n1, 'UPDATE orders SET note = l.note FROM l_orders l WHERE l.id = orders.id',
	'0A000', 'UPDATE reading a local table');
fails_with($n1, 'SELECT * FROM orders WHERE id = 1 FOR UPDATE', '0A000', 'FOR UPDATE');
fails_with($n1, 'UPDATE region SET name = now()::text', '0A000',
	'non-immutable write to a reference table');
fails_with($n1, 'SELECT * FROM mycelium.shard_rows(1, 0) AS t(a int)', '0A000',
	'the placeholder cannot be called');
$n1->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
fails_with($n1, "SET ROLE nobody; SELECT count(*) FROM orders", '42501',
	'no privilege on the distributed table');
fails_with($n1, "SET ROLE nobody; INSERT INTO orders VALUES (5000, 1, 1, 'x')", '42501',
	'no INSERT privilege');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM orders'), '1000', 'nothing changed');

done_testing();
