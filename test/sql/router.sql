-- Query routing on a single node (every shard is local and read without a
-- connection): routed and fan-out queries and what EXPLAIN shows of them,
-- writes, prepared statements, NULL distribution values, unsupported
-- shapes (0A000 with a hint, never a wrong answer) and privileges (42501,
-- checked on the distributed table before any routing).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
CREATE SCHEMA router_t;
SET search_path = router_t, public;

CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, label text, price numeric(8,2));
INSERT INTO items SELECT g, g % 5, 'item' || g, g * 0.5 FROM generate_series(1, 100) g;
SELECT mycelium.create_distributed_table('items', 'id', shard_count => 4);
CREATE TABLE parts (item_id int NOT NULL, part int NOT NULL, qty int,
                    PRIMARY KEY (item_id, part));
INSERT INTO parts SELECT g, p, g * p FROM generate_series(1, 100) g, generate_series(1, 2) p;
SELECT mycelium.create_distributed_table('parts', 'item_id', colocate_with => 'items');
CREATE TABLE groups (grp int PRIMARY KEY, name text NOT NULL);
INSERT INTO groups SELECT g, 'group' || g FROM generate_series(0, 4) g;
SELECT mycelium.create_reference_table('groups');
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain VALUES (1, 'one'), (2, 'two');

-- a routed query touches one shard
SELECT * FROM items WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id = 42;
SELECT id, label FROM items WHERE id IN (1, 2, 3) ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id, label FROM items WHERE id IN (1, 2, 3);
SELECT * FROM items WHERE id = 1000;

-- others fan out to every shard and are merged here
SELECT count(*), sum(price), min(id), max(id), avg(price) FROM items;
EXPLAIN (COSTS OFF) SELECT count(*) FROM items;
EXPLAIN (VERBOSE, COSTS OFF) SELECT grp, count(*), avg(price) FROM items GROUP BY grp;
SELECT grp, count(*), sum(price), avg(price) FROM items GROUP BY grp HAVING count(*) >= 20 ORDER BY grp;
SELECT id, price FROM items ORDER BY price DESC, id LIMIT 3 OFFSET 2;
SELECT DISTINCT grp FROM items ORDER BY grp;
SELECT count(DISTINCT grp) FROM items WHERE label LIKE 'item1%';

-- joins of colocated tables on the distribution column, and with a
-- reference table, are pushed down
SELECT i.id, p.part, p.qty FROM items i JOIN parts p ON p.item_id = i.id
 WHERE i.id = 7 ORDER BY p.part;
EXPLAIN (COSTS OFF) SELECT i.id, p.part FROM items i JOIN parts p ON p.item_id = i.id WHERE i.id = 7;
SELECT g.name, count(*), sum(p.qty) FROM items i JOIN parts p ON p.item_id = i.id
  JOIN groups g ON g.grp = i.grp GROUP BY g.name ORDER BY g.name;
EXPLAIN (COSTS OFF) SELECT g.name, i.id FROM items i JOIN groups g USING (grp) WHERE i.id = 3;
SELECT * FROM groups ORDER BY grp;

-- subqueries and CTEs
SELECT count(*) FROM items WHERE id IN (SELECT item_id FROM parts WHERE qty > 150);
SELECT count(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM parts p WHERE p.item_id = i.id AND p.qty > 100);
WITH t AS (SELECT item_id, sum(qty) AS s FROM parts GROUP BY item_id)
SELECT count(*), max(s) FROM t WHERE s > 100;
WITH one AS (SELECT * FROM items WHERE id = 5) SELECT id, label FROM one;

-- a local table is left alone
EXPLAIN (COSTS OFF) SELECT * FROM plain WHERE id = 1;
SELECT p.v, i.label FROM plain p JOIN items i ON i.id = p.id ORDER BY p.id;

-- NULL distribution values: no shard holds them, so nothing matches
SELECT * FROM items WHERE id = NULL;
SELECT id FROM items WHERE id IN (5, NULL);
SELECT count(*) FROM items WHERE id IS NULL;
SELECT count(*) FROM items WHERE id = 5 OR id IS NULL;
\set VERBOSITY terse
INSERT INTO items VALUES (NULL, 1, 'null key', 1);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE nullable (k int, v text);
SELECT mycelium.create_distributed_table('nullable', 'k', shard_count => 2);
INSERT INTO nullable VALUES (NULL, 'no shard for it');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO nullable VALUES (1, 'one'), (NULL, 'none');
SELECT count(*) FROM nullable;
\set VERBOSITY default

