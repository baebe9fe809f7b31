-- DDL and COPY on distributed and reference tables, on a one-node mesh
-- (every shard is local, so this is the local half of propagation: the
-- shell, then each shard through SPI).  Multi-node propagation is tested
-- in test/t/130_ddl_copy.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- the definition of every shard of a table, with the shard id masked: one
-- row per distinct definition, so "variants = 1" means all shards agree
CREATE FUNCTION shard_defs(t regclass)
RETURNS TABLE (shards bigint, variants bigint, definition text)
LANGUAGE sql AS $$
  SELECT count(*), count(DISTINCT d), min(d) FROM (
    SELECT s.shard_id,
           (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                              || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                              ', ' ORDER BY a.attnum)
              FROM pg_attribute a
              LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attrelid = to_regclass(s.shard_name) AND a.attnum > 0
               AND NOT a.attisdropped)
           || ' | ' ||
           coalesce((SELECT string_agg(replace(c.conname, s.shard_id::text, '<id>') || ': '
                                       || pg_get_constraintdef(c.oid), ', ' ORDER BY c.conname)
                       FROM pg_constraint c WHERE c.conrelid = to_regclass(s.shard_name)), '')
           || ' | ' ||
           coalesce((SELECT string_agg(replace(i.relname, s.shard_id::text, '<id>'), ', '
                                       ORDER BY i.relname)
                       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = to_regclass(s.shard_name)), '') AS d
      FROM mycelium.shards s WHERE s.table_name = t) per_shard
$$;

-- the same for the table itself
CREATE FUNCTION table_def(t regclass) RETURNS text LANGUAGE sql AS $$
  SELECT (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                            || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                            || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                            ', ' ORDER BY a.attnum)
            FROM pg_attribute a
            LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
           WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped)
         || ' | ' ||
         coalesce((SELECT string_agg(c.conname || ': ' || pg_get_constraintdef(c.oid), ', '
                                     ORDER BY c.conname)
                     FROM pg_constraint c WHERE c.conrelid = t), '')
         || ' | ' ||
         coalesce((SELECT string_agg(i.relname, ', ' ORDER BY i.relname)
                     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                    WHERE x.indrelid = t), '')
$$;

-- rows of every shard, and how many of them are not where shard_for says
CREATE FUNCTION placement(t regclass, col text)
RETURNS TABLE (total bigint, misplaced bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s record;
  n bigint;
  m bigint;
BEGIN
  total := 0;
  misplaced := 0;
  FOR s IN SELECT shard_id, shard_name FROM mycelium.shards WHERE table_name = t LOOP
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE mycelium.shard_for(%L::regclass, %I) IS DISTINCT FROM %s) FROM %I',
                   t::text, col, s.shard_id, s.shard_name) INTO n, m;
    total := total + n;
    misplaced := misplaced + m;
  END LOOP;
  RETURN NEXT;
END
$$;

CREATE TABLE items (id int PRIMARY KEY, name text, qty int);

-- the rows of every shard of items
CREATE FUNCTION item_rows() RETURNS TABLE (id int, name text, qty bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s record;
BEGIN
  FOR s IN SELECT shard_name FROM mycelium.shards WHERE table_name = 'items'::regclass LOOP
    RETURN QUERY EXECUTE format('SELECT id, name, qty FROM %I', s.shard_name);
  END LOOP;
END
$$;
SELECT mycelium.create_distributed_table('items', 'id', shard_count => 4);
SELECT * FROM shard_defs('items');

-- ALTER TABLE: columns
ALTER TABLE items ADD COLUMN price numeric(10,2) DEFAULT 0 NOT NULL;
ALTER TABLE items ALTER COLUMN qty SET DEFAULT 1, ALTER COLUMN name SET NOT NULL;
ALTER TABLE items ALTER COLUMN qty TYPE bigint USING qty::bigint;
SELECT table_def('items');
SELECT * FROM shard_defs('items');
ALTER TABLE items DROP COLUMN price, ALTER COLUMN name DROP NOT NULL;
ALTER TABLE items ALTER COLUMN qty DROP DEFAULT;
SELECT * FROM shard_defs('items');

-- odd spellings: comments, quoting, qualification, several statements in
-- one query string, names that are keywords
ALTER /* c1 */ TABLE ONLY public . "items" /* c2 */ ADD COLUMN "Mixed Case" text DEFAULT 'a,b (c)', ADD COLUMN "select" int;ALTER TABLE items DROP COLUMN "select";
SELECT * FROM shard_defs('items');
ALTER TABLE IF EXISTS items DROP COLUMN "Mixed Case";
ALTER TABLE IF EXISTS no_such_table ADD COLUMN x int;

-- ALTER TABLE: constraints, named and unnamed (names chosen as PostgreSQL
-- would; index-backed ones get the shard id on shards, CHECKs keep theirs)
ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);
ALTER TABLE items ADD CHECK (length(name) < 100), ADD UNIQUE (id, name);
ALTER TABLE items ADD COLUMN code text CHECK (code <> '');
SELECT table_def('items');
SELECT * FROM shard_defs('items');
ALTER TABLE items DROP CONSTRAINT items_id_name_key, DROP CONSTRAINT qty_positive;
ALTER TABLE items DROP CONSTRAINT IF EXISTS no_such_constraint;
ALTER TABLE items ADD CONSTRAINT big_qty CHECK (qty < 1000000) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT big_qty;
ALTER TABLE items DROP COLUMN code;
SELECT * FROM shard_defs('items');

