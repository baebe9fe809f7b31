-- The mesh on a single node: registration, the nodes view, commands on every
-- node (through a loopback connection), and bad input to membership changes.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
RESET client_min_messages;
\set VERBOSITY default

-- CREATE EXTENSION registered this node
SELECT node_id, node_name, host, port = current_setting('port')::int AS port_ok,
       is_local, status
  FROM mycelium.nodes;

-- commands run on every node, here only this one
SELECT * FROM mycelium.run_command_on_nodes('SELECT 40 + 2');
SELECT * FROM mycelium.run_command_on_nodes('CREATE TABLE IF NOT EXISTS rc_t (a int)');
SELECT * FROM mycelium.run_command_on_nodes('INSERT INTO rc_t VALUES (1), (2)');
SELECT * FROM mycelium.run_command_on_nodes('SELECT count(*) FROM rc_t');
SELECT * FROM mycelium.run_command_on_nodes('SELECT NULL');
-- a failing command is a row with success = false, not an error
SELECT * FROM mycelium.run_command_on_nodes('SELECT 1/0');
SELECT * FROM mycelium.run_command_on_nodes('SELECT * FROM no_such_table');
SELECT * FROM mycelium.run_command_on_nodes('SELECT a FROM rc_t');
SELECT * FROM mycelium.run_command_on_nodes(NULL);
-- the command runs in its own session, outside this transaction
BEGIN;
SELECT * FROM mycelium.run_command_on_nodes('DROP TABLE rc_t');
ROLLBACK;
SELECT to_regclass('rc_t') IS NULL AS dropped;

-- the connection was opened once and reused
SELECT node, state, connections, opened >= 1 AS opened, reused >= 1 AS reused, failures
  FROM mycelium.stat_connections;

-- the shared pool limit counts connections of all backends to one peer:
-- with room for one, the loopback session of a fan-out waits for a second
-- connection for a nested fan-out (its caller holds the only one), then
-- fails with 53300 after mycelium.connect_timeout
ALTER SYSTEM SET mycelium.max_shared_pool_size = 1;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1..50 LOOP
		EXIT WHEN current_setting('mycelium.max_shared_pool_size') = '1';
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT node_name, success, result FROM mycelium.run_command_on_nodes($$
	SELECT success::text || ': ' || result FROM mycelium.run_command_on_nodes('SELECT 1')
$$);
ALTER SYSTEM RESET mycelium.max_shared_pool_size;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1..50 LOOP
		EXIT WHEN current_setting('mycelium.max_shared_pool_size') = '0';
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;

-- bad input to add_node
SELECT mycelium.add_node('bad name', '127.0.0.1', 5432);
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.add_node('', '127.0.0.1', 5432);
SELECT mycelium.add_node('n2', '', 5432);
SELECT mycelium.add_node('n2', '127.0.0.1', 0);
SELECT mycelium.add_node('n2', '127.0.0.1', 70000);
SELECT mycelium.add_node(NULL, '127.0.0.1', 5432);
SELECT mycelium.add_node('regress', '127.0.0.1', 5432);
\echo :LAST_ERROR_SQLSTATE
-- (the port in the message varies: show it masked)
DO $$
BEGIN
	PERFORM mycelium.add_node('n2', '127.0.0.1', current_setting('port')::int);
EXCEPTION WHEN duplicate_object THEN
	RAISE NOTICE '% (%)', regexp_replace(SQLERRM, ':[0-9]+ ', ':PORT '), SQLSTATE;
END
$$;
-- a dead address fails with 08001 after mycelium.connect_attempts tries
SET mycelium.connect_timeout = '500ms';
\set VERBOSITY terse
SELECT mycelium.add_node('n2', '127.0.0.1', 1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET mycelium.connect_timeout;
SELECT node, state, failures FROM mycelium.stat_connections WHERE node = 'n2';
-- nothing changed
SELECT node_name FROM mycelium.nodes;

-- bad input to remove_node
SELECT mycelium.remove_node('nosuchnode');
\echo :LAST_ERROR_SQLSTATE
SELECT mycelium.remove_node('regress');
SELECT mycelium.remove_node(NULL);

-- recovery with nothing in doubt
SELECT mycelium.recover_prepared_transactions();

-- only superusers may change the mesh
CREATE ROLE regress_mesh_nobody;
SET ROLE regress_mesh_nobody;
SELECT count(*) FROM mycelium.nodes;
SELECT mycelium.add_node('n2', '127.0.0.1', 5432);
SELECT * FROM mycelium.run_command_on_nodes('SELECT 1');
RESET ROLE;
DROP ROLE regress_mesh_nobody;
