# shellcheck shell=bash
# Demo step: sharding and query routing (docs/sharding.md).  Sourced by the
# demo, which provides say, demo_sql and mesh_psql.  demo_sql shows errors
# and goes on, so a step that fails is visible but does not stop the demo.

say "Sharding: a table split into 6 shards over the three nodes"
demo_sql 1 "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL,
  country text NOT NULL, amount numeric(10,2) NOT NULL)"
demo_sql 1 "INSERT INTO orders
  SELECT g, 'customer ' || (g % 40), (ARRAY['fr','de','jp','br'])[g % 4 + 1], (g * 7 % 500) + 0.99
    FROM generate_series(1, 1000) g"
demo_sql 1 "SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 6)"
demo_sql 2 "SELECT shard_id, shard_name, min_value, max_value, node_name FROM mycelium.shards
  WHERE table_name = 'orders'::regclass ORDER BY shard_id"

say "Rows inserted on any node go to the shard of their key"
demo_sql 3 "INSERT INTO orders VALUES (1001, 'customer 1', 'fr', 12.50), (1002, 'customer 2', 'jp', 99.00)
  RETURNING *"
demo_sql 3 "SELECT id, mycelium.shard_for('orders', id) AS shard_id FROM (VALUES (1001::bigint), (1002)) v(id)"

say "A query by key is routed to the one shard that holds it (here from n2)"
demo_sql 2 "SELECT * FROM orders WHERE id = 1001"
demo_sql 2 "EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE id = 1001"

say "Other queries fan out to every shard in parallel; aggregates are combined on the calling node"
demo_sql 3 "SELECT country, count(*), sum(amount), round(avg(amount), 2) AS avg
  FROM orders GROUP BY country ORDER BY country"
demo_sql 3 "EXPLAIN (COSTS OFF) SELECT country, count(*) FROM orders GROUP BY country"

say "A reference table has a copy on every node; joins with it answer from any node"
demo_sql 1 "CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL)"
demo_sql 1 "INSERT INTO countries VALUES ('fr', 'France'), ('de', 'Germany'), ('jp', 'Japan'), ('br', 'Brazil')"
demo_sql 1 "SELECT mycelium.create_reference_table('countries')"
demo_sql 2 "SELECT c.name, count(*) AS orders FROM orders o JOIN countries c ON c.code = o.country
  GROUP BY c.name ORDER BY c.name"

say "Co-located tables: order lines live next to their order, so joins run on the shards"
demo_sql 1 "CREATE TABLE order_lines (order_id bigint NOT NULL, line int NOT NULL, qty int NOT NULL,
  PRIMARY KEY (order_id, line))"
demo_sql 1 "SELECT mycelium.create_distributed_table('order_lines', 'order_id', colocate_with => 'orders')"
demo_sql 1 "INSERT INTO order_lines SELECT o, l, (o + l) % 5 + 1 FROM generate_series(1, 1000) o, generate_series(1, 3) l"
demo_sql 3 "SELECT c.name, count(*) AS lines, sum(l.qty) AS qty FROM orders o
  JOIN order_lines l ON l.order_id = o.id JOIN countries c ON c.code = o.country
  GROUP BY c.name ORDER BY c.name"
demo_sql 3 "EXPLAIN (COSTS OFF) SELECT c.name, sum(l.qty) FROM orders o
  JOIN order_lines l ON l.order_id = o.id JOIN countries c ON c.code = o.country GROUP BY c.name"
say "With the key fixed, the whole query (join, aggregate, order) goes to the one node that holds it"
demo_sql 3 "EXPLAIN (COSTS OFF) SELECT o.id, o.customer, sum(l.qty) FROM orders o
  JOIN order_lines l ON l.order_id = o.id WHERE o.id = 42 GROUP BY o.id, o.customer"

say "A query shape the router cannot run correctly is refused (0A000), never answered wrongly"
demo_sql 1 "UPDATE orders SET id = id + 5000 WHERE id = 1"

say "Moving a shard to another node while the table stays online"
shard=$(mesh_psql 1 "SELECT shard_id FROM mycelium.shards WHERE table_name = 'orders'::regclass
  AND node_name = 'n1' ORDER BY shard_id LIMIT 1" 2>/dev/null || true)
key=
[ -n "$shard" ] && key=$(mesh_psql 1 "SELECT g FROM generate_series(1, 1000) g
  WHERE mycelium.shard_for('orders', g::bigint) = $shard LIMIT 1" 2>/dev/null || true)
if [ -n "$key" ]; then
	demo_sql 2 "EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE id = $key"
	demo_sql 1 "SELECT mycelium.move_shard($shard, 'n3')"
	demo_sql 2 "SELECT shard_id, shard_name, node_name FROM mycelium.shards WHERE shard_id = $shard"
	demo_sql 2 "EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE id = $key"
	demo_sql 2 "SELECT * FROM orders WHERE id = $key"
	demo_sql 1 "SELECT count(*) AS all_rows FROM orders"
else
	echo "(no shard of orders on n1 to move)"
fi
