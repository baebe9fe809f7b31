-- The public SQL interface of SPEC.md, pinned with pgTAP: every function's
-- signature, every view's columns and types, and the SQLSTATEs of bad input.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mycelium;
CREATE EXTENSION IF NOT EXISTS pgtap;
RESET client_min_messages;
\pset format unaligned
\pset tuples_only on

SELECT plan(49);

-- section 1: nodes and the mesh
SELECT function_returns('mycelium', 'add_node', ARRAY['text', 'text', 'integer'], 'integer');
SELECT function_returns('mycelium', 'remove_node', ARRAY['text'], 'void');
SELECT function_returns('mycelium', 'run_command_on_nodes', ARRAY['text'], 'setof record');
SELECT is((SELECT pg_get_function_result('mycelium.run_command_on_nodes(text)'::regprocedure)),
	'TABLE(node_name text, success boolean, result text)', 'run_command_on_nodes columns');
SELECT is((SELECT pg_get_function_arguments('mycelium.add_node(text,text,int)'::regprocedure)),
	'node_name text, host text, port integer DEFAULT 5432', 'add_node arguments and default');
SELECT columns_are('mycelium', 'nodes',
	ARRAY['node_id', 'node_name', 'host', 'port', 'is_local', 'status']);
SELECT col_type_is('mycelium', 'nodes', 'node_id', 'integer', 'nodes.node_id is integer');
SELECT col_type_is('mycelium', 'nodes', 'node_name', 'text', 'nodes.node_name is text');
SELECT col_type_is('mycelium', 'nodes', 'host', 'text', 'nodes.host is text');
SELECT col_type_is('mycelium', 'nodes', 'port', 'integer', 'nodes.port is integer');
SELECT col_type_is('mycelium', 'nodes', 'is_local', 'boolean', 'nodes.is_local is boolean');
SELECT col_type_is('mycelium', 'nodes', 'status', 'text', 'nodes.status is text');
SELECT columns_are('mycelium', 'stat_connections',
	ARRAY['node', 'role', 'state', 'connections', 'opened', 'reused', 'failures']);

-- section 4: recovery and the transactions view
SELECT function_returns('mycelium', 'recover_prepared_transactions', ARRAY[]::text[], 'integer');
SELECT columns_are('mycelium', 'distributed_transactions',
	ARRAY['gid', 'coordinator', 'participants', 'state', 'started_at']);
SELECT col_type_is('mycelium', 'distributed_transactions', 'participants', 'text[]',
	'distributed_transactions.participants is text[]');
SELECT is((SELECT count(*) FROM mycelium.distributed_transactions), 0::bigint,
	'nothing in flight on a single node');

-- section 2: certificates
SELECT is((SELECT pg_get_function_arguments('mycelium.generate_ca(text,int)'::regprocedure)),
	'common_name text, valid_days integer DEFAULT 3650',
	'generate_ca signature');
SELECT is((SELECT pg_get_function_arguments('mycelium.generate_certificate(text,text,text,int,text[],text[])'::regprocedure)),
	'common_name text, ca_certificate text, ca_private_key text, valid_days integer DEFAULT 365, dns_names text[] DEFAULT NULL::text[], ip_addresses text[] DEFAULT NULL::text[]',
	'generate_certificate signature');
SELECT is((SELECT pg_get_function_result('mycelium.certificate_info(text)'::regprocedure)),
	'TABLE(subject text, issuer text, serial text, not_before timestamp with time zone, not_after timestamp with time zone, fingerprint_sha256 text, dns_names text[], ip_addresses text[], is_ca boolean)',
	'certificate_info columns');
SELECT is((SELECT pg_get_function_result('mycelium.verify_certificate(text,text,timestamptz)'::regprocedure)),
	'TABLE(valid boolean, error text)', 'verify_certificate columns');
SELECT is((SELECT pg_get_function_result('mycelium.generate_ca(text,int)'::regprocedure)),
	'TABLE(certificate text, private_key text)', 'generate_ca columns');
SELECT is((SELECT pg_get_function_arguments('mycelium.verify_certificate(text,text,timestamptz)'::regprocedure)),
	'certificate text, ca_bundle text, at timestamp with time zone DEFAULT now()',
	'verify_certificate signature');
SELECT is((SELECT pg_get_function_result('mycelium.check_certificates()'::regprocedure)),
	'TABLE(node_name text, subject text, not_after timestamp with time zone, days_left integer, valid boolean, error text)',
	'check_certificates columns');

-- section 5: mesh-wide ids and checksums
SELECT function_returns('mycelium', 'next_id', ARRAY[]::text[], 'bigint');
SELECT is((SELECT pg_get_function_result('mycelium.id_parts(bigint)'::regprocedure)),
	'TABLE(created_at timestamp with time zone, node_id integer, sequence integer)', 'id_parts columns');
SELECT function_returns('mycelium', 'table_checksum', ARRAY['regclass'], 'text');

-- only superusers change the mesh
SELECT ok(NOT has_function_privilege('public', 'mycelium.add_node(text,text,int)', 'EXECUTE'),
	'add_node is not for PUBLIC');
SELECT ok(NOT has_function_privilege('public', 'mycelium.remove_node(text)', 'EXECUTE'),
	'remove_node is not for PUBLIC');
SELECT ok(NOT has_function_privilege('public', 'mycelium.run_command_on_nodes(text)', 'EXECUTE'),
	'run_command_on_nodes is not for PUBLIC');
SELECT ok(has_table_privilege('public', 'mycelium.nodes', 'SELECT'), 'anyone may read mycelium.nodes');

-- catalog: mesh metadata and commit records
SELECT has_table('mycelium', 'node', 'node catalog');
SELECT col_is_pk('mycelium', 'node', 'node_id', 'node_id identifies a node');
SELECT has_table('mycelium', 'commit_record', 'commit records');
SELECT col_is_pk('mycelium', 'commit_record', 'gid', 'gid identifies a commit record');
SELECT has_trigger('mycelium', 'node', 'node_catalog_changed', 'node catalog changes invalidate caches');

-- bad input: specific SQLSTATEs
SELECT throws_ok($$SELECT mycelium.add_node('bad name', '127.0.0.1', 5432)$$, '22023');
SELECT throws_ok($$SELECT mycelium.add_node('n2', '127.0.0.1', 0)$$, '22023');
SELECT throws_ok($$SELECT mycelium.add_node('n2', 'two words', 5432)$$, '22023');
SELECT throws_ok($$SELECT mycelium.add_node(NULL, '127.0.0.1', 5432)$$, '22004');
SELECT throws_ok($$SELECT mycelium.add_node('regress', '127.0.0.1', 5432)$$, '42710');
SELECT throws_ok($$SELECT mycelium.remove_node('nosuchnode')$$, '42704');
SELECT throws_ok($$SELECT mycelium.remove_node('regress')$$, '0A000');
SELECT throws_ok($$SELECT * FROM mycelium.run_command_on_nodes(NULL)$$, '22004');
SELECT throws_ok($$SET mycelium.shard_count = 0$$, '22023');
SELECT throws_ok($$SET mycelium.ssl_mode = 'disable'$$, '55P02');
SELECT throws_ok($$SET mycelium.conflict_resolution = 'coin_toss'$$, '22023');
SELECT throws_ok($$SET mycelium.nonexistent = 1$$, '42602');
SELECT throws_ok($$SELECT mycelium.add_node('n9', '127.0.0.1', 1)$$, '08001');

SELECT * FROM finish();
