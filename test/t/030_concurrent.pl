# Concurrent metadata changes serialize, on one node (isolation spec
# test/specs/mesh_add_node.spec) and across nodes: no divergence, no
# lasting deadlock.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3, join => 0);
my ($n1, $n2, $n3) = map { $mesh->node($_) } 1 .. 3;

# the isolation spec, run against n1 with the peers' ports in a table
$n1->safe_psql('postgres',
	"CREATE TABLE iso_peers (node_name text, port int); "
	  . "INSERT INTO iso_peers VALUES ('n2', " . $n2->port . "), ('n3', " . $n3->port . ")");
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $outdir = "$PostgreSQL::Test::Utils::tmp_check/isolation";
mkdir $outdir;
my $ok = run_log([
		"$pkglibdir/pgxs/src/test/isolation/pg_isolation_regress",
		'--use-existing', '--host=' . $n1->host, '--port=' . $n1->port,
		'--dbname=postgres', '--inputdir=test', "--outputdir=$outdir",
		'mesh_add_node' ]);
ok($ok, 'isolation spec mesh_add_node');
if (!$ok && -f "$outdir/regression.diffs")
{
	diag(slurp_file("$outdir/regression.diffs"));
}
ok($mesh->no_prepared_xacts, 'nothing prepared after the isolation spec');

# across nodes: a change started on n2 waits for the one open on n1 (both
# lock n1's catalog first), then includes its result
$n1->safe_psql('postgres', "SELECT mycelium.add_node('n2', '127.0.0.1', " . $n2->port . ")");
my $n4 = $mesh->new_node('n4');
my $s1 = $n1->background_psql('postgres');
my $s2 = $n2->background_psql('postgres');
$s1->query_safe('BEGIN');
$s1->query_safe("SELECT mycelium.add_node('n3', '127.0.0.1', " . $n3->port . ")");
$s2->query_until(qr/started/,
	"\\echo started\nSELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ");\n");
$n1->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
	  . "WHERE NOT l.granted AND a.application_name = 'mycelium'")
  or die 'the change from n2 never waited for n1';
pass('a change from n2 waits for the one open on n1');
# lock_timeout reaches the remote lock wait: a third change, from n2 with
# lock_timeout set, gives up on n1's lock instead of waiting
my $t0 = time;
my ($ret, $out, $err) = $n2->psql('postgres',
	"SET lock_timeout = '300ms'; SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
like($err, qr/canceling statement due to lock timeout/, 'lock_timeout applies to a remote lock wait');
ok(time - $t0 < 20, 'and ends the wait early');
$s1->query_safe('COMMIT');
$s1->quit;
$s2->quit;
my $want = '1:n1,2:n2,3:n3,4:n4';
for my $n ($n1, $n2, $n3, $n4)
{
	is($n->safe_psql('postgres',
			"SELECT string_agg(node_id || ':' || node_name, ',' ORDER BY node_id) FROM mycelium.node"),
		$want, $n->name . ' has the same metadata after concurrent changes');
}
ok($mesh->no_prepared_xacts($n4), 'nothing left prepared');

done_testing();
