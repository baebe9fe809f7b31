-- Configuration parameters: defaults, units, and bad values refused with
-- SQLSTATE 22023 and a reason.
\set VERBOSITY default
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'mycelium.%' ORDER BY name;
SHOW mycelium.connect_timeout;
SET mycelium.connect_timeout = '250ms';
SHOW mycelium.connect_timeout;
RESET mycelium.connect_timeout;
SHOW mycelium.certificate_expiry_warning;
SHOW mycelium.max_slot_lag;
-- out of range and wrong units
SET mycelium.connect_timeout = 0;
\echo :LAST_ERROR_SQLSTATE
SET mycelium.connect_timeout = '5 parsecs';
SET mycelium.shard_count = 0;
SET mycelium.shard_count = 'many';
SET mycelium.prepare_timeout = -1;
SET mycelium.max_connections_per_node = 0;
SET mycelium.connect_attempts = 101;
-- enums list the values they accept
SET mycelium.conflict_resolution = 'coin_toss';
\echo :LAST_ERROR_SQLSTATE
SET mycelium.conflict_resolution = 'last_writer_wins';
SHOW mycelium.conflict_resolution;
RESET mycelium.conflict_resolution;
-- the prefix is reserved: misspelt names are refused
SET mycelium.shardcount = 4;
-- settings that need a reload or restart cannot be SET
SET mycelium.ssl_mode = 'disable';
SET mycelium.node_name = 'other';
SET mycelium.recovery_interval = '1s';
-- string checks explain a bad value (ALTER SYSTEM runs the check hook)
ALTER SYSTEM SET mycelium.node_name = 'no spaces allowed';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET mycelium.node_name = 'a_very_long_node_name_that_goes_on_and_on_past_the_sixty_three_limit';
ALTER SYSTEM SET mycelium.node_host = '';
ALTER SYSTEM SET mycelium.node_host = 'two words';
ALTER SYSTEM SET mycelium.database = '';
ALTER SYSTEM SET mycelium.ssl_ca_file = 'relative/ca.crt';
ALTER SYSTEM SET mycelium.ssl_mode = 'sometimes';