-- CREATE / DROP INDEX
CREATE INDEX ON items (name);
CREATE INDEX items_qty ON items USING btree (qty DESC) WHERE qty > 10;
CREATE INDEX IF NOT EXISTS items_qty ON items (qty);
CREATE UNIQUE INDEX items_id_qty ON items (qty, id);
SELECT * FROM shard_defs('items');
DROP INDEX items_qty, items_id_qty;
DROP INDEX IF EXISTS items_name_idx, no_such_index;
SELECT * FROM shard_defs('items');

-- refused: nothing changes anywhere (0A000 with a hint)
ALTER TABLE items DROP COLUMN id;
ALTER TABLE items ALTER COLUMN id TYPE bigint;
ALTER TABLE items ADD COLUMN extra int, DROP COLUMN id;
ALTER TABLE items ADD CONSTRAINT name_unique UNIQUE (name);
ALTER TABLE items ADD COLUMN email text UNIQUE;
ALTER TABLE items ADD CONSTRAINT fk FOREIGN KEY (qty) REFERENCES items (id);
ALTER TABLE items ADD COLUMN serial_no serial;
ALTER TABLE items ADD COLUMN ident int GENERATED ALWAYS AS IDENTITY;
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items RENAME TO goods;
ALTER TABLE items RENAME COLUMN id TO item_id;
ALTER TABLE items RENAME CONSTRAINT items_pkey TO pk;
ALTER TABLE items SET SCHEMA pg_temp;
ALTER INDEX items_pkey RENAME TO pk;
CREATE UNIQUE INDEX ON items (name);
CREATE UNIQUE INDEX ON items (lower(name));
CREATE INDEX CONCURRENTLY ON items (qty);
CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
SELECT table_def('items');
SELECT * FROM shard_defs('items');

-- RENAME COLUMN (not the distribution column)
ALTER TABLE items RENAME COLUMN name TO title;
ALTER TABLE items RENAME title TO name;
SELECT * FROM shard_defs('items');

-- a rolled-back ALTER leaves shards as they were
BEGIN;
ALTER TABLE items ADD COLUMN gone int;
CREATE INDEX gone_idx ON items (gone);
ROLLBACK;
SELECT * FROM shard_defs('items');

-- GRANT / REVOKE and OWNER TO reach every shard
SET client_min_messages = warning;
DROP ROLE IF EXISTS ddl_reader;
DROP ROLE IF EXISTS ddl_owner;
RESET client_min_messages;
CREATE ROLE ddl_reader;
CREATE ROLE ddl_owner;
GRANT SELECT, INSERT ON items TO ddl_reader;
GRANT UPDATE (qty) ON TABLE public.items TO ddl_reader WITH GRANT OPTION;
SELECT count(*) AS shards,
       count(*) FILTER (WHERE has_table_privilege('ddl_reader', to_regclass(shard_name), 'SELECT, INSERT')) AS can_read_insert,
       count(*) FILTER (WHERE has_column_privilege('ddl_reader', to_regclass(shard_name), 'qty', 'UPDATE WITH GRANT OPTION')) AS can_update_qty,
       count(*) FILTER (WHERE has_table_privilege('ddl_reader', to_regclass(shard_name), 'DELETE')) AS can_delete
  FROM mycelium.shards WHERE table_name = 'items'::regclass;
REVOKE INSERT ON items FROM ddl_reader;
REVOKE ALL ON items FROM ddl_reader CASCADE;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ddl_reader;
SELECT count(*) FILTER (WHERE has_table_privilege('ddl_reader', to_regclass(shard_name), 'SELECT')) AS can_read,
       count(*) FILTER (WHERE has_table_privilege('ddl_reader', to_regclass(shard_name), 'INSERT')) AS can_insert
  FROM mycelium.shards WHERE table_name = 'items'::regclass;
ALTER TABLE items OWNER TO ddl_owner;
SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class
 WHERE oid IN (SELECT to_regclass(shard_name) FROM mycelium.shards WHERE table_name = 'items'::regclass);
ALTER TABLE items OWNER TO CURRENT_USER;

-- privileges are checked on the table first
SET ROLE ddl_reader;
ALTER TABLE items ADD COLUMN nope int;
TRUNCATE items;
COPY items (id) FROM STDIN;
\.
RESET ROLE;

