# DDL propagation and routed COPY across a 3-node TLS mesh: each DDL form,
# run from any node, lands on the table on every node and on every shard
# (with the shard suffix on index and index-backed constraint names);
# refused forms, a failure on one node and a rolled-back transaction change
# nothing anywhere; COPY FROM routes each row to the shard shard_for names,
# on whichever node holds it, and a bad row or a ROLLBACK leaves nothing;
# a reference table gets every row and every DDL on every node; DROP TABLE
# removes shards, shells and metadata everywhere.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;

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

# The definition of a relation (columns, constraints, indexes), with the
# shard suffix taken off names, so a shard's equals its table's.
my $helpers = q{
CREATE FUNCTION reldef(r regclass, suffix text) RETURNS text LANGUAGE sql AS $$
  SELECT (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                            || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                            || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                            ', ' ORDER BY a.attnum)
            FROM pg_attribute a
            LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
           WHERE a.attrelid = r AND a.attnum > 0 AND NOT a.attisdropped)
         || ' | ' || coalesce((SELECT string_agg(replace(c.conname, suffix, '') || ': '
                                                 || pg_get_constraintdef(c.oid), ', '
                                                 ORDER BY replace(c.conname, suffix, ''))
                                 FROM pg_constraint c WHERE c.conrelid = r), '')
         || ' | ' || coalesce((SELECT string_agg(replace(i.relname, suffix, ''), ', '
                                                 ORDER BY replace(i.relname, suffix, ''))
                                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                                WHERE x.indrelid = r), '')
         || ' | ' || coalesce(pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = r)), '')
         || ' | ' || coalesce((SELECT relacl::text FROM pg_class WHERE oid = r), '')
$$;
-- how many distinct definitions the table and its shards on this node have,
-- and the definition
CREATE FUNCTION localdefs(t text) RETURNS text LANGUAGE sql AS $$
  SELECT count(DISTINCT d) || ' ' || min(d) FROM (
    SELECT reldef(t::regclass, '') AS d
    UNION ALL
    SELECT reldef(to_regclass(s.shard_name), '_' || s.shard_id)
      FROM mycelium.shards s
     WHERE s.table_name = t::regclass
       AND s.node_name = (SELECT node_name FROM mycelium.nodes WHERE is_local)) defs
$$;
-- per local shard: "shard_id:rows:misplaced", misplaced by shard_for
CREATE FUNCTION localrows(t text, col text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  s record;
  n bigint;
  m bigint;
  result text := '';
BEGIN
  FOR s IN SELECT shard_id, shard_name FROM mycelium.shards
            WHERE table_name = t::regclass
              AND node_name = (SELECT node_name FROM mycelium.nodes WHERE is_local)
            ORDER BY shard_id LOOP
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE mycelium.shard_for(%L::regclass, %I) IS DISTINCT FROM %s) FROM %I',
                   t, col, s.shard_id, s.shard_name) INTO n, m;
    result := result || s.shard_id || ':' || n || ':' || m || ' ';
  END LOOP;
  RETURN rtrim(result);
END
$$;
-- sum over the local shards of a table of a query on one shard (%I)
CREATE FUNCTION localsum(t text, q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  s record;
  n bigint;
  total bigint := 0;
BEGIN
  FOR s IN SELECT shard_name FROM mycelium.shards
            WHERE table_name = t::regclass
              AND node_name = (SELECT node_name FROM mycelium.nodes WHERE is_local) LOOP
    EXECUTE format(q, s.shard_name) INTO n;
    total := total + coalesce(n, 0);
  END LOOP;
  RETURN total;
END
$$;
CREATE ROLE ddl_reader;
CREATE ROLE ddl_owner;
};
$_->safe_psql('postgres', $helpers) for $mesh->nodes;

# same_everywhere($what, $table): the table and its shards agree on every
# node; returns the definition
sub same_everywhere
{
	my ($what, $table) = @_;
	my $r = $mesh->query_all("SELECT localdefs('$table')");
	my %defs = map { $_ => 1 } values %$r;
	my @bad = grep { $r->{$_} !~ /^1 / } sort keys %$r;
	ok(!@bad && keys %defs == 1, "$what: $table and its shards agree on every node")
	  or diag(explain $r);
	my ($def) = values %$r;
	$def =~ s/^\d+ //;
	return $def;
}

