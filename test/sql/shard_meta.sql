-- Sharding metadata on a single node (every shard is local): the catalog,
-- the two views, create_distributed_table / create_reference_table /
-- add_range_shard / undistribute_table / shard_for, and every bad input.
-- Rows are checked in the shard tables themselves (routing queries over
-- the distributed table is the router's business).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY terse

-- try(sql): 'ok', or the SQLSTATE and message of the error sql raised
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- nothing is distributed yet
SELECT * FROM mycelium.tables;
SELECT * FROM mycelium.shards;

-- a hash table with rows: they move into the shards
CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL DEFAULT 'nobody',
                     amount numeric(10,2) CHECK (amount >= 0), note varchar(20) COLLATE "C");
CREATE INDEX orders_customer_idx ON orders (customer);
INSERT INTO orders SELECT g, 'c' || (g % 7), g * 1.5, NULL FROM generate_series(1, 1000) g;
CREATE ROLE shard_meta_reader;
GRANT SELECT ON orders TO shard_meta_reader;
GRANT UPDATE (customer) ON orders TO shard_meta_reader;
SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 4);
SELECT * FROM mycelium.tables;
SELECT * FROM mycelium.shards;
-- the shell is empty, the shards hold every row exactly once
SET mycelium.enable_routing = off;  -- look at the shell itself
SELECT count(*) FROM ONLY orders;
RESET mycelium.enable_routing;
SELECT (SELECT count(*) FROM orders_102008) + (SELECT count(*) FROM orders_102009) +
       (SELECT count(*) FROM orders_102010) + (SELECT count(*) FROM orders_102011) AS total;
-- each row is in the shard shard_for names
SELECT count(*) AS misplaced FROM (
  SELECT id, 102008 AS s FROM orders_102008 UNION ALL
  SELECT id, 102009 FROM orders_102009 UNION ALL
  SELECT id, 102010 FROM orders_102010 UNION ALL
  SELECT id, 102011 FROM orders_102011) x
 WHERE mycelium.shard_for('orders', x.id) <> x.s;
-- shards carry the definition: columns, default, check, primary key, index
SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'orders_102008'::regclass ORDER BY 1;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'orders_102008'::regclass ORDER BY conname;
SELECT attname, format_type(atttypid, atttypmod), attnotnull, collname
  FROM pg_attribute LEFT JOIN pg_collation c ON c.oid = attcollation AND attcollation <> 100
 WHERE attrelid = 'orders_102008'::regclass AND attnum > 0 ORDER BY attnum;
SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'orders_102008'::regclass;
-- and the privileges other roles hold on the table and its columns
SELECT has_table_privilege('shard_meta_reader', 'orders_102008', 'SELECT') AS sel,
       has_table_privilege('shard_meta_reader', 'orders_102008', 'INSERT') AS ins,
       has_column_privilege('shard_meta_reader', 'orders_102008', 'customer', 'UPDATE') AS upd_customer,
       has_column_privilege('shard_meta_reader', 'orders_102008', 'amount', 'UPDATE') AS upd_amount;

-- shard_for: types are coerced, NULL gives NULL
SELECT mycelium.shard_for('orders', 1::bigint), mycelium.shard_for('orders', 1),
       mycelium.shard_for('orders', '1'::text);
SELECT mycelium.shard_for('orders', NULL::bigint);
SELECT mycelium.shard_for('orders', 'x'::text);

-- default colocation: same shard count and column type share a group
CREATE TABLE items (order_id bigint, n int, PRIMARY KEY (order_id, n));
SELECT mycelium.create_distributed_table('items', 'order_id', shard_count => 4);
CREATE TABLE other32 (k int);
SELECT mycelium.create_distributed_table('other32', 'k');
CREATE TABLE texts (k text);
SELECT mycelium.create_distributed_table('texts', 'k', colocate_with => NULL, shard_count => 2);
SELECT table_name, method, distribution_column, shard_count, colocation_id FROM mycelium.tables;
SELECT count(*) FROM mycelium.shards WHERE table_name = 'other32'::regclass;
SELECT min(shard_id), max(shard_id) FROM mycelium.shards WHERE table_name = 'other32'::regclass;
-- hash ranges cover the int32 space
SELECT min_value, max_value FROM mycelium.shards WHERE table_name = 'texts'::regclass;
-- explicit colocation
CREATE TABLE payments (order_id bigint, amount int);
SELECT mycelium.create_distributed_table('payments', 'order_id', colocate_with => 'orders');
SELECT colocation_id = (SELECT colocation_id FROM mycelium.tables WHERE table_name = 'orders'::regclass)
  FROM mycelium.tables WHERE table_name = 'payments'::regclass;

