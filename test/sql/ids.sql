-- Mesh-wide ids (mycelium.next_id, mycelium.id_parts) and order-independent
-- table checksums (mycelium.table_checksum).  Output is deterministic:
-- booleans and counts, never ids or checksums that depend on the clock.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;

--
-- next_id
--
-- strictly increasing over many calls in one statement
CREATE TEMP TABLE ids AS
SELECT g, mycelium.next_id() AS id, clock_timestamp() AS issued_by
  FROM generate_series(1, 100000) g;
SELECT count(*) AS n, count(DISTINCT id) AS distinct_ids, bool_and(id > 0) AS positive
  FROM ids;
SELECT count(*) AS out_of_order
  FROM (SELECT id, lag(id) OVER (ORDER BY g) AS prev FROM ids) s
 WHERE id <= prev;
-- and across statements (and transactions)
SELECT mycelium.next_id() > (SELECT max(id) FROM ids) AS later_is_larger;
-- 100000 ids in well under 100000 ms: some milliseconds hold many ids,
-- but none is stamped ahead of the clock
SELECT max(sequence) > 0 AS sequence_used,
       bool_and(created_at <= issued_by) AS never_ahead_of_clock
  FROM ids, mycelium.id_parts(id);

-- decoding: node_id of 'regress', creation time close to now
SELECT node_id FROM mycelium.nodes WHERE is_local;
SELECT p.node_id,
       p.created_at BETWEEN now() - interval '1 minute' AND clock_timestamp() + interval '1 second' AS recent,
       p.sequence BETWEEN 0 AND 4095 AS sequence_in_range
  FROM mycelium.id_parts(mycelium.next_id()) p;
-- layout, on fixed values
SELECT * FROM mycelium.id_parts(0);
SELECT * FROM mycelium.id_parts((1000::bigint << 22) | (5 << 12) | 7);
SELECT * FROM mycelium.id_parts(9223372036854775807);
SELECT * FROM mycelium.id_parts(NULL);
-- bad input
SELECT * FROM mycelium.id_parts(-1);
\echo :LAST_ERROR_SQLSTATE

-- a node_id that does not fit in 10 bits
BEGIN;
UPDATE mycelium.node SET node_id = 1024 WHERE node_name = 'regress';
SELECT mycelium.next_id();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- node_id 0 and 1023 fit
BEGIN;
UPDATE mycelium.node SET node_id = 1023 WHERE node_name = 'regress';
SELECT node_id FROM mycelium.id_parts(mycelium.next_id());
UPDATE mycelium.node SET node_id = 0 WHERE node_name = 'regress';
SELECT node_id FROM mycelium.id_parts(mycelium.next_id());
ROLLBACK;
-- a node missing from a catalog that lists others
BEGIN;
UPDATE mycelium.node SET node_name = 'someone-else' WHERE node_name = 'regress';
SELECT mycelium.next_id();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT node_id FROM mycelium.id_parts(mycelium.next_id());

--
-- table_checksum
--
CREATE TABLE ck_a (id int, t text, n numeric, d timestamptz, b bytea);
CREATE TABLE ck_b (id int, t text, n numeric, d timestamptz, b bytea);
SELECT mycelium.table_checksum('ck_a') AS empty;
SELECT mycelium.table_checksum(NULL) IS NULL AS null_gives_null;
INSERT INTO ck_a SELECT g, 'row ' || g, g / 7.0, '2025-06-01 12:00+00'::timestamptz + g * interval '1 hour', int4send(g)
  FROM generate_series(1, 5000) g;
INSERT INTO ck_b SELECT g, 'row ' || g, g / 7.0, '2025-06-01 12:00+00'::timestamptz + g * interval '1 hour', int4send(g)
  FROM generate_series(5000, 1, -1) g;
-- same rows, different physical order
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS same_rows_other_order;
SELECT split_part(mycelium.table_checksum('ck_a'), ':', 1) AS row_count,
       length(split_part(mycelium.table_checksum('ck_a'), ':', 2)) AS hex_digits;
-- settings that change text forms do not change the checksum
CREATE TEMP TABLE sums (label text, sum text);
INSERT INTO sums VALUES ('base', mycelium.table_checksum('ck_a'));
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kolkata';
SET bytea_output = 'escape';
SET extra_float_digits = 0;
SELECT mycelium.table_checksum('ck_a') = (SELECT sum FROM sums WHERE label = 'base') AS settings_ignored;
SHOW DateStyle;
SHOW TimeZone;
RESET DateStyle; RESET TimeZone; RESET bytea_output; RESET extra_float_digits;