$n1->safe_psql('postgres', q{
	CREATE TABLE orders (id int PRIMARY KEY, customer text, amount int);
	SELECT mycelium.create_distributed_table('orders', 'id', shard_count => 6);
});
is(on_all("SELECT count(*) FROM mycelium.shards WHERE node_name = (SELECT node_name FROM mycelium.nodes WHERE is_local)"),
	'n1=2 n2=2 n3=2', 'two shards on each node');
my $def = same_everywhere('after distributing', 'orders');

# --- each DDL form, from any node
$n2->safe_psql('postgres', q{ALTER TABLE orders ADD COLUMN note text DEFAULT 'n/a' NOT NULL, ALTER COLUMN amount SET DEFAULT 0});
$def = same_everywhere('ADD COLUMN, SET DEFAULT', 'orders');
like($def, qr/note text not null default 'n\/a'::text/, 'the new column is there');
$n3->safe_psql('postgres', q{ALTER TABLE orders ALTER COLUMN amount TYPE bigint, ALTER COLUMN customer SET NOT NULL});
$def = same_everywhere('ALTER COLUMN TYPE, SET NOT NULL', 'orders');
like($def, qr/amount bigint default 0, note/, 'the type changed');
$n1->safe_psql('postgres', q{ALTER TABLE orders ADD CHECK (amount >= 0), ADD UNIQUE (id, customer)});
$def = same_everywhere('ADD CONSTRAINT (unnamed)', 'orders');
like($def, qr/orders_amount_check: CHECK \(\(amount >= 0\)\), orders_id_customer_key: UNIQUE \(id, customer\)/,
	'constraints named as PostgreSQL names them');
$n2->safe_psql('postgres', q{CREATE INDEX ON orders (customer); CREATE INDEX amount_idx ON orders (amount) WHERE amount > 100});
$def = same_everywhere('CREATE INDEX', 'orders');
like($def, qr/amount_idx, orders_customer_idx, orders_id_customer_key, orders_pkey/, 'indexes everywhere');
is($n3->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname ~ '^amount_idx_[0-9]+$'}),
	'2', 'shard indexes are named <index>_<shard id>');