-- reference table: stays the same table, rows in place
CREATE TABLE countries (code text PRIMARY KEY, name text);
INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan');
SELECT mycelium.create_reference_table('countries');
SELECT * FROM mycelium.tables WHERE method = 'reference';
SELECT count(*) FROM ONLY countries;
SELECT mycelium.shard_for('countries', 'fr'::text);

-- range tables
CREATE TABLE events (day date, what text);
SELECT mycelium.create_distributed_table('events', 'day', 'range');
SELECT mycelium.add_range_shard('events', '2024-01-01', '2024-02-01');
SELECT mycelium.add_range_shard('events', '2024-02-01', '2024-03-01', 'regress');
SELECT mycelium.add_range_shard('events', '2024-04-01', '2024-05-01');
SELECT shard_id, shard_name, min_value, max_value, node_name FROM mycelium.shards
 WHERE table_name = 'events'::regclass;
SELECT mycelium.shard_for('events', '2024-01-01'::date), mycelium.shard_for('events', '2024-01-31'::date),
       mycelium.shard_for('events', '2024-02-01'::date);
-- a gap between shards, and outside them: NULL
SELECT mycelium.shard_for('events', '2024-03-15'::date), mycelium.shard_for('events', '2023-12-31'::date),
       mycelium.shard_for('events', '2024-05-01'::date);
SELECT to_regclass('events_' || (SELECT min(shard_id) FROM mycelium.shards WHERE table_name = 'events'::regclass)) IS NOT NULL AS shard_exists;

-- bad input: each leaves everything unchanged
CREATE TABLE bad (id int PRIMARY KEY, u int UNIQUE, v int);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'nope')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'ctid')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'u')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id')$$);
ALTER TABLE bad DROP CONSTRAINT bad_u_key;
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', shard_count => 0)$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', shard_count => -3)$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', shard_count => 100000)$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', 'modulo')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', 'range', shard_count => 4)$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', colocate_with => 'texts')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', shard_count => 8, colocate_with => 'other32')$$);
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id', colocate_with => 'countries')$$);
SELECT try($$SELECT mycelium.create_distributed_table(NULL, 'id')$$);
SELECT try($$SELECT mycelium.create_distributed_table('orders', 'id')$$);
SELECT try($$SELECT mycelium.create_reference_table('orders')$$);
SELECT try($$SELECT mycelium.create_distributed_table('countries', 'code')$$);
CREATE TABLE nohash (p point);
SELECT try($$SELECT mycelium.create_distributed_table('nohash', 'p')$$);
SELECT try($$SELECT mycelium.create_distributed_table('nohash', 'p', 'range')$$);
CREATE TABLE parted (k int) PARTITION BY HASH (k);
SELECT try($$SELECT mycelium.create_distributed_table('parted', 'k')$$);
CREATE TABLE parted_0 PARTITION OF parted FOR VALUES WITH (MODULUS 1, REMAINDER 0);
SELECT try($$SELECT mycelium.create_distributed_table('parted_0', 'k')$$);
CREATE TEMP TABLE tmp (k int);
SELECT try($$SELECT mycelium.create_distributed_table('tmp', 'k')$$);
CREATE UNLOGGED TABLE unlogged_t (k int);
SELECT try($$SELECT mycelium.create_distributed_table('unlogged_t', 'k')$$);
CREATE TABLE parent (k int);
CREATE TABLE child () INHERITS (parent);
SELECT try($$SELECT mycelium.create_distributed_table('parent', 'k')$$);
SELECT try($$SELECT mycelium.create_distributed_table('child', 'k')$$);
CREATE TABLE fk_target (k int PRIMARY KEY);
CREATE TABLE fk_source (k int REFERENCES fk_target);
SELECT try($$SELECT mycelium.create_distributed_table('fk_target', 'k')$$);
SELECT try($$SELECT mycelium.create_distributed_table('fk_source', 'k')$$);
SELECT try($$SELECT mycelium.create_reference_table('fk_target')$$);
CREATE VIEW a_view AS SELECT 1 AS k;
SELECT try($$SELECT mycelium.create_distributed_table('a_view', 'k')$$);
SELECT try($$SELECT mycelium.create_distributed_table('mycelium.node', 'node_id')$$);
CREATE TABLE excl (k int, EXCLUDE USING btree (k WITH =));
SELECT try($$SELECT mycelium.create_distributed_table('excl', 'k')$$);
CREATE TABLE nulls (k int);
INSERT INTO nulls VALUES (1), (NULL);
SELECT try($$SELECT mycelium.create_distributed_table('nulls', 'k')$$);
SELECT count(*) FROM nulls;
CREATE TABLE ranged_rows (k int);
INSERT INTO ranged_rows VALUES (1);
SELECT try($$SELECT mycelium.create_distributed_table('ranged_rows', 'k', 'range')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2024-01-15', '2024-02-15')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2023-12-01', '2024-06-01')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2024-07-01', '2024-06-01')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2024-07-01', '2024-07-01')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', 'yesterday-ish', '2024-07-01')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2024-07-01', '2024-08-01', 'nowhere')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', NULL, '2024-08-01')$$);
SELECT try($$SELECT mycelium.add_range_shard('orders', '1', '2')$$);
SELECT try($$SELECT mycelium.add_range_shard('bad', '1', '2')$$);
SELECT try($$SELECT mycelium.shard_for('bad', 1)$$);
SELECT try($$SELECT mycelium.shard_for('countries', 'fr'::text)$$);
SELECT try($$SELECT mycelium.shard_for('orders', 'abc'::text)$$);
SELECT try($$SELECT mycelium.undistribute_table('bad')$$);
-- nothing changed
SELECT count(*) FROM mycelium.tables;
SELECT count(*) FROM mycelium.shards;
SELECT count(*) FROM pg_class WHERE relname ~ '^(bad|nulls|ranged_rows|nohash|excl)_[0-9]+$';

