-- Distributed deadlock detection (src/txn/deadlock.c, deadlock_detect.c).

CREATE FUNCTION mycelium.lock_waits(
	OUT waiting_pid int, OUT waiting_xact text, OUT waiting_distributed bool,
	OUT blocking_pid int, OUT blocking_xact text, OUT blocking_distributed bool)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'mycelium_lock_waits';
COMMENT ON FUNCTION mycelium.lock_waits() IS
	'lock waits on this node, with the distributed transaction of the waiting and the blocking backend';
REVOKE ALL ON FUNCTION mycelium.lock_waits() FROM PUBLIC;
