-- Mycelium install script, part 40: the SQL API of peer replication
-- (replicate_table, stop_replicating_table, pause/resume, stat_replication,
-- wait_for_sync).  See docs/replication.md, "SQL reference".

-- True when every ordered pair of members has its replication slot: on each
-- member (the source) a slot "mycelium_node_<consumer node_id>" for every
-- other member.  replicate_table refuses to run until then.
CREATE FUNCTION mycelium.replication_ready()
RETURNS bool
AS 'MODULE_PATHNAME', 'mycelium_replication_ready'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.replication_ready() IS 'whether every member has the replication slots of every other member';

-- The shape of a relation as replicate_table compares it between members:
-- one row per column, ordered by name, with its type as format_type prints
-- it under search_path = pg_catalog (so every other type is qualified the
-- same way on every member), whether it is a key column of the primary key,
-- the relkind, and whether the relation is already replicated.  No rows: no
-- such relation.  Internal.
CREATE FUNCTION mycelium.replication_table_shape(table_name text)
RETURNS TABLE(column_name text, column_type text, in_primary_key bool,
              relkind text, replicated bool)
LANGUAGE sql STABLE SET search_path = pg_catalog
AS $$
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
       coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]), false),
       c.relkind::text,
       EXISTS (SELECT 1 FROM mycelium.replicated_table r WHERE r.relid = c.oid)
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE c.oid = to_regclass(table_name)
 ORDER BY a.attname
$$;

CREATE FUNCTION mycelium.replicate_table(table_name regclass,
                                         conflict_resolution text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_replicate_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.replicate_table(regclass, text) IS 'replicate a table between all members: create it and copy its rows where it is missing';

CREATE FUNCTION mycelium.stop_replicating_table(table_name regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_stop_replicating_table'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mycelium.stop_replicating_table(regclass) IS 'stop replicating a table on every member; tables and rows stay';

CREATE FUNCTION mycelium.pause_replication(peer text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_pause_replication'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.pause_replication(text) IS 'stop applying changes from a peer (NULL: from every peer) on this node';

CREATE FUNCTION mycelium.resume_replication(peer text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_resume_replication'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.resume_replication(text) IS 'apply changes from a paused peer (NULL: from every peer) again';

CREATE FUNCTION mycelium.wait_for_sync(timeout interval DEFAULT '30s')
RETURNS bool
AS 'MODULE_PATHNAME', 'mycelium_wait_for_sync'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog;
COMMENT ON FUNCTION mycelium.wait_for_sync(interval) IS 'wait until every peer has applied what this node committed before the call; false at timeout';

CREATE FUNCTION mycelium.stat_replication_internal()
RETURNS TABLE(peer text, state text, lag_bytes bigint, lag_seconds float8,
              last_heartbeat timestamptz, applied_transactions bigint,
              conflicts bigint, retries bigint)
AS 'MODULE_PATHNAME', 'mycelium_stat_replication'
LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog;

CREATE VIEW mycelium.stat_replication AS
SELECT * FROM mycelium.stat_replication_internal();
COMMENT ON VIEW mycelium.stat_replication IS 'replication from each peer into this node: state, lag and counters';

-- Only superusers change what is replicated, pause it, or ask every member
-- about its slots; anyone may look
-- and wait (the two are SECURITY DEFINER to read the node catalog, which
-- only the view mycelium.nodes exposes to everyone).
REVOKE ALL ON FUNCTION mycelium.replication_ready() FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.replicate_table(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.stop_replicating_table(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.pause_replication(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.resume_replication(text) FROM PUBLIC;
GRANT SELECT ON mycelium.stat_replication TO PUBLIC;
