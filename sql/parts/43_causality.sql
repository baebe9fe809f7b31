-- Mycelium install script, part 43: peer replication (clock and tombstones).

-- The hybrid logical clock's pool of commit origins: a local transaction
-- that wrote a replicated table commits through one of them, with its
-- clock value as origin timestamp (see docs/replication.md "Dots and the
-- hybrid logical clock").  Origins belong to the cluster, not a database.
DO $$
BEGIN
	FOR i IN 0..3 LOOP
		IF pg_catalog.pg_replication_origin_oid('mycelium.hlc:' || i) IS NULL THEN
			PERFORM pg_catalog.pg_replication_origin_create('mycelium.hlc:' || i);
		END IF;
	END LOOP;
END
$$;

-- Tombstones of deleted rows of replicated tables: (table, primary key,
-- node that deleted it); the dot is the commit timestamp and origin of the
-- row's xmin, like any row version.  Purged by the apply workers once
-- every peer has seen the delete.  Every node has its own.
CREATE TABLE mycelium.tombstone (
	table_name regclass NOT NULL,
	key jsonb NOT NULL,
	node_name text NOT NULL,
	PRIMARY KEY (table_name, key, node_name)
);
COMMENT ON TABLE mycelium.tombstone IS 'tombstones of deleted rows of replicated tables (see the view mycelium.tombstones)';

CREATE VIEW mycelium.tombstones AS
SELECT table_name, key, node_name,
	   pg_catalog.pg_xact_commit_timestamp(xmin) AS deleted_at
FROM mycelium.tombstone;
COMMENT ON VIEW mycelium.tombstones IS 'deleted rows of replicated tables not yet seen by every peer, with the deleting node and its clock value';

-- Row trigger of replicated tables: a local delete leaves a tombstone.
-- SECURITY DEFINER: any role allowed to delete may leave one.
CREATE FUNCTION mycelium.tombstone_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mycelium_tombstone_trigger'
LANGUAGE C SECURITY DEFINER SET search_path = pg_catalog;
COMMENT ON FUNCTION mycelium.tombstone_trigger() IS 'row trigger of replicated tables: a delete leaves a tombstone in mycelium.tombstone';
REVOKE ALL ON FUNCTION mycelium.tombstone_trigger() FROM PUBLIC;

-- Row trigger of replicated tables (BEFORE UPDATE): an UPDATE that
-- changes the primary key leaves the old key's tombstone, and sends every
-- value of the new row, so that peers can apply it as a delete of the old
-- key and an insert of the new one.  Not SECURITY DEFINER: it runs for
-- every updated row, and switches to the extension owner (with a safe
-- search_path) only when the key changed.
CREATE FUNCTION mycelium.key_change_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mycelium_key_change_trigger'
LANGUAGE C;
COMMENT ON FUNCTION mycelium.key_change_trigger() IS 'row trigger of replicated tables: an update of the primary key leaves a tombstone of the old key';
REVOKE ALL ON FUNCTION mycelium.key_change_trigger() FROM PUBLIC;
