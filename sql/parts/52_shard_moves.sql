-- Mycelium install script, part 52: moving, splitting and rebalancing
-- shards, and draining a node.  See docs/sharding.md.

CREATE FUNCTION mycelium.split_shard(shard_id bigint, split_point text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mycelium_split_shard'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.split_shard(bigint, text) IS 'split a shard (and the shards colocated with it) at split_point on its node; returns the new shard''s id';

CREATE FUNCTION mycelium.move_shard(shard_id bigint, target_node text)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_move_shard'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.move_shard(bigint, text) IS 'move a shard and the shards colocated with it to another node';

CREATE FUNCTION mycelium.rebalance(table_name regclass DEFAULT NULL)
RETURNS TABLE(shard_id bigint, from_node text, to_node text)
AS 'MODULE_PATHNAME', 'mycelium_rebalance'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.rebalance(regclass) IS 'even out the shards of a table''s colocation group (of all groups when NULL) over the active nodes; returns the moves made';

CREATE FUNCTION mycelium.drain_node(node_name text)
RETURNS int
AS 'MODULE_PATHNAME', 'mycelium_drain_node'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.drain_node(text) IS 'move every shard off a node (marked draining) to the other active nodes; returns the number of shards moved';

CREATE FUNCTION mycelium.activate_node(node_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mycelium_activate_node'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mycelium.activate_node(text) IS 'let a draining node take shards again (status active); moves no shard';

-- split_shard, move_shard and rebalance(table) check ownership of the
-- tables themselves (owner or superuser, 42501); rebalance(NULL) and
-- drain_node move every table's shards and activate_node changes the node
-- catalog, so only superusers may (checked in C as well).
REVOKE ALL ON FUNCTION mycelium.drain_node(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mycelium.activate_node(text) FROM PUBLIC;
