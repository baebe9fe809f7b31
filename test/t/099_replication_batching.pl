# Peer replication, batched apply: between two nodes, n2's apply worker
# applies a backlog of single-row remote transactions several to a local
# transaction (rows of one batch share their xmin), and a crash in the
# middle of the backlog (-m immediate) loses no batch and repeats none:
# an ALWAYS trigger counts every applied row exactly once, and the
# checksums are equal.  Once a third node joins, batching stops.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use MyceliumMesh;

my $conf = "output_plugin_libraries = 'pgoutput, test_decoding, mycelium'\n"
  . "max_wal_senders = 10\nmax_replication_slots = 10\n";
my $mesh = MyceliumMesh->new(nodes => 2, conf => $conf);
my ($n1, $n2) = $mesh->nodes;

for my $n ($n1, $n2)
{
	$n->append_conf('pg_hba.conf',
		"hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
	$n->reload;
	$n->safe_psql('postgres',
		'CREATE TABLE t (id int PRIMARY KEY, v text, n int);'
		  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('t')");
}
$n2->safe_psql('postgres',
	'CREATE TABLE seen (id int);'
	  . 'CREATE FUNCTION seen() RETURNS trigger LANGUAGE plpgsql AS '
	  . '$$BEGIN INSERT INTO seen VALUES (NEW.id); RETURN NEW; END$$;'
	  . 'CREATE TRIGGER seen AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION seen();'
	  . 'ALTER TABLE t ENABLE ALWAYS TRIGGER seen');
my $streaming = "SELECT status = 'streaming' FROM mycelium.replication_peer_state()";
ok($n2->poll_query_until('postgres', $streaming), 'n2 streams from n1');

# a backlog: n2 paused while n1 commits $rows single-row transactions
my $rows = 20000;
$n2->safe_psql('postgres', 'SELECT mycelium.pause_replication()');
ok($n2->poll_query_until('postgres',
		"SELECT status = 'paused' FROM mycelium.replication_peer_state()"),
	'n2 paused');
$n1->safe_psql('postgres',
	"DO \$\$BEGIN FOR i IN 1..$rows LOOP "
	  . "INSERT INTO t VALUES (i, 'backlog', 0); COMMIT; END LOOP; END\$\$");

# resume, and kill n2 once it applied some of the backlog (bounded wait)
$n2->safe_psql('postgres', 'SELECT mycelium.resume_replication()');
my $before = 0;
for (1 .. 600)
{
	$before = $n2->safe_psql('postgres', 'SELECT count(*) FROM t');
	last if $before >= 1000;
	usleep(20_000);
}
$n2->stop('immediate');
note("n2 had applied $before of $rows rows when it was killed");
cmp_ok($before, '<', $rows, 'n2 was killed in the middle of the backlog');

$n2->start;
ok($n2->poll_query_until('postgres', "SELECT count(*) = $rows FROM t"),
	'n2 catches up after the crash');
is($n2->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM seen'),
	"$rows|$rows", 'every row was applied exactly once');

# batched: far fewer local transactions than remote ones
my $xacts = $n2->safe_psql('postgres', 'SELECT count(DISTINCT xmin::text) FROM t');
note("$rows remote transactions applied in $xacts local ones");
cmp_ok($xacts, '<', $rows / 2, 'remote transactions were batched');

# and it goes on: live single-row transactions, updates, deletes
$n1->safe_psql('postgres',
	"DO \$\$BEGIN FOR i IN 1..200 LOOP "
	  . "UPDATE t SET n = n + 1 WHERE id = i; DELETE FROM t WHERE id = i + 1000; "
	  . "COMMIT; END LOOP; END\$\$");
ok($n1->safe_psql('postgres', 'SELECT mycelium.wait_for_sync()') eq 't', 'n2 in sync');
is($n2->safe_psql('postgres', "SELECT mycelium.table_checksum('t')"),
	$n1->safe_psql('postgres', "SELECT mycelium.table_checksum('t')"),
	'checksums equal');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM mycelium.conflicts'), '0',
	'no conflict was recorded');

# a third node joins: from then on every remote transaction is its own
# local transaction on n2 (a batch would shift row versions that n3's
# concurrent changes are compared with)
my $n3 = $mesh->new_node('n3', conf => $conf);
$n3->append_conf('pg_hba.conf', "hostssl replication all 127.0.0.1/32 cert map=mycelium\n");
$n3->reload;
my $copy = $PostgreSQL::Test::Utils::tmp_check . '/t.copy';
$n1->safe_psql('postgres', "COPY t TO '$copy'");
$n3->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v text, n int);'
	  . "COPY t FROM '$copy';"
	  . "INSERT INTO mycelium.replicated_table (relid) VALUES ('t')");
$n1->safe_psql('postgres', "SELECT mycelium.add_node('n3', '127.0.0.1', " . $n3->port . ')');
ok( $n2->poll_query_until('postgres',
		"SELECT count(*) = 2 AND bool_and(status = 'streaming') "
		  . 'FROM mycelium.replication_peer_state()'),
	'n2 streams from n1 and n3');
$n2->safe_psql('postgres', "SELECT mycelium.pause_replication('n1')");
ok($n2->poll_query_until('postgres',
		"SELECT status = 'paused' FROM mycelium.replication_peer_state() WHERE peer = 'n1'"),
	'n2 paused n1');
$n1->safe_psql('postgres',
	"DO \$\$BEGIN FOR i IN 50001..50300 LOOP "
	  . "INSERT INTO t VALUES (i, 'three nodes', 0); COMMIT; END LOOP; END\$\$");
$n2->safe_psql('postgres', "SELECT mycelium.resume_replication('n1')");
ok($n2->poll_query_until('postgres', 'SELECT count(*) = 300 FROM t WHERE id > 50000'),
	'the backlog reaches n2');
is($n2->safe_psql('postgres', 'SELECT count(DISTINCT xmin::text) FROM t WHERE id > 50000'),
	'300', 'with three nodes, one local transaction per remote one');

$_->stop for ($n1, $n2, $n3);
done_testing();
