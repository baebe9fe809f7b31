# The SQL API of peer replication across a 3-node TLS mesh:
# replicate_table refuses to run before the replication slots exist;
# creates the table (schema, columns, typmods, NOT NULL, defaults but serial,
# generated columns, primary key) with its rows on members that lack it,
# keeps the rows of a member that has it, and lists it on every node, in
# one distributed transaction; a conflicting definition or a member that is
# down is refused with nothing changed anywhere; stop_replicating_table
# removes it everywhere and keeps the rows; pause/resume flip the state
# shown in stat_replication; wait_for_sync waits for the peers' slots.
#
# The slots "mycelium_node_<id>" are made by hand when the apply workers
# have not made them (they need output_plugin_libraries to list mycelium).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(
	nodes => 3,
	conf => "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n");
my ($n1, $n2, $n3) = $mesh->nodes;
my %id = map { $_->name => $_->safe_psql('postgres',
		'SELECT node_id FROM mycelium.nodes WHERE is_local') } $mesh->nodes;

# fails($node, $sql): the error text of a statement that must fail
sub fails
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return $rc == 0 ? "unexpected success: $out" : $err;
}

# on_all($sql): "name=result" of $sql on every node, joined by spaces
sub on_all
{
	my ($sql) = @_;
	my $r = $mesh->query_all($sql);
	return join(' ', map { "$_=" . $r->{$_} } sort keys %$r);
}

$n1->safe_psql('postgres', 'CREATE TABLE early (id int PRIMARY KEY)');

# --- the slots: replicate_table makes the missing ones itself, except in a
# transaction that has already written (making a slot would wait for it)
like(fails($n1, "BEGIN; INSERT INTO early VALUES (1); SELECT mycelium.replicate_table('early'); COMMIT"),
	qr/replication between nodes "n\d" and "n\d" is not set up yet/,
	'after a write in its transaction, replicate_table cannot make slots and says what is missing');
is(on_all('SELECT count(*) FROM mycelium.replicated_table'),
	'n1=0 n2=0 n3=0', 'nothing was listed');
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('early')");
is(on_all('SELECT mycelium.replication_ready()'), 'n1=t n2=t n3=t',
	'replicate_table made the slot of every ordered pair');
is(on_all("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'mycelium_node_%'"),
	'n1=2 n2=2 n3=2', 'two slots on each node, one per consumer');

# --- replicate_table: created with its rows on n2, kept on n3
my $table_sql = q{CREATE TABLE accounts (
	id bigint PRIMARY KEY,
	owner varchar(20) NOT NULL DEFAULT 'nobody',
	balance numeric(12,2) DEFAULT 0,
	created timestamptz NOT NULL DEFAULT now(),
	tags text[],
	doubled numeric GENERATED ALWAYS AS (balance * 2) STORED,
	counter serial,
	"Odd Col" jsonb)};
$n1->safe_psql('postgres', $table_sql);
$n1->safe_psql('postgres', q{INSERT INTO accounts (id, owner, balance, tags, "Odd Col")
	SELECT g, 'owner ' || g, g / 7.0, ARRAY['a', g::text],
	       CASE WHEN g % 3 = 0 THEN NULL ELSE jsonb_build_object('g', g) END
	  FROM generate_series(1, 25000) g});
$n3->safe_psql('postgres', $table_sql);
$n3->safe_psql('postgres', q{INSERT INTO accounts (id, owner) VALUES (-1, 'only n3')});

$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('accounts')");
is($n2->safe_psql('postgres', "SELECT mycelium.table_checksum('accounts')"),
	$n1->safe_psql('postgres', "SELECT mycelium.table_checksum('accounts')"),
	'n2 holds the rows of n1 (25000 rows, three batches)');
is($n3->safe_psql('postgres', 'SELECT string_agg(owner, \',\') FROM accounts'),
	'only n3', 'n3 had the table: its rows are kept, nothing copied');
