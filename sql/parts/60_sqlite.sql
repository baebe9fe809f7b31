
-- Mycelium install script, part 60: the SQLite foreign data wrapper
-- (src/sqlite, docs/sqlite.md).  Usable without shared_preload_libraries.

CREATE FUNCTION mycelium.sqlite_fdw_handler() RETURNS fdw_handler
	AS 'MODULE_PATHNAME', 'mycelium_sqlite_fdw_handler'
	LANGUAGE C STRICT;

CREATE FUNCTION mycelium.sqlite_fdw_validator(text[], oid) RETURNS void
	AS 'MODULE_PATHNAME', 'mycelium_sqlite_fdw_validator'
	LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER mycelium_sqlite
	HANDLER mycelium.sqlite_fdw_handler
	VALIDATOR mycelium.sqlite_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER mycelium_sqlite IS 'SQLite databases as foreign tables';

-- Run SQL on a server's SQLite database inside the current transaction
-- (set-up and tests); creates the file if it does not exist.
CREATE FUNCTION mycelium.sqlite_execute(server name, sql text) RETURNS void
	AS 'MODULE_PATHNAME', 'mycelium_sqlite_execute'
	LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION mycelium.sqlite_execute(name, text) FROM PUBLIC;
COMMENT ON FUNCTION mycelium.sqlite_execute(name, text) IS 'run SQL on the SQLite database of a mycelium_sqlite server';

-- SQLite databases open in this backend.
CREATE FUNCTION mycelium.sqlite_connections(
	OUT server_name text, OUT database text, OUT readonly boolean,
	OUT in_transaction boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'mycelium_sqlite_connections'
	LANGUAGE C STRICT;
COMMENT ON FUNCTION mycelium.sqlite_connections() IS 'SQLite databases open in this backend';
