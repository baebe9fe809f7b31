-- The mycelium_sqlite foreign data wrapper: options, reads and strict
-- conversion, pushdown, writes and transactions, bad input.
-- SQLite files live in /tmp/mycelium_sqlite_regress_*.db; tables are
-- dropped and re-created first, so the test can run again.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- options: required, unknown and bad values are refused
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite;
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/x.db', host 'localhost');
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '');
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/x.db', busy_timeout '-5');
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/x.db', busy_timeout '1s');
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/x.db', batch_size '0');
CREATE SERVER sq_bad FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/x.db', readonly 'perhaps');
CREATE SERVER sq FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/mycelium_sqlite_regress.db', busy_timeout '200', batch_size '3');
ALTER SERVER sq OPTIONS (ADD table 't');
CREATE FOREIGN TABLE sq_opt (a int) SERVER sq OPTIONS (tabel 't');
CREATE FOREIGN TABLE sq_opt (a int OPTIONS (name 'b')) SERVER sq;
CREATE USER MAPPING FOR CURRENT_USER SERVER sq OPTIONS (user 'x');

-- start from no file at all (a previous run leaves one behind)
COPY (SELECT 1) TO PROGRAM 'rm -f /tmp/mycelium_sqlite_regress.db /tmp/mycelium_sqlite_regress.db-journal /tmp/mycelium_sqlite_regress_corrupt.db';
-- build the SQLite file (created on first use by sqlite_execute)
SELECT mycelium.sqlite_execute('sq', $$
  DROP TABLE IF EXISTS item; DROP TABLE IF EXISTS odd; DROP TABLE IF EXISTS kv;
  DROP VIEW IF EXISTS forever; DROP TABLE IF EXISTS "Mixed Case";
  CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL,
                     qty INT, amount NUMERIC, created DATETIME, day DATE,
                     flag BOOLEAN, data BLOB, uid UUID, doc JSON, note VARCHAR(20));
  INSERT INTO item VALUES
    (1, 'apple', 0.5, 10, '12.3456789012345678901', '2024-01-02 03:04:05', '2024-01-02', 1, x'00ff', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', '{"a": 1}', 'Zeta'),
    (2, 'Banana', 0.25, NULL, 9007199254740993, 1700000000, 1700000000, 0, NULL, x'6ba7b8109dad11d180b400c04fd430c8', '[1,2]', 'alpha'),
    (3, 'cherry', NULL, 7, NULL, '2024-02-29T12:00:00.5', NULL, 'true', 'text', NULL, NULL, NULL),
    (4, 'dätë', 1e300, -3, 2.5, 1700000000.25, '1999-12-31', NULL, x'', NULL, '"s"', 'beta'),
    (5, 'élan', -0.0, 0, -7, NULL, NULL, NULL, NULL, NULL, NULL, 'Alpha');
  CREATE TABLE odd (k INTEGER PRIMARY KEY, i INT, t TEXT, r REAL, x);
  INSERT INTO odd VALUES
    (1, 42, '42', 1.5, 'NaN'),
    (2, 'forty', 'x', 'Infinity', 'Infinity'),
    (3, 9223372036854775807, CAST(x'41ff42' AS TEXT), 1e308, '-Infinity'),
    (4, 99999999999999999999, 'now', 3.0, x'0102'),
    (5, 2.5, '2021-13-01', NULL, 1e400);
  CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);
  CREATE TABLE "Mixed Case" ("Col One" TEXT, two INTEGER);
  CREATE VIEW forever AS
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
    SELECT x FROM c WHERE x < 0;
$$);
SELECT server_name, database, readonly, in_transaction FROM mycelium.sqlite_connections();

-- IMPORT FOREIGN SCHEMA: type mapping, LIMIT TO and EXCEPT
CREATE SCHEMA sq_import;
IMPORT FOREIGN SCHEMA main FROM SERVER sq INTO sq_import;
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'sq_import'::regnamespace AND a.attnum > 0
 ORDER BY c.relname, a.attnum;
