-- Change capture: the "mycelium" logical decoding output plugin, its binary
-- protocol read back through the apply side's parser, origin filtering, bad
-- options and malformed messages.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- PostgreSQL 15.19+ decodes only with listed plugins; mycelium is not listed
SHOW output_plugin_libraries;
SELECT 'init' FROM pg_create_logical_replication_slot('capture', 'mycelium');
\echo :LAST_ERROR_SQLSTATE
-- in SET it is a list: quoted whole, it is one name that matches nothing
SET output_plugin_libraries = 'pgoutput, test_decoding, mycelium';
SHOW output_plugin_libraries;
SELECT 'init' FROM pg_create_logical_replication_slot('capture', 'mycelium');
SET output_plugin_libraries = pgoutput, test_decoding, mycelium;
SHOW output_plugin_libraries;
SELECT 'init' FROM pg_create_logical_replication_slot('capture', 'mycelium');

-- one replicated table with a primary key, one not replicated, one
-- replicated without a primary key
CREATE TABLE rep (id int PRIMARY KEY, name text, note text);
ALTER TABLE rep ALTER COLUMN note SET STORAGE EXTERNAL;
CREATE TABLE other (id int PRIMARY KEY, v text);
CREATE TABLE nokey (id int, v text);
INSERT INTO mycelium.replicated_table (relid) VALUES ('rep'), ('nokey');
SELECT relid, conflict_resolution FROM mycelium.replicated_table ORDER BY relid::text;

-- the stream, one row per message, with what varies between runs masked:
-- relation OIDs become names, LSNs, times and xids become "masked"
CREATE FUNCTION pg_temp.show(m bytea) RETURNS jsonb LANGUAGE sql AS $$
  SELECT j
    || CASE WHEN j ? 'relid'
       THEN jsonb_build_object('relid', (j->>'relid')::oid::regclass::text)
       ELSE '{}' END
    || CASE WHEN j ? 'relids'
       THEN jsonb_build_object('relids', (SELECT jsonb_agg(r::oid::regclass::text)
                                            FROM jsonb_array_elements_text(j->'relids') r))
       ELSE '{}' END
    || (SELECT coalesce(jsonb_object_agg(k, 'masked'), '{}')
          FROM jsonb_object_keys(j) k
         WHERE k IN ('final_lsn', 'commit_lsn', 'end_lsn', 'commit_time', 'xid'))
  FROM mycelium.decode_replication_message(m) j
$$;
CREATE TEMP TABLE stream (n serial, lsn pg_lsn, xid xid, data bytea);
CREATE FUNCTION pg_temp.consume(VARIADIC options text[] DEFAULT '{proto_version,1}')
RETURNS SETOF jsonb LANGUAGE sql AS $$
  DELETE FROM stream;  -- not TRUNCATE: decoding would reload its relfilenode
                       -- under the historic snapshot, which misses it
  INSERT INTO stream (lsn, xid, data)
    SELECT lsn, xid, data
      FROM pg_logical_slot_get_binary_changes('capture', NULL, NULL, VARIADIC options);
  SELECT pg_temp.show(data) FROM stream ORDER BY n;
$$;

-- several transactions: rows of all three tables, an update that keeps the
-- key, one that changes it, a delete, and a transaction on "other" only
BEGIN;
INSERT INTO rep VALUES (1, 'one', 'a'), (2, 'two', NULL);
INSERT INTO other VALUES (1, 'not replicated');
INSERT INTO nokey VALUES (1, 'no primary key');
COMMIT;
UPDATE rep SET name = 'uno' WHERE id = 1;
UPDATE rep SET id = 10 WHERE id = 2;
DELETE FROM rep WHERE id = 10;
INSERT INTO other VALUES (2, 'nothing to send');
INSERT INTO nokey VALUES (2, 'warned once per session');
SELECT * FROM pg_temp.consume();

-- BEGIN and COMMIT agree with the server: xid, commit time, LSNs
CREATE TEMP TABLE msg AS
  SELECT n, lsn, xid, data, mycelium.decode_replication_message(data) AS j FROM stream;
