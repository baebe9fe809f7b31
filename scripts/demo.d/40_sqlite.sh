# shellcheck shell=bash
# Demo step: a SQLite file as foreign tables (docs/sqlite.md).  Sourced by
# the demo, which provides say, demo_sql and $DEMO_DIR (writable by the
# postgres user).  The server creates the file itself, so it owns it.

sqlite_db="$DEMO_DIR/shop.db"

say "SQLite foreign data wrapper: a SQLite file becomes foreign tables"
demo_sql 1 "DROP SCHEMA IF EXISTS shop CASCADE"
demo_sql 1 "DROP SERVER IF EXISTS shop CASCADE"
demo_sql 1 "CREATE SERVER shop FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '$sqlite_db', busy_timeout '2000')"
demo_sql 1 "SELECT mycelium.sqlite_execute('shop', \$\$
  DROP TABLE IF EXISTS product;
  CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                        price NUMERIC, stock INTEGER, added DATE);
  INSERT INTO product VALUES
    (1, 'tea', '3.50', 120, '2024-01-02'),
    (2, 'coffee', '4.25', 80, 1700000000),
    (3, 'cocoa', '2.10', NULL, NULL),
    (4, 'maté', '5.00', 15, '2024-03-01T09:30:00');
\$\$)"

say "IMPORT FOREIGN SCHEMA maps SQLite declared types to PostgreSQL types"
demo_sql 1 "CREATE SCHEMA shop"
demo_sql 1 "IMPORT FOREIGN SCHEMA main FROM SERVER shop INTO shop"
demo_sql 1 "SELECT column_name, data_type, is_nullable FROM information_schema.columns
  WHERE table_schema = 'shop' AND table_name = 'product' ORDER BY ordinal_position"
demo_sql 1 "SELECT * FROM shop.product ORDER BY id"

say "WHERE, ORDER BY, LIMIT and aggregates run in SQLite when SQLite gives PostgreSQL's answer"
demo_sql 1 "EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id, name FROM shop.product WHERE stock > 20 ORDER BY id DESC LIMIT 2"
demo_sql 1 "SELECT id, name FROM shop.product WHERE stock > 20 ORDER BY id DESC LIMIT 2"
demo_sql 1 "EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*), min(stock), max(id) FROM shop.product"
demo_sql 1 "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM shop.product WHERE name LIKE 'c%' OR name ILIKE 'T%'"

say "Writes follow the PostgreSQL transaction: ROLLBACK undoes them in the file"
demo_sql 1 "UPDATE shop.product SET price = price * 1.10 WHERE id = 2 RETURNING id, name, price"
demo_sql 1 "BEGIN; DELETE FROM shop.product; ROLLBACK"
demo_sql 1 "SELECT count(*) FROM shop.product"

say "A value that does not fit its column is an error that says where it came from"
demo_sql 1 "SELECT mycelium.sqlite_execute('shop', \$\$INSERT INTO product VALUES (5, 'odd', 'cheap', 1, NULL)\$\$)"
demo_sql 1 "SELECT * FROM shop.product WHERE id = 5" || true
demo_sql 1 "DELETE FROM shop.product WHERE id = 5" || true
