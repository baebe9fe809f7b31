# Whole-query pushdown across a 3-node mesh: a SELECT whose distributed
# tables all resolve to shards on one node is sent there whole (joins of
# colocated tables on the key, reference tables, subqueries, CTEs,
# aggregates, windows); anything else runs as before.  Every answer is
# compared with the same query on plain local tables, from every node.
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
	CREATE TABLE l_region (LIKE region);
	SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 6);
	SELECT mycelium.create_distributed_table('items', 'order_id', shard_count => 6,
											 colocate_with => 'orders');
	SELECT mycelium.create_reference_table('region');
	INSERT INTO orders SELECT g, g % 10, g * 1.5, 'note ' || g FROM generate_series(1, 600) g;
	INSERT INTO items SELECT o, l, o * l FROM generate_series(1, 600) o, generate_series(1, 4) l;
	INSERT INTO region SELECT c, 'region ' || c FROM generate_series(0, 9) c;
	INSERT INTO l_orders SELECT * FROM orders;
	INSERT INTO l_items SELECT * FROM items;
	INSERT INTO l_region SELECT * FROM region;
});

# the node holding the shard of an order id
sub holder
{
	my ($id) = @_;
	return $n1->safe_psql('postgres',
		"SELECT node_name FROM mycelium.shards WHERE shard_id = mycelium.shard_for('orders', $id)");
}

# the same query over the distributed and the local tables
sub local_sql
{
	my ($sql) = @_;
	$sql =~ s/\borders\b/l_orders/g;
	$sql =~ s/\bitems\b/l_items/g;
	$sql =~ s/\bregion\b/l_region/g;
	return $sql;
}

my @pushed = (
	['key join with a reference table',
	 'SELECT o.id, sum(i.qty), r.name FROM orders o JOIN items i ON i.order_id = o.id '
	   . 'JOIN region r ON r.cust = o.cust WHERE o.id = %d GROUP BY o.id, r.name'],
	['key join, outer join, ORDER BY LIMIT',
	 'SELECT i.line, i.qty, o.note FROM orders o LEFT JOIN items i ON i.order_id = o.id AND i.line > 1 '
	   . 'WHERE o.id = %d ORDER BY i.line DESC LIMIT 2'],
	['CTE and subquery',
	 'WITH x AS (SELECT * FROM items WHERE order_id = %d) SELECT count(*), sum(x.qty) FROM x '
	   . 'WHERE x.order_id IN (SELECT id FROM orders WHERE amount > 0)'],
	['window and DISTINCT',
	 'SELECT DISTINCT line, sum(qty) OVER (ORDER BY line) FROM items WHERE order_id = %d ORDER BY 1'],
	['EXISTS over a colocated table',
	 'SELECT id, cust FROM orders o WHERE id = %d AND EXISTS '
	   . '(SELECT 1 FROM items i WHERE i.order_id = o.id AND i.qty > 0)'],
);

for my $n ($n1, $n2, $n3)
{
	my $name = $n->name;
	for my $case (@pushed)
	{
		my ($what, $template) = @$case;
		for my $id (7, 123, 599)
		{
			my $sql = sprintf($template, $id);
			my $explain = $n->safe_psql('postgres', "EXPLAIN $sql");
			my $where = holder($id);
			my $suffix = $where eq $name ? ' (local)' : '';
			like($explain, qr/Pushdown: whole query.*Node: \Q$where$suffix\E/s,
				"$name: $what (id $id) runs whole on $where");
			is($n->safe_psql('postgres', $sql), $n1->safe_psql('postgres', local_sql($sql)),
				"$name: $what (id $id) answers as local tables do");
		}
	}
}

# two keys on two nodes: the usual plan, still right
my ($a, $b) = (1, 2);
$b++ while holder($b) eq holder($a);
my $two = "SELECT o.id, count(*) FROM orders o JOIN items i ON i.order_id = o.id "
  . "WHERE o.id IN ($a, $b) GROUP BY o.id ORDER BY o.id";