SELECT b.n AS begin_n, c.n AS commit_n,
       (b.j->>'xid')::xid = b.xid AS xid_ok,
       (b.j->>'commit_time')::timestamptz = pg_xact_commit_timestamp(b.xid) AS time_ok,
       b.j->'commit_time' = c.j->'commit_time' AS times_agree,
       b.j->'final_lsn' = c.j->'commit_lsn' AS lsn_agree,
       (c.j->>'end_lsn')::pg_lsn > (c.j->>'commit_lsn')::pg_lsn AS end_after_commit,
       c.lsn = (c.j->>'end_lsn')::pg_lsn AS row_lsn_is_end_lsn
  FROM msg b JOIN msg c ON c.xid = b.xid AND c.j->>'type' = 'COMMIT'
 WHERE b.j->>'type' = 'BEGIN'
 ORDER BY b.n;

-- TRUNCATE names only replicated tables; a schema change sends RELATION
-- again; an unchanged TOASTed value is flagged, not sent
TRUNCATE rep, other RESTART IDENTITY;
TRUNCATE other;
INSERT INTO rep VALUES (3, 'three', repeat('x', 3000));
ALTER TABLE rep ADD COLUMN extra int;
UPDATE rep SET name = 'drei', extra = 3 WHERE id = 3;
SELECT j->>'type' AS type,
       CASE WHEN j ? 'relids' THEN j - 'type' END AS truncate,
       j->'columns' AS columns,
       CASE WHEN j ? 'new' THEN jsonb_build_array(j->'new'->0, j->'new'->1,
            CASE WHEN jsonb_typeof(j->'new'->2) = 'string'
                 THEN to_jsonb(length(j->'new'->>2)) ELSE j->'new'->2 END,
            j->'new'->3) END AS new_with_note_length
  FROM pg_temp.consume() j;

-- REPLICA IDENTITY FULL sends whole old rows; dropped and generated columns
-- are not sent; REPLICA IDENTITY NOTHING is refused with a WARNING
CREATE TABLE ident_full (id int PRIMARY KEY, gone int, v text,
                         g int GENERATED ALWAYS AS (id * 2) STORED);
ALTER TABLE ident_full DROP COLUMN gone;
ALTER TABLE ident_full REPLICA IDENTITY FULL;
CREATE TABLE ident_nothing (id int PRIMARY KEY, v text);
ALTER TABLE ident_nothing REPLICA IDENTITY NOTHING;
INSERT INTO mycelium.replicated_table (relid) VALUES ('ident_full'), ('ident_nothing');
INSERT INTO ident_full VALUES (1, 'a');
UPDATE ident_full SET v = 'b';
DELETE FROM ident_full;
INSERT INTO ident_nothing VALUES (1, 'a');
-- a primary key added later makes a table capturable from then on
ALTER TABLE nokey ADD PRIMARY KEY (id);
INSERT INTO nokey VALUES (3, 'keyed now');
SELECT * FROM pg_temp.consume();

-- changes applied under a replication origin came from a peer: filtered
SELECT pg_replication_origin_create('peer_b') > 0 AS origin_created;
SELECT pg_replication_origin_session_setup('peer_b');
INSERT INTO rep VALUES (20, 'from peer_b', NULL);
SELECT pg_replication_origin_session_reset();
INSERT INTO rep VALUES (21, 'local', NULL);
SELECT * FROM pg_temp.consume();

-- a table joins mid-transaction: captured from that point on
BEGIN;
INSERT INTO other VALUES (3, 'before');
INSERT INTO mycelium.replicated_table (relid) VALUES ('other');
INSERT INTO other VALUES (4, 'after');
COMMIT;
DELETE FROM mycelium.replicated_table WHERE relid = 'other'::regclass;
INSERT INTO other VALUES (5, 'no longer');
SELECT * FROM pg_temp.consume();

-- a prepared transaction is captured once, at COMMIT PREPARED; a rolled
-- back one never
BEGIN;
INSERT INTO rep VALUES (40, 'prepared', NULL);
PREPARE TRANSACTION 'capture_2pc_commit';
BEGIN;
INSERT INTO rep VALUES (41, 'rolled back', NULL);
PREPARE TRANSACTION 'capture_2pc_rollback';
SELECT * FROM pg_temp.consume();
COMMIT PREPARED 'capture_2pc_commit';
ROLLBACK PREPARED 'capture_2pc_rollback';
SELECT * FROM pg_temp.consume();

