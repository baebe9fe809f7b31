-- Mycelium install script, part 00: the mesh (node catalog, membership,
-- commands on every node, connections, two-phase commit records).
\echo Use "CREATE EXTENSION mycelium" to load this file. \quit

-- Members of the mesh; identical on every node (changed only with 2PC).
CREATE TABLE mycelium.node (
	node_id int PRIMARY KEY,
	node_name text NOT NULL UNIQUE,
	host text NOT NULL,
	port int NOT NULL CHECK (port BETWEEN 1 AND 65535),
	status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining')),
	UNIQUE (host, port)
);
COMMENT ON TABLE mycelium.node IS 'members of the mesh (mesh metadata, identical on every node)';

-- Decisions to commit two-phase transactions this node coordinated, or
-- kept as a writing participant: a row exists exactly when the deciding
-- transaction committed (see txn/commit_record.c).
CREATE TABLE mycelium.commit_record (
	gid text PRIMARY KEY,
	participants text[] NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE mycelium.commit_record IS 'commit decisions of two-phase transactions coordinated or kept here';

-- every backend caches the node catalog; this trigger invalidates it
CREATE FUNCTION mycelium.node_catalog_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mycelium_node_catalog_changed'
LANGUAGE C;
CREATE TRIGGER node_catalog_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mycelium.node
	FOR EACH STATEMENT EXECUTE FUNCTION mycelium.node_catalog_changed();

-- Deliberately not pg_extension_config_dump'ed: a dump restored elsewhere
-- must not claim mesh membership or another node's commit decisions (and
-- would collide with the local node row CREATE EXTENSION inserts).

CREATE FUNCTION mycelium.node_status(node_name text, catalog_status text)
RETURNS text
AS 'MODULE_PATHNAME', 'mycelium_node_status'
LANGUAGE C STABLE STRICT;

CREATE VIEW mycelium.nodes AS
SELECT n.node_id, n.node_name, n.host, n.port,
       n.node_name = current_setting('mycelium.node_name', true) AS is_local,
       mycelium.node_status(n.node_name, n.status) AS status
  FROM mycelium.node n
 ORDER BY n.node_id;
COMMENT ON VIEW mycelium.nodes IS 'members of the mesh with their health';

CREATE FUNCTION mycelium.add_node(node_name text, host text, port int DEFAULT 5432)
RETURNS int
AS 'MODULE_PATHNAME', 'mycelium_add_node'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.add_node(text, text, int) IS 'add a node to the mesh; returns its node_id';

CREATE FUNCTION mycelium.remove_node(node_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_remove_node'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.remove_node(text) IS 'remove a node from the mesh';

CREATE FUNCTION mycelium.run_command_on_nodes(command text)
RETURNS TABLE(node_name text, success bool, result text)
AS 'MODULE_PATHNAME', 'mycelium_run_command_on_nodes'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.run_command_on_nodes(text) IS 'run a command on every node in parallel, each in its own session';

CREATE FUNCTION mycelium.recover_prepared_transactions()
RETURNS int
AS 'MODULE_PATHNAME', 'mycelium_recover_prepared_transactions'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.recover_prepared_transactions() IS 'resolve in-doubt two-phase transactions coordinated by this node now';

CREATE FUNCTION mycelium.stat_connections_internal()
RETURNS TABLE(node text, role text, state text, connections int, opened bigint, reused bigint, failures bigint)
AS 'MODULE_PATHNAME', 'mycelium_stat_connections'
LANGUAGE C VOLATILE;

CREATE VIEW mycelium.stat_connections AS
SELECT * FROM mycelium.stat_connections_internal();
COMMENT ON VIEW mycelium.stat_connections IS 'this backend''s connections to other nodes, per node and role';

-- Only superusers change the mesh or run commands everywhere; anyone may look.
REVOKE ALL ON FUNCTION mycelium.add_node(text, text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.remove_node(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.run_command_on_nodes(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.recover_prepared_transactions() FROM PUBLIC;
GRANT USAGE ON SCHEMA mycelium TO PUBLIC;
GRANT SELECT ON mycelium.nodes, mycelium.stat_connections TO PUBLIC;

-- Register this node, if it has a name yet (otherwise the first mesh
-- function called after mycelium.node_name is set does it).  Extension
-- scripts run with client_min_messages >= WARNING, hence a WARNING; it is
-- only given where the mesh is in use (the library is preloaded).
DO $$
BEGIN
	IF coalesce(current_setting('mycelium.node_name', true), '') <> '' THEN
		INSERT INTO mycelium.node (node_id, node_name, host, port)
		VALUES (1, current_setting('mycelium.node_name'),
		        current_setting('mycelium.node_host'),
		        current_setting('port')::int);
	ELSIF current_setting('shared_preload_libraries') ~ '(^|[\s,])mycelium($|[\s,])' THEN
		RAISE WARNING 'mycelium.node_name is not set, so this node is not registered in the mesh yet'
			USING HINT = 'Set mycelium.node_name in postgresql.conf and restart before adding nodes.';
	END IF;
END
$$;

-- Two-phase transactions seen from this node: those its backends are
-- coordinating now, those it committed whose record is not yet cleaned up,
-- and those it holds prepared for a coordinator (in doubt until resolved).
CREATE FUNCTION mycelium.active_transactions()
RETURNS TABLE(gid text, coordinator text, participants text[], state text, started_at timestamptz)
AS 'MODULE_PATHNAME', 'mycelium_active_transactions'
LANGUAGE C VOLATILE;

CREATE FUNCTION mycelium.gid_coordinator(gid text)
RETURNS text
AS 'MODULE_PATHNAME', 'mycelium_gid_coordinator'
LANGUAGE C IMMUTABLE STRICT;

-- the keeper's half of a two-phase commit it decides (txn/commit_record.c):
-- called by the coordinator in the keeper's remote transaction
CREATE FUNCTION mycelium.keep_commit_record(gid text, participants text[])
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_keep_commit_record'
LANGUAGE C VOLATILE STRICT;

-- on the node that keeps a gid's commit record: true if the transaction
-- committed, false if it did not and never will, NULL while undecided
CREATE FUNCTION mycelium.commit_outcome(gid text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mycelium_commit_outcome'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW mycelium.distributed_transactions AS
WITH active AS (SELECT * FROM mycelium.active_transactions())
SELECT gid, coordinator, participants, state, started_at FROM active
UNION ALL
SELECT r.gid, coalesce(mycelium.gid_coordinator(r.gid), current_setting('mycelium.node_name')),
       r.participants, 'committed', r.created_at
  FROM mycelium.commit_record r
 WHERE r.gid NOT IN (SELECT gid FROM active)
UNION ALL
SELECT p.gid, mycelium.gid_coordinator(p.gid), ARRAY[current_setting('mycelium.node_name')],
       'prepared', p.prepared
  FROM pg_prepared_xacts p
 WHERE p.database = current_database() AND mycelium.gid_coordinator(p.gid) IS NOT NULL;
COMMENT ON VIEW mycelium.distributed_transactions IS 'two-phase transactions in flight, committed but not cleaned up, or held prepared here';
GRANT SELECT ON mycelium.distributed_transactions TO PUBLIC;