like($n2->safe_psql('postgres', "EXPLAIN $two"), qr/Pushdown: no: the chosen shards are on several nodes/,
	'shards on two nodes: not pushed, EXPLAIN says why');
is($n2->safe_psql('postgres', $two), $n1->safe_psql('postgres', local_sql($two)),
	'shards on two nodes: right answer');
my $fan = 'SELECT r.name, count(*), sum(i.qty) FROM orders o JOIN items i ON i.order_id = o.id '
  . 'JOIN region r ON r.cust = o.cust GROUP BY r.name ORDER BY r.name';
is($n3->safe_psql('postgres', $fan), $n1->safe_psql('postgres', local_sql($fan)),
	'fan-out join: right answer');

# co-located joins without a fixed key: the join runs on every shard
# group, the rest of the query here
my @joined = (
	['aggregate over a join with a reference table',
	 'SELECT r.name, count(*), sum(i.qty) FROM orders o JOIN items i ON i.order_id = o.id '
	   . 'JOIN region r ON r.cust = o.cust WHERE i.qty > 10 GROUP BY r.name HAVING count(*) > 1 ORDER BY r.name', 1],
	['LEFT JOIN on the key, ORDER BY LIMIT',
	 'SELECT o.id, i.line FROM orders o LEFT JOIN items i ON i.order_id = o.id AND i.line = 4 '
	   . 'WHERE o.amount > 100 ORDER BY o.id DESC, i.line LIMIT 7', 1],
	['FULL JOIN of a subquery on the key',
	 'SELECT count(*), count(order_id), sum(qty) FROM (SELECT * FROM orders) o FULL JOIN items i ON i.order_id = o.id', 1],
	['FULL JOIN on the key',
	 'SELECT count(*), count(i.order_id), min(o.id) FROM orders o FULL JOIN items i ON i.order_id = o.id AND i.qty > 500', 1],
	['a reference table on the nullable side',
	 'SELECT count(*), count(r.name) FROM orders o LEFT JOIN region r ON r.cust = o.cust AND r.cust < 5', 1],
	['window and DISTINCT over a join',
	 'SELECT DISTINCT o.cust, sum(i.qty) OVER (PARTITION BY o.cust) FROM orders o JOIN items i '
	   . 'ON o.id = i.order_id ORDER BY 1', 1],
	['comma join with the key in WHERE',
	 'SELECT count(*) FROM orders o, items i WHERE o.id = i.order_id AND i.line = 2 AND o.cust = 3', 1],
	['a subquery grouped by the key',
	 'SELECT o.cust, count(*), sum(x.s) FROM orders o JOIN (SELECT order_id, sum(qty) s FROM items GROUP BY order_id) x '
	   . 'ON x.order_id = o.id GROUP BY o.cust ORDER BY o.cust', 1],
	['a subquery joining on the key inside',
	 'SELECT x.cust, max(x.q) FROM (SELECT o.id, o.cust, i.qty q FROM orders o JOIN items i ON i.order_id = o.id WHERE i.line > 1) x '
	   . 'JOIN region r ON r.cust = x.cust GROUP BY x.cust ORDER BY 1', 1],
	['a subquery aggregated over everything',
	 'SELECT count(*) FROM orders o JOIN (SELECT max(order_id) m FROM items) x ON x.m = o.id', 0],
	['a subquery grouped off the key',
	 'SELECT count(*), sum(x.s) FROM orders o JOIN (SELECT line, sum(qty) s FROM items GROUP BY line) x ON x.line = o.id', 0],
	['a subquery with LIMIT',
	 'SELECT count(*) FROM orders o JOIN (SELECT order_id FROM items ORDER BY qty DESC LIMIT 5) x ON x.order_id = o.id', 0],
	['a CTE grouped by the key',
	 'WITH x AS (SELECT order_id, sum(qty) s FROM items GROUP BY order_id) '
	   . 'SELECT o.cust, sum(x.s) FROM orders o JOIN x ON x.order_id = o.id GROUP BY o.cust ORDER BY 1', 1],
	['a MATERIALIZED CTE',
	 'WITH x AS MATERIALIZED (SELECT order_id, sum(qty) s FROM items GROUP BY order_id) '
	   . 'SELECT o.cust, sum(x.s) FROM orders o JOIN x ON x.order_id = o.id GROUP BY o.cust ORDER BY 1', 0],
	['EXISTS tied to the key',
	 'SELECT o.cust, count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.qty > 300) '
	   . 'GROUP BY o.cust ORDER BY 1', 1],
	['NOT EXISTS tied to the key',
	 'SELECT count(*), sum(o.amount) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.qty > 1200)', 1],
	['key IN a subquery, with a reference join',
	 'SELECT r.name, count(*) FROM orders o JOIN region r ON r.cust = o.cust '
	   . 'WHERE o.id IN (SELECT order_id FROM items WHERE qty > 1000) GROUP BY r.name ORDER BY 1', 1],
	['IN over a reference table',
	 "SELECT count(*) FROM orders o JOIN items i ON i.order_id = o.id WHERE o.cust IN (SELECT cust FROM region WHERE name LIKE '%3')", 1],
	['NOT IN',
	 'SELECT count(*) FROM orders o WHERE o.id NOT IN (SELECT order_id FROM items WHERE qty > 1000)', 0],
	['EXISTS tied off the key',
	 'SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.qty = o.id)', 0],
	['a reference table on the preserved side',
	 'SELECT r.cust, count(o.id) FROM region r LEFT JOIN orders o ON o.cust = r.cust GROUP BY r.cust ORDER BY 1', 0],
	['tables joined off the key',
	 'SELECT count(*) FROM orders o JOIN items i ON i.qty = o.id', 0],
	['a self-join on the key and one off it',
	 'SELECT count(*) FROM orders a JOIN orders b ON a.id = b.id JOIN items i ON i.order_id = a.cust', 0],
);
for my $n ($n1, $n2, $n3)
{
	my $name = $n->name;
	for my $case (@joined)
	{
		my ($what, $sql, $pushed) = @$case;
		my $explain = $n->safe_psql('postgres', "EXPLAIN $sql");
		if ($pushed)
		{
			like($explain, qr/MyceliumJoinScan.*Co-located Join: \d tables, 6 of 6 shard groups/s,
				"$name: $what runs on the shard groups");
		}
		else
		{
			unlike($explain, qr/MyceliumJoinScan/, "$name: $what is not pushed as a join");
		}
		is($n->safe_psql('postgres', $sql), $n1->safe_psql('postgres', local_sql($sql)),
			"$name: $what answers as local tables do");
	}
}
# aggregates over a join: partial aggregates per shard group, combined here
like($n3->safe_psql('postgres', 'EXPLAIN SELECT r.name, count(*), avg(i.qty) FROM orders o '
		. 'JOIN items i ON i.order_id = o.id JOIN region r ON r.cust = o.cust GROUP BY r.name'),
	qr/MyceliumJoinScan.*SQL: .*count\(\*\).*sum\(.*count\(.*GROUP BY r\.name/s,
	'aggregates over a join are computed partially on the shard groups');

# a generic plan prunes shard groups per execution
is($n2->safe_psql('postgres', q{
	SET plan_cache_mode = force_generic_plan;
	PREPARE j(int, int) AS SELECT count(*), sum(i.qty) FROM orders o JOIN items i ON i.order_id = o.id
		WHERE o.id IN ($1, $2) AND i.line > 1;
	EXECUTE j(1, 2);
	EXECUTE j(300, 301);
}), $n1->safe_psql('postgres', q{
	SELECT count(*), sum(i.qty) FROM l_orders o JOIN l_items i ON i.order_id = o.id WHERE o.id IN (1, 2) AND i.line > 1;
	SELECT count(*), sum(i.qty) FROM l_orders o JOIN l_items i ON i.order_id = o.id WHERE o.id IN (300, 301) AND i.line > 1;
}), 'a prepared join prunes its shard groups per execution');

# the switch: off, the same answers from pulled rows
my $sw = 'SELECT r.name, count(*) FROM orders o JOIN items i ON i.order_id = o.id '
  . 'JOIN region r ON r.cust = o.cust WHERE o.id = 9 GROUP BY r.name';
unlike($n2->safe_psql('postgres', "SET mycelium.enable_pushdown = off; EXPLAIN $sw"),
	qr/MyceliumRouterQuery|MyceliumJoinScan/, 'mycelium.enable_pushdown = off: rows are pulled');
is($n2->safe_psql('postgres', "SET mycelium.enable_pushdown = off; $sw"),
	$n2->safe_psql('postgres', $sw), '... with the same answer');

# shapes that are never sent whole
unlike($n1->safe_psql('postgres', 'EXPLAIN SELECT o.id FROM orders o JOIN l_items i ON i.order_id = o.id WHERE o.id = 5'),
	qr/MyceliumRouterQuery/, 'a join with a local table is not sent whole');
unlike($n1->safe_psql('postgres', "EXPLAIN SELECT o.id, now() FROM orders o JOIN items i ON i.order_id = o.id WHERE o.id = 5"),
	qr/MyceliumRouterQuery/, 'a stable function keeps the query here');
unlike($n1->safe_psql('postgres', 'EXPLAIN SELECT * FROM orders WHERE id = 5'),
	qr/MyceliumRouterQuery/, 'a plain point query keeps its shard scan');
my $tricky = "SELECT count(*) FROM orders o JOIN items i ON i.order_id = o.id "
  . "WHERE o.id = 5 AND o.note <> 'public.orders mycelium_ref_1'";
unlike($n1->safe_psql('postgres', "EXPLAIN $tricky"), qr/MyceliumRouterQuery/,
	'a constant that looks like a reference: not sent whole');
is($n1->safe_psql('postgres', $tricky), '4', '... and still right');

# prepared statements choose the node per execution, generic plans too
my $far = 1;
$far++ while holder($far) eq $n1->name;
my $near = 1;
$near++ while holder($near) ne $n1->name;
my $prep = $n1->safe_psql('postgres', qq{
	SET plan_cache_mode = force_generic_plan;
	PREPARE q(int) AS SELECT o.id, sum(i.qty) FROM orders o JOIN items i ON i.order_id = o.id
		WHERE o.id = \$1 GROUP BY o.id;
	EXPLAIN EXECUTE q($far);
	EXECUTE q($far);
	EXPLAIN EXECUTE q($near);
	EXECUTE q($near);
});
my $farnode = holder($far);
like($prep, qr/Node: \Q$farnode\E\n.*\n$far\|\d+\n.*Node: \Q@{[$n1->name]}\E \(local\).*\n$near\|\d+$/s,
	'a generic plan sends each execution to its node');

# a scrollable cursor and reading one's own writes in a transaction
is($n2->safe_psql('postgres', qq{
	BEGIN;
	INSERT INTO items VALUES ($far, 9, 1000);
	DECLARE c SCROLL CURSOR FOR SELECT i.line FROM orders o JOIN items i ON i.order_id = o.id
		WHERE o.id = $far ORDER BY i.line;
	FETCH 5 FROM c;
	FETCH BACKWARD 1 FROM c;
	ROLLBACK;
}), "1\n2\n3\n4\n9\n4", 'a cursor moves both ways and sees the transaction\'s own row');
is($n3->safe_psql('postgres', "SELECT count(*) FROM items WHERE order_id = $far"), '4',
	'the rolled back row is gone');

# privileges are still checked on the distributed tables
$_->safe_psql('postgres', 'CREATE ROLE reader LOGIN') for ($n1, $n2, $n3);
$n1->safe_psql('postgres', 'GRANT SELECT ON orders TO reader');
my ($rc, $out, $err) = $n1->psql('postgres',
	"SET ROLE reader; SELECT count(*) FROM orders o JOIN items i ON i.order_id = o.id WHERE o.id = 5");
like($err, qr/permission denied for table items/, 'no privilege on a joined table: 42501');
ok($mesh->no_prepared_xacts, 'no prepared transactions left');

done_testing();