DROP SCHEMA sq_import CASCADE;
CREATE SCHEMA sq_import;
IMPORT FOREIGN SCHEMA main LIMIT TO (item, kv) FROM SERVER sq INTO sq_import;
SELECT relname FROM pg_class WHERE relnamespace = 'sq_import'::regnamespace ORDER BY 1;
DROP SCHEMA sq_import CASCADE;
CREATE SCHEMA sq_import;
IMPORT FOREIGN SCHEMA main EXCEPT (item, odd, forever) FROM SERVER sq INTO sq_import;
SELECT relname FROM pg_class WHERE relnamespace = 'sq_import'::regnamespace ORDER BY 1;
SELECT * FROM sq_import."Mixed Case";
DROP SCHEMA sq_import CASCADE;

-- reads: every supported type
CREATE FOREIGN TABLE item (
  id int8, name text, price float8, qty int4, amount numeric,
  created timestamp, day date, flag boolean, data bytea, uid uuid,
  doc jsonb, note varchar(20)) SERVER sq;
SELECT * FROM item ORDER BY id;
SET timezone = 'UTC';
CREATE FOREIGN TABLE item_tz (id int2, created timestamptz, day date, price float4)
  SERVER sq OPTIONS (table 'item');
SELECT id, created, day FROM item_tz ORDER BY id;
SELECT id, price FROM item_tz ORDER BY id;
CREATE FOREIGN TABLE item_renamed (ident int OPTIONS (column_name 'id'),
  label text OPTIONS (column_name 'name')) SERVER sq OPTIONS (table 'item');
SELECT * FROM item_renamed WHERE ident <= 2 ORDER BY ident;

-- values that do not fit are errors naming table, column, storage class
-- and value; NULL stays NULL; NaN and infinities follow PostgreSQL
CREATE FOREIGN TABLE odd_i (k int, i int8) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_i WHERE k = 1;
SELECT * FROM odd_i WHERE k = 2;
SELECT * FROM odd_i WHERE k = 3;
SELECT * FROM odd_i WHERE k = 4;
SELECT * FROM odd_i WHERE k = 5;
CREATE FOREIGN TABLE odd_i4 (k int, i int4) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_i4 WHERE k = 3;
CREATE FOREIGN TABLE odd_t (k int, t text) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_t WHERE k = 3;
SELECT * FROM odd_t WHERE k IN (1, 2) ORDER BY k;
CREATE FOREIGN TABLE odd_ts (k int, t timestamp) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_ts WHERE k = 4;
SELECT * FROM odd_ts WHERE k = 5;
CREATE FOREIGN TABLE odd_x (k int, x numeric) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_x WHERE k IN (1, 2, 3) ORDER BY k;
SELECT * FROM odd_x WHERE k = 4;
CREATE FOREIGN TABLE odd_xf (k int, x float8, r float4) SERVER sq OPTIONS (table 'odd');
SELECT * FROM odd_xf WHERE k IN (1, 2) ORDER BY k;
SELECT * FROM odd_xf WHERE k = 3;
SELECT k, x FROM odd_xf WHERE k = 5;
CREATE FOREIGN TABLE odd_b (k int, x bytea, i boolean) SERVER sq OPTIONS (table 'odd');
SELECT k, x FROM odd_b WHERE k = 4;
SELECT k, x FROM odd_b WHERE k = 5;
SELECT k, i FROM odd_b WHERE k = 1;
-- the backend is still fine
SELECT count(*) FROM item;
-- ANALYZE samples the SQLite table; bad values stop it with the same error
ANALYZE item;
SELECT reltuples FROM pg_class WHERE oid = 'item'::regclass;
SELECT attname, null_frac FROM pg_stats WHERE tablename = 'item' AND attname IN ('id', 'qty') ORDER BY 1;
ANALYZE odd_i;

-- missing table and column; identifiers are never string literals
CREATE FOREIGN TABLE sq_missing (a int) SERVER sq;
SELECT * FROM sq_missing;
CREATE FOREIGN TABLE sq_nocol (id int, nope int) SERVER sq OPTIONS (table 'item');
SELECT * FROM sq_nocol;