-- option node_name names the origin in COMMIT
INSERT INTO rep VALUES (30, 'named', NULL);
SELECT j->>'type' AS type, j->>'origin' AS origin
  FROM pg_temp.consume('proto_version', '1', 'node_name', 'alpha') j;

-- bad options
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL);
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL,
	'proto_version', '2');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL,
	'proto_version', 'one');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL,
	'proto_version', '1', 'publication_names', 'x');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL,
	'proto_version', '1', 'node_name', '');
-- the output is binary
SELECT count(*) FROM pg_logical_slot_peek_changes('capture', NULL, NULL,
	'proto_version', '1');
-- and without output_plugin_libraries listing mycelium, nothing decodes
RESET output_plugin_libraries;
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('capture', NULL, NULL,
	'proto_version', '1');
SET output_plugin_libraries = pgoutput, test_decoding, mycelium;

-- hand-made messages: well-formed ones render
CREATE FUNCTION pg_temp.msg(hex text) RETURNS bytea LANGUAGE sql
  AS $$ SELECT decode(replace(hex, ' ', ''), 'hex') $$;
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000015 01 0000000001000000 0000000000000000 000001f4'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '43 0000001e 00 0000000001000000 0000000001000040 0000000000000000 0003 6e3161'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000001a 00004000 0001 73 0001 74 0001 01 0002 6964 0007 696e7465676572'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '55 00000017 00004000 4b 0002 74 00000001 31 6e 4e 0002 75 74 00000000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '54 0000000d 03 00000002 00004000 00004001'));
SELECT mycelium.decode_replication_message(NULL);