-- writes go to the shards their rows belong to
INSERT INTO items VALUES (101, 1, 'new', 9.99) RETURNING *;
INSERT INTO items VALUES (102, 2, 'a', 1), (103, 3, 'b', 2), (104, 4, 'c', 3) RETURNING id;
INSERT INTO items VALUES (101, 1, 'again', 1)
  ON CONFLICT (id) DO UPDATE SET label = excluded.label RETURNING id, label;
INSERT INTO items VALUES (101, 1, 'ignored', 1) ON CONFLICT DO NOTHING RETURNING id;
UPDATE items SET price = price + 1 WHERE id = 101 RETURNING id, price;
UPDATE items SET price = price * 2 WHERE grp = 4 AND id > 100 RETURNING id, price;
DELETE FROM items WHERE id IN (102, 103) RETURNING id;
EXPLAIN (COSTS OFF) UPDATE items SET price = 0 WHERE id = 101;
EXPLAIN (COSTS OFF) DELETE FROM items WHERE grp = 1;
INSERT INTO items VALUES (101, 1, 'duplicate', 1);
-- a multi-shard write is one transaction
BEGIN;
DELETE FROM items WHERE id > 100;
SELECT count(*) FROM items;
ROLLBACK;
SELECT count(*) FROM items;
UPDATE groups SET name = 'zero' WHERE grp = 0 RETURNING *;

-- prepared statements pick the shard at every execution
PREPARE one(int) AS SELECT id, label FROM items WHERE id = $1;
SET plan_cache_mode = force_generic_plan;
EXECUTE one(10);
EXECUTE one(20);
EXECUTE one(NULL);
EXPLAIN (COSTS OFF) EXECUTE one(10);
PREPARE upd(int, numeric) AS UPDATE items SET price = $2 WHERE id = $1 RETURNING id, price;
EXECUTE upd(11, 1.5);
EXECUTE upd(12, 2.5);
RESET plan_cache_mode;
DEALLOCATE one;
DEALLOCATE upd;

-- a shape the router cannot run fails with 0A000 and a hint; others it
-- runs by pulling the rows it needs here
\set VERBOSITY default
UPDATE items SET id = id + 1000 WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM items WHERE id = 1 FOR UPDATE;
\echo :LAST_ERROR_SQLSTATE
SELECT i.id FROM items i JOIN parts p ON p.qty = i.id WHERE i.grp = 1 ORDER BY i.id LIMIT 3;
SELECT id, rank() OVER (ORDER BY price DESC, id) FROM items ORDER BY id LIMIT 3;
\set VERBOSITY terse

-- privileges are those of the distributed table, checked before routing
CREATE ROLE router_nobody;
GRANT USAGE ON SCHEMA router_t TO router_nobody;
SET ROLE router_nobody;
SELECT * FROM items WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM items;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id = 1;
INSERT INTO items VALUES (500, 1, 'x', 1);
RESET ROLE;
GRANT SELECT ON items TO router_nobody;
SET ROLE router_nobody;
SELECT id, label FROM items WHERE id = 1;
SELECT count(*) FROM items;
UPDATE items SET price = 1 WHERE id = 1;
DELETE FROM items WHERE id = 1;
RESET ROLE;
REVOKE SELECT ON items FROM router_nobody;
GRANT SELECT (id) ON items TO router_nobody;
SET ROLE router_nobody;
SELECT id FROM items WHERE id = 1;
SELECT label FROM items WHERE id = 1;
RESET ROLE;
REVOKE ALL ON items FROM router_nobody;
REVOKE ALL ON SCHEMA router_t FROM router_nobody;
DROP ROLE router_nobody;

-- clean up: the tables become local again, then go
SELECT mycelium.undistribute_table('nullable');
SELECT mycelium.undistribute_table('parts');
SELECT mycelium.undistribute_table('items');
SELECT mycelium.undistribute_table('groups');
SELECT * FROM mycelium.tables;
RESET search_path;
DROP SCHEMA router_t CASCADE;
