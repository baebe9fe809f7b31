# Mesh-wide ids and table checksums across nodes: many backends on every
# node calling mycelium.next_id() concurrently never produce the same id,
# on one node or across the mesh; ids keep increasing across a restart; a
# standby refuses to make ids; table_checksum agrees between nodes holding
# the same rows in different orders and under different settings.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $clients = 8;
my $per_client = 2000;
my $mesh = MyceliumMesh->new(nodes => 3, tls => 0);
my @nodes = $mesh->nodes;

# every node: $clients backends insert next_id() into a UNIQUE column
for my $n (@nodes)
{
	$n->safe_psql('postgres',
		'CREATE TABLE ids (id bigint PRIMARY KEY, backend int DEFAULT pg_backend_pid())');
}
for my $n (@nodes)
{
	$n->pgbench(
		"--no-vacuum --client=$clients --jobs=$clients --transactions=$per_client",
		0, [qr/processed: \d+/], [qr/^$/],
		$n->name . ': concurrent next_id() inserts never collide',
		{ '070_ids_insert' => 'INSERT INTO ids (id) VALUES (mycelium.next_id());' });
}

my $want = $clients * $per_client;
for my $n (@nodes)
{
	my $node_id = $n->safe_psql('postgres',
		'SELECT node_id FROM mycelium.nodes WHERE is_local');
	is($n->safe_psql('postgres',
			"SELECT count(*), count(DISTINCT backend) FROM ids"),
		"$want|$clients", $n->name . " holds $want ids from $clients backends");
	is($n->safe_psql('postgres',
			'SELECT count(*) FROM ids, mycelium.id_parts(id) p '
			  . "WHERE p.node_id <> $node_id "
			  . "OR p.created_at NOT BETWEEN now() - interval '10 minutes' AND now()"),
		'0', $n->name . " ids carry node_id $node_id and a recent time");
}

# across the mesh: gather every node's ids on n1
my $n1 = $nodes[0];
$n1->safe_psql('postgres', 'CREATE TABLE all_ids (id bigint, node text)');
for my $n (@nodes)
{
	my $file = $PostgreSQL::Test::Utils::tmp_check . '/ids_' . $n->name . '.copy';
	$n->safe_psql('postgres', "COPY (SELECT id, '" . $n->name . "' FROM ids) TO '$file'");
	$n1->safe_psql('postgres', "COPY all_ids FROM '$file'");
}
is($n1->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM all_ids'),
	(3 * $want) . '|' . (3 * $want), 'no id is shared by two nodes');

# bursts from several backends at once, asking for ids faster than 4096
# per millisecond: at the end of each burst the last id is not stamped
# with a millisecond the clock has not reached (what keeps ids unique
# across a restart)
$n1->safe_psql('postgres', 'CREATE TABLE ahead (lead_ms bigint)');
$n1->pgbench(
	'--no-vacuum --client=4 --jobs=4 --transactions=2',
	0, [qr/processed: 8\//], [qr/^$/],
	'bursts of next_id() from 4 backends',
	{ '070_ids_burst' => q{INSERT INTO ahead
SELECT (max(i) >> 22) - (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1735689600000)
  FROM (SELECT mycelium.next_id() AS i FROM generate_series(1, 1000000) g) s;} });
is($n1->safe_psql('postgres', 'SELECT count(*), max(lead_ms) <= 0 FROM ahead'),
	'8|t', 'no id is stamped ahead of the clock');

# a restart starts the shared stamp from the clock: still increasing
my $before = $n1->safe_psql('postgres', 'SELECT max(id) FROM ids');
$n1->restart;
ok($n1->safe_psql('postgres', "SELECT mycelium.next_id() > $before") eq 't',
	'ids keep increasing across a restart');

# a standby shares its primary's node_id: it must not make ids
$n1->backup('ids_backup');
my $standby = PostgreSQL::Test::Cluster->new('n1_standby');
$standby->init_from_backup($n1, 'ids_backup', has_streaming => 1);
$standby->start;
my ($ret, $out, $err) = $standby->psql('postgres',
	'SELECT mycelium.next_id()', on_error_stop => 1);
isnt($ret, 0, 'a standby refuses next_id()');
like($err, qr/cannot execute mycelium\.next_id\(\) during recovery/,
	'with the usual recovery error');
$standby->stop;

# table_checksum: the same rows in different orders on two nodes, one of
# them with other text-form settings, agree; a single change does not
my ($n2, $n3) = @nodes[ 1, 2 ];
$n2->safe_psql('postgres',
	"ALTER SYSTEM SET TimeZone = 'Asia/Tokyo'; ALTER SYSTEM SET DateStyle = 'SQL, DMY'; "
	  . "ALTER SYSTEM SET extra_float_digits = 0; SELECT pg_reload_conf()");
my $ddl = 'CREATE TABLE ck (id int PRIMARY KEY, t text, f float8, d timestamptz, a int[])';
my $rows = "SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'v' || g END, g / 3.0, "
  . "'2025-03-01 00:00+00'::timestamptz + g * interval '1 minute', ARRAY[g, -g] "
  . "FROM generate_series(1, 20000) g";
$n1->safe_psql('postgres', "$ddl; INSERT INTO ck $rows ORDER BY g");
$n2->safe_psql('postgres', "$ddl; INSERT INTO ck $rows ORDER BY g DESC");
$n3->safe_psql('postgres', "$ddl; INSERT INTO ck $rows ORDER BY random()");
my $sums = $mesh->query_all("SELECT mycelium.table_checksum('ck')");
is($sums->{n2}, $sums->{n1}, 'n1 and n2 agree (other order, other settings)');
is($sums->{n3}, $sums->{n1}, 'n1 and n3 agree (random order)');
like($sums->{n1}, qr/^20000:[0-9a-f]{32}$/, 'checksum format');
$n3->safe_psql('postgres', 'UPDATE ck SET f = f + 1e-9 WHERE id = 12345');
isnt($n3->safe_psql('postgres', "SELECT mycelium.table_checksum('ck')"),
	$sums->{n1}, 'a tiny change on n3 is seen');

done_testing();