is(on_all('SELECT relid::text || \'/\' || conflict_resolution FROM mycelium.replicated_table WHERE relid::text = \'accounts\''),
	'n1=accounts/last_writer_wins n2=accounts/last_writer_wins n3=accounts/last_writer_wins',
	'the catalog row is on every node');
my $columns_sql = q{SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
	|| CASE WHEN attnotnull THEN ' not null' ELSE '' END
	|| coalesce(' default ' || pg_get_expr(adbin, adrelid), ''), ', ' ORDER BY attnum)
	FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
	WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped};
is($n2->safe_psql('postgres', $columns_sql),
	q{id bigint not null, owner character varying(20) not null default 'nobody'::character varying, }
	  . q{balance numeric(12,2) default 0, created timestamp with time zone not null default now(), tags text[], }
	  . q{doubled numeric default (balance * (2)::numeric), counter integer not null, Odd Col jsonb},
	'n2 got the columns, typmods, NOT NULL, defaults except the sequence one, the generated column');
is($n2->safe_psql('postgres',
		"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'accounts'::regclass"),
	'PRIMARY KEY (id)', 'n2 got the primary key');
like(fails($n2, "SELECT mycelium.replicate_table('accounts')"),
	qr/table "public.accounts" is already replicated/, 'replicating it twice is refused');
ok($mesh->no_prepared_xacts, 'no prepared transaction is left behind');

# a table in a schema only n1 has
$n1->safe_psql('postgres', q{CREATE SCHEMA sales;
	CREATE TABLE sales."Orders" (region text, no int, amount numeric, PRIMARY KEY (region, no));
	INSERT INTO sales."Orders" VALUES ('north', 1, 10), ('south', 1, 20)});
$n1->safe_psql('postgres', q{SELECT mycelium.replicate_table('sales."Orders"', 'last_writer_wins')});
my $orders = $n1->safe_psql('postgres', q{SELECT mycelium.table_checksum('sales."Orders"')});
is(on_all(q{SELECT mycelium.table_checksum('sales."Orders"')}),
	"n1=$orders n2=$orders n3=$orders",
	'a table in a new schema is created with its rows everywhere');