-- a role that does not own the table
CREATE ROLE shard_meta_stranger;
GRANT ALL ON bad TO shard_meta_stranger;
SET ROLE shard_meta_stranger;
SELECT try($$SELECT mycelium.create_distributed_table('bad', 'id')$$);
SELECT try($$SELECT mycelium.create_reference_table('bad')$$);
SELECT try($$SELECT mycelium.undistribute_table('orders')$$);
SELECT try($$SELECT mycelium.add_range_shard('events', '2024-09-01', '2024-10-01')$$);
RESET ROLE;
-- an owner that is not a superuser may distribute, split, move and
-- undistribute its table; the shards are its own
CREATE ROLE shard_meta_owner;
CREATE TABLE owned (k int PRIMARY KEY, v int CHECK (v >= 0));
INSERT INTO owned SELECT g, g FROM generate_series(1, 100) g;
ALTER TABLE owned OWNER TO shard_meta_owner;
CREATE TABLE owned_ref (k int);
ALTER TABLE owned_ref OWNER TO shard_meta_owner;
CREATE TABLE owned_range (d date);
ALTER TABLE owned_range OWNER TO shard_meta_owner;
SET ROLE shard_meta_owner;
SELECT mycelium.create_distributed_table('owned', 'k', shard_count => 2);
SELECT mycelium.create_reference_table('owned_ref');
SELECT mycelium.create_distributed_table('owned_range', 'd', 'range');
SELECT mycelium.add_range_shard('owned_range', '2024-01-01', '2024-02-01') > 0 AS added;
SELECT mycelium.split_shard((SELECT min(shard_id) FROM mycelium.shards
                              WHERE table_name = 'owned'::regclass), '-1073741824') > 0 AS split;
SET client_min_messages = warning;  -- "already on node": no other node here
SELECT mycelium.move_shard((SELECT min(shard_id) FROM mycelium.shards
                             WHERE table_name = 'owned'::regclass), 'regress');
RESET client_min_messages;
SELECT * FROM mycelium.rebalance('owned');
-- node-level operations stay with superusers
SELECT try($$SELECT * FROM mycelium.rebalance()$$);
SELECT try($$SELECT mycelium.drain_node('regress')$$);
SELECT try($$SELECT mycelium.activate_node('regress')$$);
RESET ROLE;
SELECT count(*) AS shards, count(*) FILTER (WHERE pg_get_userbyid(c.relowner) = 'shard_meta_owner') AS owned
  FROM mycelium.shards s JOIN pg_class c ON c.relname = s.shard_name
 WHERE s.table_name IN ('owned'::regclass, 'owned_range'::regclass);
SELECT count(*) AS shards, sum((xpath('/row/c/text()', query_to_xml(
         'SELECT count(*) AS c FROM ' || shard_name, false, true, '')))[1]::text::int) AS total
  FROM mycelium.shards WHERE table_name = 'owned'::regclass;
-- a stranger may not touch its shards
SET ROLE shard_meta_stranger;
SELECT try($$SELECT mycelium.split_shard((SELECT min(shard_id) FROM mycelium.shards WHERE table_name = 'owned'::regclass), '-1500000000')$$);
SELECT try($$SELECT mycelium.move_shard((SELECT min(shard_id) FROM mycelium.shards WHERE table_name = 'owned'::regclass), 'regress')$$);
SELECT try($$SELECT * FROM mycelium.rebalance('owned')$$);
SELECT try($$SELECT mycelium.undistribute_table('owned_ref')$$);
RESET ROLE;
SET ROLE shard_meta_owner;
SELECT mycelium.undistribute_table('owned');
SELECT mycelium.undistribute_table('owned_ref');
SELECT mycelium.undistribute_table('owned_range');
SELECT count(*), sum(v) FROM owned;
RESET ROLE;
DROP TABLE owned, owned_ref, owned_range;
DROP ROLE shard_meta_owner;