-- any single change is seen
BEGIN;
UPDATE ck_b SET t = 'row 42!' WHERE id = 42;
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_update;
ROLLBACK;
BEGIN;
UPDATE ck_b SET d = d + interval '1 microsecond' WHERE id = 4999;
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_tiny_update;
ROLLBACK;
BEGIN;
DELETE FROM ck_b WHERE id = 17;
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_delete;
ROLLBACK;
BEGIN;
INSERT INTO ck_b SELECT * FROM ck_b WHERE id = 17;
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_duplicate;
SELECT split_part(mycelium.table_checksum('ck_b'), ':', 1) AS rows_with_duplicate;
ROLLBACK;
-- swapping values between rows is a change too
BEGIN;
UPDATE ck_b SET t = CASE id WHEN 1 THEN 'row 2' ELSE 'row 1' END WHERE id IN (1, 2);
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_swap;
ROLLBACK;
-- an update that is undone restores the checksum; a rolled back one never changed it
UPDATE ck_b SET t = 'x' WHERE id = 9;
UPDATE ck_b SET t = 'row 9' WHERE id = 9;
SELECT mycelium.table_checksum('ck_a') = mycelium.table_checksum('ck_b') AS equal_after_undo;

-- NULL and empty string, and values moving between columns
CREATE TABLE ck_n1 (a text, b text);
CREATE TABLE ck_n2 (a text, b text);
INSERT INTO ck_n1 VALUES (NULL, 'x');
INSERT INTO ck_n2 VALUES ('', 'x');
SELECT mycelium.table_checksum('ck_n1') = mycelium.table_checksum('ck_n2') AS null_equals_empty;
TRUNCATE ck_n1, ck_n2;
INSERT INTO ck_n1 VALUES ('ab', 'c');
INSERT INTO ck_n2 VALUES ('a', 'bc');
SELECT mycelium.table_checksum('ck_n1') = mycelium.table_checksum('ck_n2') AS shifted_text_equal;
TRUNCATE ck_n1, ck_n2;
INSERT INTO ck_n1 VALUES (NULL, NULL);
INSERT INTO ck_n2 VALUES (NULL, NULL);
SELECT mycelium.table_checksum('ck_n1') = mycelium.table_checksum('ck_n2') AS all_null_rows_equal;
-- a dropped column does not count; column names do not count
CREATE TABLE ck_n3 (z int, p text, q text);
ALTER TABLE ck_n3 DROP COLUMN z;
INSERT INTO ck_n3 VALUES (NULL, NULL);
SELECT mycelium.table_checksum('ck_n1') = mycelium.table_checksum('ck_n3') AS dropped_column_ignored;

-- views, materialized views and partitioned tables have the rows a SELECT sees
CREATE VIEW ck_v AS SELECT * FROM ck_a;
CREATE MATERIALIZED VIEW ck_m AS SELECT * FROM ck_b;
CREATE TABLE ck_p (id int, t text, n numeric, d timestamptz, b bytea) PARTITION BY RANGE (id);
CREATE TABLE ck_p1 PARTITION OF ck_p FOR VALUES FROM (MINVALUE) TO (2500);
CREATE TABLE ck_p2 PARTITION OF ck_p FOR VALUES FROM (2500) TO (MAXVALUE);
INSERT INTO ck_p SELECT * FROM ck_b;
SELECT mycelium.table_checksum('ck_v') = mycelium.table_checksum('ck_a') AS view_equal,
       mycelium.table_checksum('ck_m') = mycelium.table_checksum('ck_a') AS matview_equal,
       mycelium.table_checksum('ck_p') = mycelium.table_checksum('ck_a') AS partitioned_equal;

-- not a table
CREATE SEQUENCE ck_seq;
CREATE INDEX ck_a_id ON ck_a (id);
CREATE TYPE ck_type AS (a int);
SELECT mycelium.table_checksum('ck_seq');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.table_checksum('ck_a_id');
SELECT mycelium.table_checksum('ck_type');
SELECT mycelium.table_checksum('no_such_table');
SELECT mycelium.table_checksum(0::oid::regclass);

-- privileges: as for SELECT, including column privileges and row security
CREATE ROLE ids_reader;
GRANT USAGE ON SCHEMA public TO ids_reader;
SET ROLE ids_reader;
SELECT mycelium.table_checksum('ck_a');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT (id, t) ON ck_a TO ids_reader;
SET ROLE ids_reader;
SELECT mycelium.table_checksum('ck_a');
RESET ROLE;
GRANT SELECT (n, d, b) ON ck_a TO ids_reader;
SET ROLE ids_reader;
SELECT split_part(mycelium.table_checksum('ck_a'), ':', 1) AS rows_with_column_privileges;
RESET ROLE;
ALTER TABLE ck_a ENABLE ROW LEVEL SECURITY;
CREATE POLICY ck_small ON ck_a FOR SELECT TO ids_reader USING (id <= 10);
SET ROLE ids_reader;
SELECT split_part(mycelium.table_checksum('ck_a'), ':', 1) AS rows_visible_to_reader;
RESET ROLE;
SELECT split_part(mycelium.table_checksum('ck_a'), ':', 1) AS rows_visible_to_owner;

SET client_min_messages = warning;
DROP TABLE ck_a, ck_b, ck_n1, ck_n2, ck_n3, ck_p CASCADE;
RESET client_min_messages;
DROP SEQUENCE ck_seq;
DROP TYPE ck_type;
REVOKE USAGE ON SCHEMA public FROM ids_reader;
DROP ROLE ids_reader;
