-- The SQL API of peer replication on a single node: replicate_table and
-- stop_replicating_table (bad input, the catalog row, transactions),
-- replication_ready, pause/resume_replication, stat_replication and
-- wait_for_sync.  Everything that crosses nodes is in
-- test/t/090_replicate_table.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- a mesh of one: no pair of nodes needs a slot
SELECT mycelium.replication_ready();

-- tables that cannot be replicated
CREATE TABLE nokey (id int, v text);
SELECT mycelium.replicate_table('nokey');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW aview AS SELECT 1 AS id;
SELECT mycelium.replicate_table('aview');
\echo :LAST_ERROR_SQLSTATE
CREATE SEQUENCE aseq;
SELECT mycelium.replicate_table('aseq');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
SELECT mycelium.replicate_table('parted');
\echo :LAST_ERROR_SQLSTATE
CREATE UNLOGGED TABLE unlogged (id int PRIMARY KEY);
SELECT mycelium.replicate_table('unlogged');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE tmp (id int PRIMARY KEY);
SELECT mycelium.replicate_table('tmp');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('mycelium.node');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('no_such_table');
\echo :LAST_ERROR_SQLSTATE

-- conflict resolution: only last_writer_wins, from the argument or the GUC
CREATE TABLE rep (id int PRIMARY KEY, v text);
SELECT mycelium.replicate_table('rep', 'first_writer_wins');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('rep', 'bogus');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('rep', '');
\echo :LAST_ERROR_SQLSTATE
-- custom:<function>, a function (regclass, jsonb, jsonb) RETURNS jsonb
SELECT mycelium.replicate_table('rep', 'custom');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('rep', 'custom:');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('rep', 'custom:no_such_function');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replicate_table('rep', 'custom:"unterminated');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION wrong_ret(regclass, jsonb, jsonb) RETURNS text LANGUAGE sql AS 'SELECT NULL::text';
SELECT mycelium.replicate_table('rep', 'custom:wrong_ret');
\echo :LAST_ERROR_SQLSTATE
DROP FUNCTION wrong_ret(regclass, jsonb, jsonb);
SELECT mycelium.replicate_table('rep', 'customer');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM mycelium.replicated_table;

-- a rolled-back replicate_table leaves nothing behind
BEGIN;
SELECT mycelium.replicate_table('rep');
SELECT relid, conflict_resolution FROM mycelium.replicated_table;
ROLLBACK;
SELECT count(*) FROM mycelium.replicated_table;

-- replicated once, not twice; the default policy comes from the GUC
SET mycelium.conflict_resolution = last_writer_wins;
SELECT mycelium.replicate_table('rep');
RESET mycelium.conflict_resolution;
SELECT relid, conflict_resolution FROM mycelium.replicated_table;
SELECT mycelium.replicate_table('rep');
\echo :LAST_ERROR_SQLSTATE
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Odd ""Table""" ("Key" int, k2 text, PRIMARY KEY ("Key", k2));
SELECT mycelium.replicate_table('"Odd Schema"."Odd ""Table"""', 'last_writer_wins');
SELECT relid, conflict_resolution FROM mycelium.replicated_table ORDER BY relid::text;

-- stop_replicating_table: only replicated tables; tables and rows stay
INSERT INTO rep VALUES (1, 'one');
SELECT mycelium.stop_replicating_table('nokey');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.stop_replicating_table('rep');
SELECT relid FROM mycelium.replicated_table ORDER BY relid::text;
SELECT * FROM rep;
SELECT mycelium.stop_replicating_table('rep');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.stop_replicating_table('"Odd Schema"."Odd ""Table"""');
SELECT count(*) FROM mycelium.replicated_table;
SELECT mycelium.stop_replicating_table(NULL);

-- pause and resume: members other than this node only
SELECT mycelium.pause_replication('nowhere');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.resume_replication('nowhere');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.pause_replication('regress');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.resume_replication('regress');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.pause_replication();
SELECT mycelium.resume_replication();

-- no peers: nothing to show, nothing to wait for
SELECT * FROM mycelium.stat_replication;
SELECT mycelium.wait_for_sync();
SELECT mycelium.wait_for_sync('0');
SELECT mycelium.wait_for_sync('-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.wait_for_sync('1 day -25 hours');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.wait_for_sync(NULL);

-- the view's columns
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'mycelium.stat_replication'::regclass AND attnum > 0 ORDER BY attnum;

-- only superusers change replication; anyone may look
CREATE ROLE repl_api_user;
SET ROLE repl_api_user;
SELECT mycelium.replicate_table('rep');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.stop_replicating_table('rep');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.pause_replication();
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.resume_replication();
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.replication_ready();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM mycelium.stat_replication;
SELECT mycelium.wait_for_sync('0');
RESET ROLE;
DROP ROLE repl_api_user;

DROP TABLE nokey, rep, parted, unlogged, tmp;
DROP VIEW aview;
DROP SEQUENCE aseq;
DROP SCHEMA "Odd Schema" CASCADE;
