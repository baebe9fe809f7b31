-- Mycelium install script, part 35: mesh-wide unique ids and table
-- checksums (peer replication helpers).

-- An id is 41 bits of milliseconds since 2025-01-01 UTC, 10 bits of the
-- generating node's node_id and 12 bits of per-millisecond sequence.
CREATE FUNCTION mycelium.next_id()
RETURNS bigint
AS 'MODULE_PATHNAME', 'mycelium_next_id'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.next_id() IS 'a new bigint unique across the mesh (time, node id, sequence)';

CREATE FUNCTION mycelium.id_parts(id bigint)
RETURNS TABLE(created_at timestamptz, node_id int, sequence int)
AS 'MODULE_PATHNAME', 'mycelium_id_parts'
LANGUAGE C IMMUTABLE STRICT ROWS 1;
COMMENT ON FUNCTION mycelium.id_parts(bigint) IS 'decode an id made by mycelium.next_id()';

CREATE FUNCTION mycelium.table_checksum(table_name regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'mycelium_table_checksum'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION mycelium.table_checksum(regclass) IS 'order-independent checksum of the rows of a table: ''<row count>:<128-bit hex>''';
