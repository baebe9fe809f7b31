
-- Query routing (src/router): the placeholder the planner scans in place
-- of a distributed table; the router always replaces its scans.
CREATE FUNCTION mycelium.shard_rows(table_name oid, spec int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_shard_rows'
LANGUAGE C STABLE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION mycelium.shard_rows(oid, int) IS 'internal: planned in place of a distributed table';
