-- Mycelium install script, part 50: sharding metadata (distributed and
-- reference tables, their shards and placements) and the table policies
-- (create_distributed_table, create_reference_table, add_range_shard,
-- undistribute_table, shard_for).  See docs/sharding.md.

-- One row per distributed (hash, range) or reference table; identical on
-- every node (changed only with 2PC).  table_name is a regclass, so each
-- node stores its own OID of the table: rows are written on other nodes
-- with the qualified name cast to regclass there.
CREATE TABLE mycelium.dist_table (
	table_name regclass PRIMARY KEY,
	method text NOT NULL CHECK (method IN ('hash', 'range', 'reference')),
	dist_column text,
	colocation_id int NOT NULL DEFAULT 0,
	CHECK ((method = 'reference') = (dist_column IS NULL))
);
COMMENT ON TABLE mycelium.dist_table IS 'distributed and reference tables (mesh metadata, identical on every node)';

-- One row per shard of a hash or range table, with the node holding its
-- only placement.  Hash shards: min_value..max_value are int32 hash values,
-- both inclusive.  Range shards: values of the distribution column's type,
-- min_value inclusive, max_value exclusive.  shard_name is unqualified: the
-- shard lives in the schema of its table.
CREATE TABLE mycelium.shard (
	shard_id bigint PRIMARY KEY,
	table_name regclass NOT NULL REFERENCES mycelium.dist_table (table_name) ON DELETE CASCADE,
	shard_name text NOT NULL,
	min_value text NOT NULL,
	max_value text NOT NULL,
	node_name text NOT NULL
);
CREATE INDEX shard_table_name_idx ON mycelium.shard (table_name);
COMMENT ON TABLE mycelium.shard IS 'shards of distributed tables and the node holding each (mesh metadata, identical on every node)';

-- Every backend caches the two tables; this trigger makes each backend drop
-- that cache, and the relcache entry of every table whose rows changed (so
-- plans cached over it are rebuilt), once the change commits.
CREATE FUNCTION mycelium.shard_catalog_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mycelium_shard_catalog_changed'
LANGUAGE C;
CREATE TRIGGER dist_table_changed
	AFTER INSERT OR UPDATE OR DELETE ON mycelium.dist_table
	FOR EACH ROW EXECUTE FUNCTION mycelium.shard_catalog_changed();
CREATE TRIGGER dist_table_truncated
	AFTER TRUNCATE ON mycelium.dist_table
	FOR EACH STATEMENT EXECUTE FUNCTION mycelium.shard_catalog_changed();
CREATE TRIGGER shard_changed
	AFTER INSERT OR UPDATE OR DELETE ON mycelium.shard
	FOR EACH ROW EXECUTE FUNCTION mycelium.shard_catalog_changed();
CREATE TRIGGER shard_truncated
	AFTER TRUNCATE ON mycelium.shard
	FOR EACH STATEMENT EXECUTE FUNCTION mycelium.shard_catalog_changed();

CREATE VIEW mycelium.tables AS
SELECT d.table_name, d.method, d.dist_column AS distribution_column,
       (SELECT count(*)::int FROM mycelium.shard s WHERE s.table_name = d.table_name) AS shard_count,
       d.colocation_id
  FROM mycelium.dist_table d
 ORDER BY d.table_name::text;
COMMENT ON VIEW mycelium.tables IS 'distributed and reference tables';

CREATE VIEW mycelium.shards AS
SELECT s.table_name, s.shard_id, s.shard_name, s.min_value, s.max_value, s.node_name
  FROM mycelium.shard s
 ORDER BY s.table_name::text, s.shard_id;
COMMENT ON VIEW mycelium.shards IS 'shards of distributed tables and the node holding each';

CREATE FUNCTION mycelium.create_distributed_table(table_name regclass,
                                                  distribution_column text,
                                                  method text DEFAULT 'hash',
                                                  shard_count int DEFAULT NULL,
                                                  colocate_with regclass DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_create_distributed_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.create_distributed_table(regclass, text, text, int, regclass) IS 'split a table into shards across the nodes, moving its rows into them';

CREATE FUNCTION mycelium.create_reference_table(table_name regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_create_reference_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.create_reference_table(regclass) IS 'keep a full copy of a table on every node';

CREATE FUNCTION mycelium.add_range_shard(table_name regclass, lower_bound text,
                                         upper_bound text, node_name text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mycelium_add_range_shard'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.add_range_shard(regclass, text, text, text) IS 'add a shard for [lower_bound, upper_bound) to a range-distributed table; returns its shard_id';

CREATE FUNCTION mycelium.undistribute_table(table_name regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_undistribute_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.undistribute_table(regclass) IS 'bring the rows of a distributed or reference table back into a local table on this node';

CREATE FUNCTION mycelium.shard_for(table_name regclass, value anyelement)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mycelium_shard_for'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION mycelium.shard_for(regclass, anyelement) IS 'the shard_id of the shard that holds a distribution value (NULL if no shard covers it)';

-- The table policies check ownership themselves (owner or superuser, 42501).
GRANT SELECT ON mycelium.tables, mycelium.shards, mycelium.dist_table, mycelium.shard TO PUBLIC;