# values that must survive the trip through JSON, and a collation
$n1->safe_psql('postgres', q{CREATE TABLE kinds (id int PRIMARY KEY, b bytea, f float8,
	i interval, t text COLLATE "C", ts timestamptz, n numeric, a int[], c "char",
	bits bit varying(8), d date, u uuid);
	INSERT INTO kinds VALUES
	(1, '\x00ff', 'NaN', '1 day 2 hours', E'quote '' "dq" \\ back\nnew line é ✓',
	 '2020-01-01 00:00:00.123456+05', 1.000000000000000000001, '{{1,2},{3,4}}', 'x',
	 B'101', '2020-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
	(2, NULL, '-Infinity', NULL, NULL, 'infinity', 'NaN', NULL, NULL, NULL, '-infinity', NULL),
	(3, '', 1.0000000000000002, '-1 mon', '', NULL, -0.0, '{}', NULL, B'', NULL, NULL)});
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('kinds')");
my $kinds = $n1->safe_psql('postgres', "SELECT mycelium.table_checksum('kinds')");
is(on_all("SELECT mycelium.table_checksum('kinds')"), "n1=$kinds n2=$kinds n3=$kinds",
	'bytea, NaN and infinities, intervals, odd text, arrays, bit strings copy exactly');
is($n3->safe_psql('postgres', q{SELECT collname FROM pg_attribute a JOIN pg_collation c
	ON c.oid = a.attcollation WHERE attrelid = 'kinds'::regclass AND attname = 't'}),
	'C', 'a non-default collation is reproduced');

# --- a conflicting definition on one member: refused, nothing changes
$n1->safe_psql('postgres',
	'CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, \'x\')');
$n3->safe_psql('postgres', 'CREATE TABLE items (id int PRIMARY KEY, v integer)');
like(fails($n1, "SELECT mycelium.replicate_table('items')"),
	qr/table "public.items" has a different definition on node "n3".*Column "v" has type integer on node "n3" but text here/s,
	'a different column type on n3 is refused, naming the node and the column');
is(on_all(q{SELECT to_regclass('items') IS NOT NULL || '/' || count(r.*)
	FROM (SELECT 1) x LEFT JOIN mycelium.replicated_table r ON r.relid::text = 'items'}),
	'n1=true/0 n2=false/0 n3=true/0', 'nothing was created or listed anywhere');
$n1->safe_psql('postgres', 'CREATE TABLE keyed (a int, b int, PRIMARY KEY (a))');
$n2->safe_psql('postgres', 'CREATE TABLE keyed (a int, b int, PRIMARY KEY (a, b))');
like(fails($n1, "SELECT mycelium.replicate_table('keyed')"),
	qr/different definition on node "n2".*Column "b" is part of the primary key on node "n2" but is not here/s,
	'a different primary key is refused');
$n1->safe_psql('postgres', 'CREATE TABLE extra (a int PRIMARY KEY)');
$n3->safe_psql('postgres', 'CREATE TABLE extra (a int PRIMARY KEY, b int)');
like(fails($n1, "SELECT mycelium.replicate_table('extra')"),
	qr/Column "b" exists only on node "n3"/, 'an extra column is refused');
ok($mesh->no_prepared_xacts, 'no prepared transaction is left behind');

# --- rolled back by the caller: nothing anywhere
$n1->safe_psql('postgres', 'CREATE TABLE undone (id int PRIMARY KEY); INSERT INTO undone VALUES (1)');
$n1->safe_psql('postgres', "BEGIN; SELECT mycelium.replicate_table('undone'); ROLLBACK");
is(on_all(q{SELECT to_regclass('undone') IS NOT NULL || '/'
	|| (SELECT count(*) FROM mycelium.replicated_table WHERE relid::text = 'undone')}),
	'n1=true/0 n2=false/0 n3=false/0', 'a rolled-back replicate_table leaves nothing on any node');

# --- the same table replicated from two nodes at once: the mesh locks
# serialize them, the second sees the first's result and is refused
$_->safe_psql('postgres', 'CREATE TABLE raced (id int PRIMARY KEY)') for ($n1, $n2);
my $holder = $n1->background_psql('postgres');
$holder->query("BEGIN; SELECT mycelium.replicate_table('raced')");
my $racer = $n2->background_psql('postgres', on_error_stop => 0);
$racer->query_until(qr/racing/, "\\echo racing\nSELECT mycelium.replicate_table('raced');\n");
$n1->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND relation = 'mycelium.node'::regclass")
  or die 'the second replicate_table did not wait for the mesh lock';
$holder->query('COMMIT');
$racer->query('SELECT 1');
like($racer->{stderr}, qr/table "public.raced" is already replicated/,
	'the second replicate_table waits, then is refused');
is(on_all(q{SELECT count(*) FROM mycelium.replicated_table WHERE relid::text = 'raced'}),
	'n1=1 n2=1 n3=1', 'the table is listed once on every node');
$_->quit for ($holder, $racer);

# --- a member that is down: refused before anything is written
$n1->safe_psql('postgres', 'CREATE TABLE while_down (id int PRIMARY KEY)');
$n3->stop;
like(fails($n1, "SELECT mycelium.replicate_table('while_down')"),
	qr/n3/, 'replicate_table fails while n3 is down, naming it');
is($n2->safe_psql('postgres', "SELECT to_regclass('while_down') IS NULL"), 't',
	'nothing was created on n2');
$n3->start;

# --- stop_replicating_table: removed everywhere, tables and rows stay
like(fails($n3, "SELECT mycelium.stop_replicating_table('items')"),
	qr/table "public.items" is not replicated/, 'stopping an unreplicated table is refused');
$n2->safe_psql('postgres', "SELECT mycelium.stop_replicating_table('accounts')");
is(on_all(q{SELECT count(*) FILTER (WHERE relid::text = 'accounts') || '/'
	|| (SELECT count(*) FROM accounts) FROM mycelium.replicated_table}),
	'n1=0/25000 n2=0/25000 n3=0/1', 'the catalog row is gone everywhere, the rows stay');

# --- pause and resume flip the state in stat_replication
my $states = q{SELECT string_agg(peer || ':' || (state = 'paused'), ',' ORDER BY peer)
	FROM mycelium.stat_replication};
is($n1->safe_psql('postgres', $states), 'n2:false,n3:false', 'nothing paused at first');
$n1->safe_psql('postgres', "SELECT mycelium.pause_replication('n2')");
is($n1->safe_psql('postgres', $states), 'n2:true,n3:false', 'pause_replication(n2) pauses n2 only');
$n1->safe_psql('postgres', 'SELECT mycelium.pause_replication()');
is($n1->safe_psql('postgres', $states), 'n2:true,n3:true', 'pause_replication() pauses every peer');
$n1->safe_psql('postgres', "SELECT mycelium.resume_replication('n2')");
is($n1->safe_psql('postgres', $states), 'n2:false,n3:true', 'resume_replication(n2) resumes n2 only');
$n1->safe_psql('postgres', 'SELECT mycelium.resume_replication()');
is($n1->safe_psql('postgres', $states), 'n2:false,n3:false', 'resume_replication() resumes all');
like(fails($n1, "SELECT mycelium.pause_replication('n1')"), qr/cannot pause replication from the local node/,
	'the local node cannot be paused');
is($n2->safe_psql('postgres', $states), 'n1:false,n3:false', 'a pause is local to the node that made it');

# --- wait_for_sync: false while the peers consume nothing, true once they do
$n2->safe_psql('postgres', 'SELECT mycelium.pause_replication()');
$n3->safe_psql('postgres', 'SELECT mycelium.pause_replication()');
$n1->safe_psql('postgres', 'INSERT INTO kinds (id) VALUES (4)');	# a replicated table
is($n1->safe_psql('postgres', "SELECT mycelium.wait_for_sync('300ms')"), 'f',
	'wait_for_sync times out while the peers do not confirm');
$n2->safe_psql('postgres', 'SELECT mycelium.resume_replication()');
$n3->safe_psql('postgres', 'SELECT mycelium.resume_replication()');
# the apply workers of n2 and n3 stream again and confirm what they applied
is($n1->safe_psql('postgres', "SELECT mycelium.wait_for_sync('60s')"), 't',
	'wait_for_sync returns true once the peers applied everything');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM kinds WHERE id = 4'), '1',
	'the row written on n1 while n2 was paused reached n2');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM kinds WHERE id = 4'), '1',
	'and n3');

