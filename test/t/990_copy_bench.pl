use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = $mesh->nodes;
my $file = $n1->basedir . '/rows.txt';
$n1->safe_psql('postgres', qq{
	COPY (SELECT g, 'customer ' || g, g % 1000, now() FROM generate_series(1, 1000000) g) TO '$file';
	CREATE TABLE local_t (id int PRIMARY KEY, name text, amount int, at timestamptz);
	CREATE TABLE dist_t (id int PRIMARY KEY, name text, amount int, at timestamptz);
	SELECT mycelium.create_distributed_table('dist_t', 'id');
});
for my $round (1 .. 3)
{
	for my $t ('local_t', 'dist_t')
	{
		$n1->safe_psql('postgres', "TRUNCATE $t");
		my $t0 = time;
		$n1->safe_psql('postgres', "COPY $t FROM '$file'");
		my $dt = time - $t0;
		diag(sprintf("round %d %s: %.3f s (%.0f rows/s)", $round, $t, $dt, 1000000 / $dt));
	}
}
my $total = 0;
$total += $_->safe_psql('postgres', q{SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I', shard_name), false, true, '')))[1]::text::int), 0) FROM mycelium.shards WHERE node_name = (SELECT node_name FROM mycelium.nodes WHERE is_local)}) for $mesh->nodes;
is($total, 1000000, 'all rows in shards');
done_testing();