-- COPY FROM routes every row to its shard
COPY items (id, name, qty) FROM STDIN;
1	one	10
2	two	20
3	three	\N
4	tab\there	40
5	back\\slash	50
6	new\nline	60
\.
SELECT * FROM placement('items', 'id');
SELECT * FROM item_rows() ORDER BY id;
COPY items FROM STDIN (FORMAT csv, HEADER true, NULL 'none');
id,name,qty
7,"seven, with comma",70
8,none,80
\.
COPY items (id, qty) FROM STDIN WHERE id % 2 = 0;
100	1
101	1
102	1
\.
COPY items (id, name) FROM PROGRAM 'seq 1000 2999 | sed "s/$/\tbulk/"';
SELECT * FROM placement('items', 'id');
-- COPY TO reads every shard (through the router)
CREATE TABLE copied (id int, name text, qty bigint);
COPY items (id, name, qty) TO PROGRAM 'sort -n > items_copy.txt';
COPY copied FROM PROGRAM 'cat items_copy.txt';
SELECT count(*), min(id), max(id), count(DISTINCT id) FROM copied;
SELECT * FROM copied WHERE id < 10 ORDER BY id;
DROP TABLE copied;

-- bad rows abort the whole COPY: nothing is inserted anywhere
COPY items (id, name) FROM STDIN;
5000	fine
\N	no key
\.
\set VERBOSITY sqlstate
COPY items (id, name) FROM STDIN;
5001	fine
1	duplicate
\.
\set VERBOSITY default
COPY items (id, name) FROM STDIN;
5002	fine
not a number	x
\.
SELECT * FROM placement('items', 'id');
BEGIN;
COPY items (id, name) FROM STDIN;
6000	rolled back
\.
ROLLBACK;
SELECT * FROM placement('items', 'id');

-- TRUNCATE empties every shard
TRUNCATE items;
SELECT * FROM placement('items', 'id');

-- a range table: a value no shard covers is 23514, NULL is 23502
CREATE TABLE events (day date NOT NULL, what text);
SELECT mycelium.create_distributed_table('events', 'day', 'range');
SELECT mycelium.add_range_shard('events', '2024-01-01', '2024-02-01') > 0 AS added;
SELECT mycelium.add_range_shard('events', '2024-03-01', '2024-04-01') > 0 AS added;
COPY events FROM STDIN;
2024-01-15	january
2024-03-31	march
\.
SELECT * FROM placement('events', 'day');
COPY events FROM STDIN;
2024-01-16	fine
2024-02-10	in the gap
\.
COPY events FROM STDIN;
\N	no day
\.
SELECT * FROM placement('events', 'day');

-- a reference table: DDL and COPY apply to the table (here its only copy)
CREATE TABLE countries (code text PRIMARY KEY, name text);
SELECT mycelium.create_reference_table('countries');
COPY countries FROM STDIN (FORMAT csv);
fr,France
de,Germany
\.
ALTER TABLE countries ADD COLUMN population bigint;
ALTER TABLE countries ADD UNIQUE (name);
ALTER TABLE countries ADD CONSTRAINT fk FOREIGN KEY (code) REFERENCES countries (code);
SELECT table_def('countries');
SELECT * FROM countries ORDER BY code;
TRUNCATE countries;
SELECT count(*) FROM countries;

-- foreign keys referencing distributed or reference tables are refused
CREATE TABLE local_ref (item int REFERENCES items (id));
CREATE TABLE local_ref (item int, code text);
ALTER TABLE local_ref ADD FOREIGN KEY (code) REFERENCES countries (code);
ALTER TABLE local_ref ADD COLUMN other int REFERENCES public.items;
ALTER TABLE local_ref ADD CONSTRAINT ok CHECK (item > 0);
DROP TABLE local_ref;
CREATE TABLE child () INHERITS (items);
CREATE TABLE child PARTITION OF items DEFAULT;

-- DROP SCHEMA ... CASCADE of a schema with a distributed table is refused
CREATE SCHEMA ddl_s;
CREATE TABLE ddl_s.t (id int);
SELECT mycelium.create_distributed_table('ddl_s.t', 'id', shard_count => 2);
DROP SCHEMA ddl_s CASCADE;
SELECT count(*) FROM mycelium.shards WHERE table_name = 'ddl_s.t'::regclass;

-- DROP TABLE drops the shards and the metadata
DROP TABLE ddl_s.t, items;
DROP TABLE IF EXISTS events, no_such_table, countries;
SELECT count(*) AS tables FROM mycelium.tables;
SELECT count(*) AS shards FROM mycelium.shards;
SELECT count(*) AS shard_tables FROM pg_class
 WHERE relname ~ '^(items|events|t)_[0-9]+$' AND relkind = 'r';
DROP SCHEMA ddl_s;
DROP OWNED BY ddl_reader, ddl_owner;
DROP ROLE ddl_reader;
DROP ROLE ddl_owner;
DROP FUNCTION shard_defs(regclass), table_def(regclass), placement(regclass, text), item_rows();