-- malformed ones are refused, never misread
-- empty, and shorter than the header
SELECT mycelium.decode_replication_message(''::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.decode_replication_message(pg_temp.msg('42 000000'));
-- unknown type
SELECT mycelium.decode_replication_message(pg_temp.msg('5a 00000000'));
-- header length disagrees with the bytes that follow (both ways)
SELECT mycelium.decode_replication_message(pg_temp.msg('42 00000015 01 00000000'));
SELECT mycelium.decode_replication_message(pg_temp.msg('42 00000000 01'));
SELECT mycelium.decode_replication_message(pg_temp.msg('42 ffffffff 01'));
-- body shorter than its fields, and bytes left over after them
SELECT mycelium.decode_replication_message(pg_temp.msg('42 00000005 01 00000000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000016 01 0000000001000000 0000000000000000 000001f4 00'));
-- wrong protocol version
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000015 02 0000000001000000 0000000000000000 000001f4'));
-- COMMIT: unknown flags, end before commit, origin running past the end
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '43 0000001b 01 0000000001000000 0000000001000040 0000000000000000 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '43 0000001b 00 0000000001000040 0000000001000000 0000000000000000 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '43 0000001c 00 0000000001000000 0000000001000040 0000000000000000 ffff 61'));
-- RELATION: empty name, name too long, zero byte in a name, unknown column
-- flags, more columns than a table can have, more than the bytes can hold
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000000b 00004000 0000 0001 74 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000004b 00004000 0040' || repeat('61', 64) || '0001 74 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000000c 00004000 0001 00 0001 74 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000001a 00004000 0001 73 0001 74 0001 80 0002 6964 0007 696e7465676572'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000000c 00004000 0001 73 0001 74 ffff'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '52 0000000c 00004000 0001 73 0001 74 0064'));
-- tuples: huge column count, huge and oversized value lengths, unknown
-- column kind, wrong tuple markers
SELECT mycelium.decode_replication_message(pg_temp.msg('49 00000007 00004000 4e ffff'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '49 0000000d 00004000 4e 0001 74 7fffffff 61'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '49 0000000d 00004000 4e 0001 74 ffffffff 61'));
SELECT mycelium.decode_replication_message(pg_temp.msg('49 00000008 00004000 4e 0001 78'));
SELECT mycelium.decode_replication_message(pg_temp.msg('49 00000008 00004000 4b 0001 6e'));
SELECT mycelium.decode_replication_message(pg_temp.msg('44 00000008 00004000 4e 0001 6e'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '55 0000000c 00004000 4b 0001 6e 4f 0001 6e'));
-- a value that is not valid in the database encoding (UTF8 here)
SELECT getdatabaseencoding();
SELECT mycelium.decode_replication_message(pg_temp.msg('49 0000000e 00004000 4e 0001 74 00000002 c328'));
-- zero as OID, LSN, xid; a commit time PostgreSQL cannot represent
SELECT mycelium.decode_replication_message(pg_temp.msg('49 00000007 00000000 4e 0000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000015 01 0000000000000000 0000000000000000 000001f4'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000015 01 0000000001000000 0000000000000000 00000000'));
SELECT mycelium.decode_replication_message(pg_temp.msg(
  '42 00000015 01 0000000001000000 7fffffffffffffff 000001f4'));
-- TRUNCATE: huge relation count, none, unknown flags
SELECT mycelium.decode_replication_message(pg_temp.msg('54 00000009 00 ffffffff 00004000'));
SELECT mycelium.decode_replication_message(pg_temp.msg('54 00000009 00 000003e8 00004000'));
SELECT mycelium.decode_replication_message(pg_temp.msg('54 00000005 00 00000000'));
SELECT mycelium.decode_replication_message(pg_temp.msg('54 00000009 04 00000001 00004000'));
-- every prefix of a valid UPDATE is refused, and the server is still here
DO $$
DECLARE
  m bytea := pg_temp.msg('55 00000017 00004000 4b 0002 74 00000001 31 6e 4e 0002 75 74 00000000');
  refused int := 0;
BEGIN
  FOR l IN 0 .. length(m) - 1 LOOP
    BEGIN
      PERFORM mycelium.decode_replication_message(substring(m FROM 1 FOR l));
    EXCEPTION WHEN protocol_violation THEN
      refused := refused + 1;
    END;
  END LOOP;
  RAISE NOTICE 'refused % of % prefixes', refused, length(m);
END
$$;

-- random corruption of real messages: each one either parses or is refused
-- with protocol_violation; nothing else happens
SELECT setseed(0.42);
DO $$
DECLARE
  m bytea;
  parsed int := 0;
  refused int := 0;
BEGIN
  FOR i IN 1 .. 3000 LOOP
    SELECT data INTO m FROM msg ORDER BY n OFFSET i % (SELECT count(*) FROM msg) LIMIT 1;
    FOR k IN 1 .. 1 + (random() * 3)::int LOOP
      m := set_byte(m, (random() * (length(m) - 1))::int, (random() * 255)::int);
    END LOOP;
    IF random() < 0.2 THEN
      m := substring(m FROM 1 FOR (random() * length(m))::int);
    END IF;
    BEGIN
      PERFORM mycelium.decode_replication_message(m);
      parsed := parsed + 1;
    EXCEPTION WHEN protocol_violation THEN
      refused := refused + 1;
    END;
  END LOOP;
  RAISE NOTICE 'corrupted messages: % parsed or refused, % refused at least once',
    parsed + refused, CASE WHEN refused > 0 THEN 'some' ELSE 'none' END;
END
$$;

-- CONTEXT (the writer's version vector): one entry, then bad ones
SET TimeZone = 'UTC';
SELECT mycelium.decode_replication_message('\x560000000e000100026e310000000000000001'::bytea);
SELECT mycelium.decode_replication_message('\x5600000002ffff'::bytea);
SELECT mycelium.decode_replication_message('\x560000000d00010000000000000000000100'::bytea);
SELECT mycelium.decode_replication_message('\x560000000f000100026e31000000000000000100'::bytea);
SELECT mycelium.decode_replication_message('\x560000000e000100026e317fffffffffffffff'::bytea);
RESET TimeZone;
-- a table listed for replication gets the context trigger, and loses it
SELECT count(*) FROM pg_trigger WHERE tgname = 'mycelium_context' AND tgrelid = 'rep'::regclass;

-- clean up
SELECT pg_drop_replication_slot('capture');
SELECT pg_replication_origin_drop('peer_b');
DROP TABLE rep, other, nokey, ident_full, ident_nothing;
DELETE FROM mycelium.replicated_table;
SELECT count(*) FROM pg_trigger WHERE tgname = 'mycelium_context';