-- missing, unopenable and corrupt files
CREATE SERVER sq_nofile FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/mycelium_sqlite_regress_does_not_exist.db');
CREATE FOREIGN TABLE sq_nofile_t (a int) SERVER sq_nofile;
SELECT * FROM sq_nofile_t;
CREATE SERVER sq_dir FOREIGN DATA WRAPPER mycelium_sqlite OPTIONS (database '/');
CREATE FOREIGN TABLE sq_dir_t (a int) SERVER sq_dir;
SELECT * FROM sq_dir_t;
COPY (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i)
  TO '/tmp/mycelium_sqlite_regress_corrupt.db';
CREATE SERVER sq_corrupt FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/mycelium_sqlite_regress_corrupt.db');
CREATE FOREIGN TABLE sq_corrupt_t (a int) SERVER sq_corrupt;
SELECT * FROM sq_corrupt_t;
INSERT INTO sq_corrupt_t VALUES (1);
SELECT server_name FROM mycelium.sqlite_connections() ORDER BY 1;

-- pushdown: only what SQLite answers as PostgreSQL would
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE id = 2;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id FROM item WHERE qty BETWEEN 0 AND 10 OR qty IS NULL;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id FROM item WHERE id IN (1, 3, 5) AND NOT (price > 0.3);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE id <> ALL ('{1,2}');
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name = 'apple';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE note = 'Zeta';
-- not pushed: text order, arithmetic, functions, numeric, dates
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name < 'b';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name LIKE 'a%';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE qty * 1000000000 > 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE qty / 2 = 3;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE lower(name) = 'apple';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE amount > 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE day > '2000-01-01';
-- LIKE is sent as GLOB (case-sensitive, like PostgreSQL's), ILIKE is not
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name LIKE 'B%' OR note NOT LIKE '_eta';
SELECT id FROM item WHERE name LIKE 'B%' OR note NOT LIKE '_eta' ORDER BY id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name LIKE 'a*[?''\%%';
SELECT mycelium.sqlite_execute('sq', $$INSERT INTO kv VALUES (-1, 'a*[?''%x'), (-2, 'ab[?''%x'), (-3, 'a*[?''_x')$$);
CREATE FOREIGN TABLE kv_like (k int8, v text) SERVER sq OPTIONS (table 'kv');
SELECT k FROM kv_like WHERE v LIKE 'a*[?''\%%' ORDER BY k;
SELECT k FROM kv_like WHERE v LIKE 'a_[?''_x' ORDER BY k;
SELECT mycelium.sqlite_execute('sq', 'DELETE FROM kv WHERE k < 0');
SELECT id FROM item WHERE name LIKE 'x\';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name ILIKE 'b%';
-- text equality under a nondeterministic collation stays local
CREATE COLLATION sq_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name = 'APPLE' COLLATE sq_ci;
SELECT id FROM item WHERE name = 'APPLE' COLLATE sq_ci;
SELECT name COLLATE sq_ci, count(*) FROM item GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1;
DROP COLLATION sq_ci;
SELECT id FROM item WHERE name LIKE 'b%';
SELECT id FROM item WHERE name ILIKE 'b%';
SELECT id FROM item WHERE qty * 1000000000 > 1;
SELECT id, qty / 2 FROM item WHERE qty / 2 = 3;
SELECT id FROM item WHERE id <> ALL ('{1,2}') ORDER BY id;
SELECT id FROM item WHERE qty BETWEEN 0 AND 10 OR qty IS NULL ORDER BY id;
SELECT id FROM item WHERE id IN (1, 3, 5) AND NOT (price > 0.3) ORDER BY id;
-- ORDER BY: numbers with NULLS FIRST/LAST; text only under "C"
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, price FROM item ORDER BY price NULLS FIRST, id;
SELECT id, price FROM item ORDER BY price NULLS FIRST, id;
SELECT id, price FROM item ORDER BY price DESC NULLS LAST, id;
SELECT id, qty FROM item ORDER BY qty DESC, id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT name FROM item ORDER BY name;
EXPLAIN (VERBOSE, COSTS OFF) SELECT name FROM item ORDER BY name COLLATE "C";
SELECT name FROM item ORDER BY name COLLATE "C";
SELECT max(name COLLATE "C"), min(note COLLATE "C") FROM item;
-- LIMIT and OFFSET go to SQLite when everything below them does
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item LIMIT 2;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id, price FROM item WHERE id > 1 ORDER BY price DESC NULLS LAST LIMIT 2 OFFSET 1;
SELECT id, price FROM item WHERE id > 1 ORDER BY price DESC NULLS LAST LIMIT 2 OFFSET 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item OFFSET 3;
SELECT id FROM item ORDER BY id OFFSET 3;
EXPLAIN (VERBOSE, COSTS OFF) SELECT name FROM item ORDER BY name LIMIT 2;
SELECT name FROM item ORDER BY name LIMIT 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM item WHERE name ILIKE '%a%' LIMIT 2;
SELECT id FROM item WHERE name ILIKE '%a%' LIMIT 2;
-- aggregates: count, sum of int2/int4, min/max, GROUP BY plain columns
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM item;
SELECT count(*) FROM item;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT flag, count(*), count(price), sum(qty), min(qty), max(price), max(id)
    FROM item WHERE id > 1 GROUP BY flag;
SELECT flag, count(*), count(price), sum(qty), min(qty), max(price), max(id)
  FROM item WHERE id > 1 GROUP BY flag ORDER BY flag;
EXPLAIN (VERBOSE, COSTS OFF) SELECT qty, count(*) FROM item GROUP BY qty;
SELECT qty, count(*) FROM item GROUP BY qty ORDER BY qty;
EXPLAIN (VERBOSE, COSTS OFF) SELECT min(name COLLATE "C"), max(note COLLATE "C") FROM item;
SELECT min(name COLLATE "C"), max(note COLLATE "C") FROM item;
SELECT count(*), sum(qty), max(price) FROM item WHERE id > 100;
-- kept local: sum(int8), avg, HAVING, DISTINCT, expressions, local filters
EXPLAIN (VERBOSE, COSTS OFF) SELECT sum(id), avg(qty) FROM item;
EXPLAIN (VERBOSE, COSTS OFF) SELECT qty, count(*) FROM item GROUP BY qty HAVING count(*) > 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(DISTINCT qty), count(*) + 1 FROM item;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM item WHERE name ILIKE 'a%';
SELECT sum(id), avg(qty), count(DISTINCT qty), count(*) + 1 FROM item;
-- Params of prepared statements are bound
PREPARE get_item(int8) AS SELECT id, name FROM item WHERE id = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE get_item(3);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE get_item(3);
EXECUTE get_item(3);
EXECUTE get_item(4);
RESET plan_cache_mode;
DEALLOCATE get_item;

-- a small local table joined to the foreign one: parameterized lookups
CREATE TABLE sq_local (id int8 PRIMARY KEY, tag text);
INSERT INTO sq_local VALUES (2, 'two'), (4, 'four'), (9, 'nine');
ANALYZE sq_local;
SELECT mycelium.sqlite_execute('sq', $$
  DROP TABLE IF EXISTS big;
  CREATE TABLE big (id INTEGER PRIMARY KEY, v INT);
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
  INSERT INTO big SELECT x, x * 2 FROM c;
$$);
CREATE FOREIGN TABLE big (id int8, v int8) SERVER sq;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT l.tag, b.v FROM sq_local l JOIN big b ON b.id = l.id;
SELECT l.tag, b.v FROM sq_local l JOIN big b ON b.id = l.id ORDER BY l.id;

-- inner joins of two foreign tables of the server run in SQLite
CREATE FOREIGN TABLE big2 (id int8, v int8) SERVER sq OPTIONS (table 'big');
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT a.id, b.v FROM big2 a JOIN big b ON b.id = a.v WHERE a.id < 5;
SELECT a.id, b.v FROM big2 a JOIN big b ON b.id = a.v WHERE a.id < 5 ORDER BY a.id;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT count(*) FROM big2 a JOIN big b ON b.id = a.id WHERE a.v < 100;
SELECT count(*) FROM big2 a JOIN big b ON b.id = a.id WHERE a.v < 100;
SELECT i.id, b.v, k.v FROM item i JOIN big b ON b.id = i.id JOIN big2 k ON k.id = b.id
 ORDER BY i.id;
-- not: outer joins, local conditions, text order
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT a.id, b.v FROM big2 a LEFT JOIN big b ON b.id = a.v WHERE a.id < 5;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT a.id, b.v FROM big2 a JOIN big b ON b.id = a.v WHERE a.id < 5 AND a.v % 3 = 0;
SELECT a.id, b.v FROM big2 a JOIN big b ON b.id = a.v WHERE a.id < 5 AND a.v % 3 = 0;

-- writes: INSERT (batched), RETURNING, UPDATE, DELETE, COPY, TRUNCATE
CREATE FOREIGN TABLE kv (k int8, v text) SERVER sq;
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO kv VALUES (1, 'a');
INSERT INTO kv SELECT i, 'v' || i FROM generate_series(1, 10) i;
SELECT count(*), sum(k) FROM kv;
INSERT INTO kv VALUES (11, 'eleven'), (12, NULL) RETURNING *;
INSERT INTO kv (v) VALUES ('auto') RETURNING k, v;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE kv SET v = upper(v) WHERE k > 10;
UPDATE kv SET v = upper(v) WHERE k > 10 RETURNING *;
UPDATE kv SET k = k + 100 WHERE k = 1;
DELETE FROM kv WHERE k % 2 = 0 RETURNING k;
DELETE FROM kv WHERE k = 12345;
SELECT * FROM kv ORDER BY k;
INSERT INTO kv VALUES (3, 'dup');
-- rows an UPDATE moves ahead in the table are not met again
UPDATE kv SET k = k + 1000 WHERE k < 10;
SELECT * FROM kv ORDER BY k;
UPDATE kv SET k = k - 1000 WHERE k > 1000;
SELECT count(*), sum(k) FROM kv;
-- WITHOUT ROWID tables: by primary key, which the foreign table must have
SELECT mycelium.sqlite_execute('sq', $$
  DROP TABLE IF EXISTS pk2;
  CREATE TABLE pk2 (a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
  INSERT INTO pk2 VALUES ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three');
$$);
CREATE FOREIGN TABLE pk2 (a text, b int8, v text) SERVER sq;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE pk2 SET b = b + 10 WHERE v <> 'three';
UPDATE pk2 SET b = b + 10 WHERE v <> 'three' RETURNING *;
-- a key collision is SQLite's error, as it would be PostgreSQL's
UPDATE pk2 SET b = 11 WHERE v = 'two';
DELETE FROM pk2 WHERE a = 'y' RETURNING *;
SELECT * FROM pk2 ORDER BY a, b;
CREATE FOREIGN TABLE pk2_part (a text, v text) SERVER sq OPTIONS (table 'pk2');
SELECT * FROM pk2_part ORDER BY v;
UPDATE pk2_part SET v = 'no';
COPY kv FROM STDIN;
200	copied
201	\N
\.
SELECT * FROM kv WHERE k >= 200 ORDER BY k;
-- invalid UTF-8 never enters, NUL-free text leaves as UTF-8
INSERT INTO kv VALUES (300, 'ünïcødé ✓') RETURNING v, length(v);
-- float NaN and infinities round-trip; numeric stays exact
CREATE FOREIGN TABLE odd_w (k int, i int8, t text, r float8, x numeric) SERVER sq
  OPTIONS (table 'odd');
INSERT INTO odd_w VALUES (10, -9223372036854775808, 'nan', 'NaN', 'NaN'),
  (11, NULL, NULL, '-Infinity', '123456789012345678901234567890.123456789');
SELECT k, i, r, x FROM odd_w WHERE k >= 10 ORDER BY k;

-- transactions: ROLLBACK undoes everything, TRUNCATE included
BEGIN;
TRUNCATE kv;
SELECT count(*) FROM kv;
ROLLBACK;
SELECT count(*) FROM kv;
BEGIN;
INSERT INTO kv VALUES (400, 'keep');
SAVEPOINT s1;
INSERT INTO kv VALUES (401, 'undo');
DELETE FROM kv WHERE k = 3;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO kv VALUES (402, 'keep too');
SAVEPOINT s2;
UPDATE kv SET v = 'released' WHERE k = 402;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT * FROM kv WHERE k >= 3 AND k < 10 OR k >= 400 ORDER BY k;
-- an error inside a savepoint: roll back to it and go on
BEGIN;
INSERT INTO kv VALUES (450, 'before');
SAVEPOINT s3;
INSERT INTO kv VALUES (451, 'dup'), (450, 'dup');
ROLLBACK TO SAVEPOINT s3;
INSERT INTO kv VALUES (452, 'after');
COMMIT;
SELECT * FROM kv WHERE k BETWEEN 450 AND 459 ORDER BY k;
-- a cursor opened before a savepoint survives its rollback
BEGIN;
DECLARE c CURSOR FOR SELECT k FROM kv WHERE k < 10 ORDER BY k;
FETCH 1 FROM c;
SAVEPOINT s4;
INSERT INTO kv VALUES (460, 'undone');
SELECT 1 / 0;
ROLLBACK TO SAVEPOINT s4;
FETCH 2 FROM c;
COMMIT;
SELECT count(*) FROM kv WHERE k = 460;
BEGIN;
INSERT INTO kv VALUES (500, 'error later');
SELECT 1 / 0;
COMMIT;
SELECT count(*) FROM kv WHERE k = 500;
BEGIN;
INSERT INTO kv VALUES (501, 'no 2pc');
PREPARE TRANSACTION 'sq_2pc';
SELECT count(*) FROM kv WHERE k = 501;

-- a lock held by another handle on the same file: waits busy_timeout,
-- then SQLSTATE 55P03; the backend goes on
CREATE SERVER sq2 FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/mycelium_sqlite_regress.db', busy_timeout '100');
CREATE FOREIGN TABLE kv2 (k int8, v text) SERVER sq2 OPTIONS (table 'kv');
BEGIN;
INSERT INTO kv VALUES (600, 'holder');
INSERT INTO kv2 VALUES (601, 'waiter');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
INSERT INTO kv2 VALUES (601, 'after');
SELECT * FROM kv WHERE k >= 600;

-- read-only server and table
CREATE SERVER sq_ro FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '/tmp/mycelium_sqlite_regress.db', readonly 'true');
CREATE FOREIGN TABLE kv_ro (k int8, v text) SERVER sq_ro OPTIONS (table 'kv');
SELECT count(*) > 0 FROM kv_ro;
INSERT INTO kv_ro VALUES (700, 'no');
UPDATE kv_ro SET v = 'no';
DELETE FROM kv_ro;
TRUNCATE kv_ro;
COPY kv_ro FROM STDIN;
\.
ALTER FOREIGN TABLE kv2 OPTIONS (ADD readonly 'true');
DELETE FROM kv2;
SELECT mycelium.sqlite_execute('sq_ro', 'DELETE FROM kv');
SELECT count(*) > 0 FROM kv;

-- query cancel: statement_timeout stops a statement running in SQLite
CREATE FOREIGN TABLE forever (x int8) SERVER sq;
SET statement_timeout = '200ms';
SELECT * FROM forever;
SELECT mycelium.sqlite_execute('sq', 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c');
RESET statement_timeout;
SELECT count(*) FROM item;

-- DROP and ALTER SERVER close the cached handle
SELECT server_name FROM mycelium.sqlite_connections() ORDER BY 1;
ALTER SERVER sq OPTIONS (SET busy_timeout '300');
SELECT server_name FROM mycelium.sqlite_connections() ORDER BY 1;
DROP SERVER sq_ro CASCADE;
SELECT server_name FROM mycelium.sqlite_connections() ORDER BY 1;
SELECT count(*) FROM kv;

-- clean up
SET client_min_messages = warning;
DROP TABLE sq_local;
DROP SERVER sq, sq2, sq_nofile, sq_dir, sq_corrupt CASCADE;
RESET client_min_messages;
COPY (SELECT 1) TO PROGRAM 'rm -f /tmp/mycelium_sqlite_regress.db /tmp/mycelium_sqlite_regress.db-journal /tmp/mycelium_sqlite_regress_corrupt.db';
