-- Mycelium install script, part 41: peer replication (apply side).

-- Every conflict met while applying a peer's changes, with its resolution.
-- Versions are {"commit_time": ..., "node": ...} of the last writer.
CREATE TABLE mycelium.conflicts (
	conflict_id bigserial PRIMARY KEY,
	table_name regclass NOT NULL,
	conflict_type text NOT NULL
		CHECK (conflict_type IN ('insert_insert', 'update_update', 'update_delete', 'delete_missing')),
	local_row jsonb,
	remote_row jsonb,
	local_version jsonb,
	remote_version jsonb,
	remote_node text NOT NULL,
	resolution text NOT NULL,
	detected_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE mycelium.conflicts IS 'replication conflicts met by the apply workers and how they were resolved';

-- The apply side's shared per-peer state, as the apply workers keep it.
CREATE FUNCTION mycelium.replication_peer_state(
	OUT peer text, OUT status text, OUT paused bool, OUT worker_pid int,
	OUT received_lsn pg_lsn, OUT applied_lsn pg_lsn, OUT peer_wal_end pg_lsn,
	OUT last_commit_time timestamptz, OUT last_heartbeat timestamptz,
	OUT applied_transactions bigint, OUT conflicts bigint, OUT retries bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mycelium_replication_peer_state'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION mycelium.replication_peer_state() IS 'per-peer state of the replication apply workers (raw; see stat_replication)';
