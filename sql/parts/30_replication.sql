-- Mycelium install script, part 30: peer replication (change capture).

-- Tables replicated between peers.  The output plugin "mycelium" streams
-- changes of these tables only.  It is a user_catalog_table so that logical
-- decoding can read it under the historic snapshot of the change being
-- decoded: a table is captured from the moment its row is committed.
CREATE TABLE mycelium.replicated_table (
	relid regclass PRIMARY KEY,
	conflict_resolution text NOT NULL DEFAULT 'last_writer_wins',
	added_at timestamptz NOT NULL DEFAULT now()
) WITH (user_catalog_table = true);
COMMENT ON TABLE mycelium.replicated_table IS 'tables replicated between peers (mesh metadata, identical on every node)';

-- Render one message of the replication protocol (the output of the
-- "mycelium" output plugin) as jsonb, through the apply side's parser.
-- STABLE, not IMMUTABLE: times are rendered in the session's TimeZone.
CREATE FUNCTION mycelium.decode_replication_message(message bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mycelium_decode_replication_message'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION mycelium.decode_replication_message(bytea) IS 'render a replication protocol message as jsonb';
