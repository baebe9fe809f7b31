-- Mycelium install script, part 42: peer replication (version vectors).

-- This node's version vector: per peer, the clock value (commit time) of
-- the latest of its transactions applied here.  The apply workers persist each entry in
-- WAL with every applied commit (as the remote_lsn of the replication
-- origin "mycelium.vv:<peer>"); a writer's context is read from it (see
-- docs/replication.md "Causality").  Every node has its own.
CREATE FUNCTION mycelium.version_vector_entries(OUT node_name text, OUT commit_time timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_version_vector'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION mycelium.version_vector_entries() IS 'this node''s version vector (see the view mycelium.version_vector)';

CREATE VIEW mycelium.version_vector AS
SELECT node_name, commit_time FROM mycelium.version_vector_entries();
COMMENT ON VIEW mycelium.version_vector IS 'this node''s version vector: latest applied commit time per peer';

-- Statement trigger of replicated tables: logs the writer's context into
-- WAL for the output plugin.  Created and dropped with the table's row in
-- mycelium.replicated_table.
CREATE FUNCTION mycelium.replication_context()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mycelium_replication_context'
LANGUAGE C;
COMMENT ON FUNCTION mycelium.replication_context() IS 'statement trigger of replicated tables: carries the writer''s version vector to the peers';

CREATE FUNCTION mycelium.replicated_table_trigger()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
DECLARE
	t record;
BEGIN
	FOR t IN SELECT * FROM (VALUES
		('mycelium_context', 'BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
		 'FOR EACH STATEMENT EXECUTE FUNCTION mycelium.replication_context()'),
		('mycelium_tombstone', 'AFTER DELETE ON %s '
		 'FOR EACH ROW EXECUTE FUNCTION mycelium.tombstone_trigger()'),
		('mycelium_key_change', 'BEFORE UPDATE ON %s '
		 'FOR EACH ROW EXECUTE FUNCTION mycelium.key_change_trigger()')) AS v(name, definition)
	LOOP
		IF TG_OP = 'INSERT' THEN
			IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = NEW.relid AND tgname = t.name) THEN
				EXECUTE format('CREATE TRIGGER %I ' || t.definition, t.name, NEW.relid);
			END IF;
		ELSIF to_regclass(OLD.relid::text) IS NOT NULL AND EXISTS
			(SELECT 1 FROM pg_trigger WHERE tgrelid = OLD.relid AND tgname = t.name) THEN
			EXECUTE format('DROP TRIGGER %I ON %s', t.name, OLD.relid);
		END IF;
	END LOOP;
	IF TG_OP = 'INSERT' THEN
		RETURN NEW;
	END IF;
	DELETE FROM mycelium.tombstone WHERE table_name = OLD.relid;
	RETURN OLD;
END
$$;
COMMENT ON FUNCTION mycelium.replicated_table_trigger() IS 'creates and drops the mycelium_context, mycelium_tombstone and mycelium_key_change triggers of replicated tables';

CREATE TRIGGER replicated_table_context
	AFTER INSERT OR DELETE ON mycelium.replicated_table
	FOR EACH ROW EXECUTE FUNCTION mycelium.replicated_table_trigger();

REVOKE ALL ON FUNCTION mycelium.replicated_table_trigger() FROM PUBLIC;

-- The slots that stream this node's changes to its peers, with the WAL
-- each holds; over_max_slot_lag is the metric behind the launcher's
-- WARNING (mycelium.max_slot_lag, -1: no limit).  Slots of removed nodes
-- are dropped by the launcher.
CREATE VIEW mycelium.replication_slots AS
SELECT s.slot_name::text AS slot_name,
	   n.node_name AS peer,
	   s.active,
	   coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0)::bigint
		   AS lag_bytes,
	   pg_catalog.current_setting('mycelium.max_slot_lag') <> '-1' AND
	   coalesce(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0) >
		   pg_catalog.pg_size_bytes(pg_catalog.current_setting('mycelium.max_slot_lag'))
		   AS over_max_slot_lag
FROM pg_catalog.pg_replication_slots s
LEFT JOIN mycelium.node n ON s.slot_name = 'mycelium_node_' || n.node_id
WHERE s.plugin = 'mycelium' AND s.slot_name ~ '^mycelium_node_[0-9]+$'
  AND s.database = pg_catalog.current_database();
COMMENT ON VIEW mycelium.replication_slots IS 'replication slots feeding the peers, with the WAL they hold against mycelium.max_slot_lag';