# --- a node that joins later gets every replicated table, with its rows,
# and lists them; a node that leaves stops listing them
$n1->safe_psql('postgres', 'CREATE TABLE joiners (id int PRIMARY KEY, v text); '
	  . "INSERT INTO joiners SELECT g, 'v' || g FROM generate_series(1, 500) g");
$n1->safe_psql('postgres', "SELECT mycelium.replicate_table('joiners')");
my $n4 = $mesh->new_node('n4');
$n1->safe_psql('postgres', "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
is($n4->safe_psql('postgres', "SELECT mycelium.table_checksum('joiners')"),
	$n1->safe_psql('postgres', "SELECT mycelium.table_checksum('joiners')"),
	'a joining node gets a replicated table with its rows');
is($n4->safe_psql('postgres', 'SELECT string_agg(relid::text, \',\' ORDER BY relid::text) FROM mycelium.replicated_table'),
	$n1->safe_psql('postgres', 'SELECT string_agg(relid::text, \',\' ORDER BY relid::text) FROM mycelium.replicated_table'),
	'and lists the same replicated tables');
$n2->safe_psql('postgres', "SELECT mycelium.remove_node('n4')");
is($n4->safe_psql('postgres', 'SELECT count(*) FROM mycelium.replicated_table'), '0',
	'a removed node lists no replicated table any more');
ok($mesh->no_prepared_xacts($n4), 'no prepared transaction is left behind');

done_testing();