-- colocation survives a split: colocated shards split together, a table
-- colocated later gets the split ranges, an implicit group never is one
-- that was split
CREATE TABLE co_a (k int);
CREATE TABLE co_b (k int);
INSERT INTO co_a SELECT generate_series(1, 200);
INSERT INTO co_b SELECT generate_series(1, 200);
SELECT mycelium.create_distributed_table('co_a', 'k', shard_count => 3);
SELECT mycelium.create_distributed_table('co_b', 'k', colocate_with => 'co_a');
SELECT mycelium.split_shard((SELECT min(shard_id) FROM mycelium.shards WHERE table_name = 'co_a'::regclass), '-1500000000') > 0 AS split;
CREATE TABLE co_c (k int);
SELECT mycelium.create_distributed_table('co_c', 'k', colocate_with => 'co_b');
CREATE TABLE co_d (k int);
SELECT mycelium.create_distributed_table('co_d', 'k', shard_count => 4);
SELECT t.table_name, t.shard_count, t.colocation_id = a.colocation_id AS with_co_a
  FROM mycelium.tables t, mycelium.tables a
 WHERE a.table_name = 'co_a'::regclass AND t.table_name::text LIKE 'co_%';
-- every table of the group has the same ranges on the same nodes
SELECT count(DISTINCT (min_value, max_value, node_name)) AS ranges,
       count(*) FILTER (WHERE table_name <> 'co_d'::regclass) / 3 AS per_table
  FROM mycelium.shards WHERE table_name IN ('co_a'::regclass, 'co_b'::regclass, 'co_c'::regclass);
SELECT string_agg(min_value || '..' || max_value, ' ' ORDER BY min_value::int) FROM mycelium.shards
 WHERE table_name = 'co_c'::regclass;
-- a split of co_c splits co_a and co_b too; rows stay where shard_for says
SELECT mycelium.split_shard((SELECT max(shard_id) FROM mycelium.shards WHERE table_name = 'co_c'::regclass), '2000000000') > 0 AS split;
SELECT table_name, count(*) FROM mycelium.shards WHERE table_name::text LIKE 'co_%' GROUP BY 1 ORDER BY 1;
SELECT count(DISTINCT (min_value, max_value, node_name)) AS ranges
  FROM mycelium.shards WHERE table_name IN ('co_a'::regclass, 'co_b'::regclass, 'co_c'::regclass);
SELECT count(*), count(DISTINCT k) FROM co_a;
SELECT count(*) FROM co_a a JOIN co_b b USING (k);
SELECT mycelium.undistribute_table(t) FROM unnest(ARRAY['co_a', 'co_b', 'co_c', 'co_d']::regclass[]) t;
DROP TABLE co_a, co_b, co_c, co_d;

-- node status: activate_node of an active node is a no-op; draining
-- needs another node; bad names
SELECT mycelium.activate_node('regress');
SELECT try($$SELECT mycelium.activate_node('nowhere')$$);
SELECT try($$SELECT mycelium.activate_node(NULL)$$);
SELECT try($$SELECT mycelium.drain_node('nowhere')$$);

-- the catalog changes invalidate cached plans over the table
PREPARE q AS SELECT count(*) FROM mycelium.shards WHERE table_name = 'bad'::regclass;
EXECUTE q;
SELECT mycelium.create_distributed_table('bad', 'id', shard_count => 2);
EXECUTE q;

-- undistribute: rows come back, shards go
SELECT mycelium.undistribute_table('orders');
SELECT count(*), sum(amount) FROM ONLY orders;
SELECT count(*) FROM pg_class WHERE relname ~ '^orders_[0-9]+$';
SELECT mycelium.undistribute_table('countries');
SELECT mycelium.undistribute_table('events');
SELECT table_name, method FROM mycelium.tables;
-- and the table can be distributed again
SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 3);
SET mycelium.enable_routing = off;  -- look at the shell itself
SELECT count(*) FROM ONLY orders;
RESET mycelium.enable_routing;
SELECT shard_count FROM mycelium.tables WHERE table_name = 'orders'::regclass;

-- clean up
SELECT mycelium.undistribute_table(table_name) FROM mycelium.tables;
SELECT count(*) FROM mycelium.shard;
DROP VIEW a_view;
DROP TABLE orders, items, other32, texts, payments, countries, events, bad, nohash, parted,
  unlogged_t, parent, child, fk_source, fk_target, excl, nulls, ranged_rows CASCADE;
DROP ROLE shard_meta_stranger, shard_meta_reader;
DROP FUNCTION try(text);