$n3->safe_psql('postgres', q{DROP INDEX amount_idx; ALTER TABLE orders DROP CONSTRAINT orders_id_customer_key, DROP COLUMN note});
$def = same_everywhere('DROP INDEX, DROP CONSTRAINT, DROP COLUMN', 'orders');
unlike($def, qr/amount_idx|orders_id_customer_key|note/, 'dropped everywhere');
$n1->safe_psql('postgres', q{ALTER TABLE orders RENAME COLUMN customer TO client});
$def = same_everywhere('RENAME COLUMN', 'orders');
like($def, qr/client text not null/, 'renamed everywhere');
$n2->safe_psql('postgres', q{GRANT SELECT, UPDATE (amount) ON orders TO ddl_reader; ALTER TABLE orders OWNER TO ddl_owner});
$def = same_everywhere('GRANT, OWNER TO', 'orders');
like($def, qr/\| ddl_owner \| \{.*ddl_reader=r\/ddl_owner/, 'owner and privileges everywhere');
is(on_all(q{SELECT count(*) FROM mycelium.shards WHERE table_name = 'orders'::regclass
	AND has_column_privilege('ddl_reader', to_regclass(shard_name), 'amount', 'UPDATE')}),
	'n1=2 n2=2 n3=2', 'column privilege on the shards of each node');
$n3->safe_psql('postgres', q{REVOKE ALL ON orders FROM ddl_reader; ALTER TABLE orders OWNER TO CURRENT_USER});
$def = same_everywhere('REVOKE', 'orders');

# --- refused forms and failures change nothing anywhere
for my $case (
	[ 'ALTER TABLE orders DROP COLUMN id', qr/cannot drop the distribution column/ ],
	[ 'ALTER TABLE orders ALTER COLUMN id TYPE bigint', qr/cannot change the type of the distribution column/ ],
	[ 'ALTER TABLE orders ADD COLUMN x int, ADD UNIQUE (client)', qr/without its distribution column "id"/ ],
	[ 'CREATE UNIQUE INDEX ON orders (client)', qr/without its distribution column "id"/ ],
	[ 'ALTER TABLE orders ADD FOREIGN KEY (amount) REFERENCES orders (id)', qr/cannot create a foreign key referencing distributed table "orders"/ ],
	[ 'ALTER TABLE orders RENAME TO orders2', qr/cannot rename distributed table "orders"/ ],
	[ 'ALTER TABLE orders SET SCHEMA mycelium', qr/cannot change the schema of distributed table/ ],
	[ 'CREATE INDEX CONCURRENTLY ON orders (amount)', qr/cannot create an index concurrently/ ])
{
	my ($sql, $re) = @$case;
	my $err = fails($n2, $sql);
	like($err, $re, "refused: $sql");
	like($err, qr/HINT|DETAIL/, "with a hint or detail: $sql") if $sql !~ /FOREIGN|SCHEMA|RENAME/;
}
is(same_everywhere('after refusals', 'orders'), $def, 'refused statements changed nothing');

$n1->safe_psql('postgres', q{BEGIN; ALTER TABLE orders ADD COLUMN gone int; CREATE INDEX gone_idx ON orders (gone); ROLLBACK;});
is(same_everywhere('after ROLLBACK', 'orders'), $def, 'a rolled-back ALTER changed nothing');

# n3's table already has the column: the ALTER fails there and nowhere else applies
$n3->safe_psql('postgres', q{SET mycelium.enable_ddl_propagation = off; ALTER TABLE orders ADD COLUMN clash int});
like(fails($n1, 'ALTER TABLE orders ADD COLUMN clash int'), qr/column "clash" of relation "orders" already exists.*node "n3"/s,
	'a failure on one node is reported with its node');
$n3->safe_psql('postgres', q{SET mycelium.enable_ddl_propagation = off; ALTER TABLE orders DROP COLUMN clash});
is(same_everywhere('after a failure on one node', 'orders'), $def, 'the failed ALTER changed nothing anywhere');
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

# --- COPY FROM: 10000 rows, from a node, each to its shard
my $rows = join('', map { "$_\tc" . ($_ % 97) . "\t" . ($_ % 1000) . "\n" } 1 .. 10000);
my ($rc, $out, $err) = $n2->psql('postgres', "COPY orders (id, client, amount) FROM STDIN;\n$rows\\.\n");
is($rc, 0, 'COPY of 10000 rows succeeded') or diag($err);
my %expected = map { split /\|/ } split /\n/, $n1->safe_psql('postgres',
	q{SELECT mycelium.shard_for('orders', g), count(*) FROM generate_series(1, 10000) g GROUP BY 1});
my %actual;
my $misplaced = 0;
for my $node ($mesh->nodes)
{
	for my $s (split / /, $node->safe_psql('postgres', q{SELECT localrows('orders', 'id')}))
	{
		my ($id, $n, $m) = split /:/, $s;
		$actual{$id} = $n;
		$misplaced += $m;
	}
}
is_deeply(\%actual, \%expected, 'each shard holds the rows that hash to it');
is($misplaced, 0, 'no row is in a shard shard_for does not name');
like($out . $err, qr/^$/, 'nothing printed');

# COPY TO reads every shard, from any node
my @ids = sort { $a <=> $b } split /\n/, $n3->safe_psql('postgres', 'COPY orders (id) TO STDOUT');
is(scalar(@ids) . " $ids[0] $ids[-1]", '10000 1 10000', 'COPY TO returns every row');

# COPY reports its row count
($rc, $out, $err) = $n3->psql('postgres', "COPY orders (id, client) FROM STDIN;\n20001\tx\n20002\ty\n\\.\n",
	extra_params => [ '-v', 'QUIET=0' ]);
like($out, qr/COPY 2/, 'COPY reports its row count');

my $total = q{SELECT sum(split_part(s, ':', 2)::int) FROM unnest(string_to_array(localrows('orders', 'id'), ' ')) s};
my $count_all = sub {
	my $sum = 0;
	$sum += ($_->safe_psql('postgres', $total) || 0) for $mesh->nodes;
	return $sum;
};
is($count_all->(), 10002, '10002 rows in the shards');

like(fails($n1, "COPY orders (id, client) FROM STDIN;\n30001\tok\n\\N\tno key\n\\.\n"),
	qr/null value in distribution column "id" of relation "orders"/, 'NULL distribution value: 23502');
like(fails($n1, "COPY orders (id, client) FROM STDIN;\n30001\tok\n5\tduplicate\n\\.\n"),
	qr/duplicate key value violates unique constraint "orders_pkey_\d+"/, 'a remote or local constraint violation aborts the COPY');
$n1->safe_psql('postgres', "BEGIN;\nCOPY orders (id, client) FROM STDIN;\n40001\ta\n40002\tb\n40003\tc\n\\.\nROLLBACK;\n");
is($count_all->(), 10002, 'failed and rolled-back COPYs left nothing anywhere');
($rc, $out, $err) = $n2->psql('postgres', "BEGIN;\nSAVEPOINT s;\nCOPY orders (id, client) FROM STDIN;\n50001\tx\n\\N\ty\n\\.\n"
	  . "ROLLBACK TO SAVEPOINT s;\nCOPY orders (id, client) FROM STDIN;\n50002\tkept\n50003\tkept\n\\.\nCOMMIT;\n",
	on_error_stop => 0);
like($err, qr/null value in distribution column/, 'the first COPY failed');
is($count_all->(), 10004, 'a COPY rolled back to a savepoint leaves nothing, the next one commits')
  or diag($err);
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

# DDL and COPY in one transaction: the COPY sees the new column on every shard
$n3->safe_psql('postgres', "BEGIN;\nALTER TABLE orders ADD COLUMN z int DEFAULT 7;\n"
	  . "COPY orders (id, client, z) FROM STDIN;\n60001\tz\t1\n60002\tz\t2\n\\.\nCOMMIT;\n");
is($count_all->(), 10006, 'COPY after ALTER TABLE in one transaction');
like(same_everywhere('ALTER then COPY', 'orders'), qr/z integer default 7/, 'the column is everywhere');
my $zsum = 0;
$zsum += $_->safe_psql('postgres',
	q{SELECT localsum('orders', 'SELECT sum(z) FROM %I WHERE id IN (1, 60001, 60002)')}) for $mesh->nodes;
is($zsum, 10, 'the copied rows have their values, older rows the default');

# range table: a value in a gap is 23514, the COPY leaves nothing
$n1->safe_psql('postgres', q{
	CREATE TABLE events (day date NOT NULL, what text);
	SELECT mycelium.create_distributed_table('events', 'day', 'range');
	SELECT mycelium.add_range_shard('events', '2024-01-01', '2024-02-01', 'n2');
	SELECT mycelium.add_range_shard('events', '2024-03-01', '2024-04-01', 'n3');
});
my $gap = fails($n1, "COPY events FROM STDIN;\n2024-01-05\tok\n2024-02-10\tgap\n\\.\n");
like($gap, qr/no shard of relation "events" covers the row/, 'range gap refused');
like($gap, qr/DETAIL:  No range shard covers value 2024-02-10 of column "day"/, 'the detail names the value');
$n1->safe_psql('postgres', "COPY events FROM STDIN;\n2024-01-05\tjan\n2024-03-05\tmar\n2024-03-06\tmar\n\\.\n");
is(on_all(q{SELECT localrows('events', 'day')}) =~ s/\d{6,}://gr, 'n1= n2=1:0 n3=2:0',
	'range rows on the nodes holding their shards');

# --- reference table: COPY and DDL reach every node's copy
$n2->safe_psql('postgres', q{
	CREATE TABLE countries (code text PRIMARY KEY, name text);
	SELECT mycelium.create_reference_table('countries');
});
$n3->safe_psql('postgres', "COPY countries FROM STDIN (FORMAT csv);\nfr,France\nde,Germany\n\\.\n");
is(on_all('SELECT string_agg(code, \',\' ORDER BY code) FROM countries'), 'n1=de,fr n2=de,fr n3=de,fr',
	'COPY into a reference table reaches every copy');
$n1->safe_psql('postgres', q{ALTER TABLE countries ADD COLUMN population bigint DEFAULT 0; CREATE INDEX ON countries (name)});
is(on_all(q{SELECT reldef('countries', '')}) =~ s/=[^=]*population bigint default 0[^=]*countries_name_idx[^=]*?(?= n\d=|$)/=ok/gr,
	'n1=ok n2=ok n3=ok', 'reference table DDL on every node');
$n2->safe_psql('postgres', 'TRUNCATE countries');
is(on_all('SELECT count(*) FROM countries'), 'n1=0 n2=0 n3=0', 'TRUNCATE of a reference table everywhere');

# --- TRUNCATE and DROP of a distributed table, from another node
$n3->safe_psql('postgres', 'TRUNCATE orders');
is($count_all->(), 0, 'TRUNCATE emptied every shard');
$n2->safe_psql('postgres', 'DROP TABLE orders, events, countries');
is(on_all(q{SELECT count(*) FROM mycelium.dist_table}), 'n1=0 n2=0 n3=0', 'metadata gone everywhere');
is(on_all(q{SELECT count(*) FROM mycelium.shard}), 'n1=0 n2=0 n3=0', 'shard metadata gone everywhere');
is(on_all(q{SELECT count(*) FROM pg_class WHERE relname ~ '^(orders|events|countries)(_[0-9]+)?$' AND relkind = 'r'}),
	'n1=0 n2=0 n3=0', 'tables and shards dropped everywhere');
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

# --- a table owner without superuser rights: its DDL, COPY and DROP run as
# that role on every node, and DROP cleans the metadata it cannot write
$_->safe_psql('postgres', 'CREATE ROLE ddl_user LOGIN') for $mesh->nodes;
$n1->safe_psql('postgres', q{
	CREATE TABLE owned (id int PRIMARY KEY, v text);
	SELECT mycelium.create_distributed_table('owned', 'id', shard_count => 3);
	ALTER TABLE owned OWNER TO ddl_user;
});
my @as_user = (extra_params => [ '-U', 'ddl_user' ]);
like(fails($n3, "SET ROLE ddl_reader; ALTER TABLE owned ADD COLUMN x int"), qr/must be owner of table owned/,
	'another role is refused by the local check first');
# txn/twophase.c writes mycelium.commit_record with the user's rights, so
# until it does that as the extension's owner, the role needs them
$_->safe_psql('postgres', 'GRANT INSERT ON mycelium.commit_record TO ddl_user; GRANT CREATE ON SCHEMA public TO ddl_user') for $mesh->nodes;
{
	my ($rc, $out, $err) = $n2->psql('postgres',
		"ALTER TABLE owned ADD COLUMN w int; CREATE INDEX ON owned (w);\nCOPY owned (id, v, w) FROM STDIN;\n1\ta\t1\n2\tb\t2\n3\tc\t3\n\\.\n",
		@as_user);
	is($rc, 0, 'the owner alters and copies into its table') or diag($err);
	like(same_everywhere('DDL by the owner', 'owned'), qr/w integer \| .* \| owned_pkey, owned_w_idx \| ddl_user/,
		'the owner altered the table and its shards everywhere');
	my ($nrows, $bad) = (0, 0);
	for my $node ($mesh->nodes)
	{
		for my $sh (split / /, $node->safe_psql('postgres', q{SELECT localrows('owned', 'id')}))
		{
			my (undef, $n, $m) = split /:/, $sh;
			$nrows += $n;
			$bad += $m;
		}
	}
	is("$nrows $bad", '3 0', 'the owner copied its rows into the right shards');
	($rc, $out, $err) = $n3->psql('postgres', 'DROP TABLE owned', @as_user);
	is($rc, 0, 'the owner drops its table') or diag($err);
}
$n1->safe_psql('postgres', 'DROP TABLE IF EXISTS owned');
is(on_all(q{SELECT count(*) FROM mycelium.dist_table}) . ' ' .
	on_all(q{SELECT count(*) FROM pg_class WHERE relname ~ '^owned(_[0-9]+)?$' AND relkind = 'r'}),
	'n1=0 n2=0 n3=0 n1=0 n2=0 n3=0', 'the table, its shards and its metadata are gone everywhere');
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

done_testing();
