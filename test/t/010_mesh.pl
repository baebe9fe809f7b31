# The mesh across nodes: joining over TLS, metadata identical everywhere,
# commands on every node, membership bad input, health, removal.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use MyceliumMesh;

my $mesh = MyceliumMesh->new(nodes => 3);
my ($n1, $n2, $n3) = map { $mesh->node($_) } 1 .. 3;

# every node sees the same members, and itself as local
my $expected = join("\n", map { "$_|n$_" } 1 .. 3);
for my $n ($mesh->nodes)
{
	is($n->safe_psql('postgres', 'SELECT node_id, node_name FROM mycelium.nodes'),
		$expected, $n->name . ' lists every member');
	is($n->safe_psql('postgres', 'SELECT node_name FROM mycelium.nodes WHERE is_local'),
		$n->name, $n->name . ' knows which node it is');
}

# node-to-node traffic is TLS, authenticated by certificate: n1's
# maintenance worker keeps a health-check connection to n2
$n2->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
	  . "WHERE a.application_name = 'mycelium' AND s.ssl AND s.client_dn = '/CN=n1'")
  or die 'no TLS connection from n1 to n2';
pass('n1 reaches n2 over TLS with its client certificate');

# run_command_on_nodes runs everywhere, in parallel, from any node
is( $n2->safe_psql('postgres',
		"SELECT string_agg(node_name || ':' || success || ':' || result, ',' ORDER BY node_name) "
		  . "FROM mycelium.run_command_on_nodes('SELECT current_setting(''mycelium.node_name'')')"),
	'n1:true:n1,n2:true:n2,n3:true:n3', 'run_command_on_nodes reaches every node');
$n3->safe_psql('postgres', 'CREATE TABLE only_here (a int); INSERT INTO only_here VALUES (7)');
is( $n1->safe_psql('postgres',
		"SELECT string_agg(node_name || ':' || success || ':' || result, ',' ORDER BY node_name) "
		  . "FROM mycelium.run_command_on_nodes('SELECT a FROM only_here')"),
	'n1:false:relation "only_here" does not exist,'
	  . 'n2:false:relation "only_here" does not exist,n3:true:7',
	'a command failing on some nodes gives rows with success = false');
my $stat = $n1->safe_psql('postgres',
	"SELECT count(*) FROM mycelium.run_command_on_nodes('SELECT 1'); "
	  . "SELECT count(*) FROM mycelium.run_command_on_nodes('SELECT 1'); "
	  . "SELECT sum(opened), sum(reused) FROM mycelium.stat_connections");
is($stat, "3\n3\n3|3", 'connections are opened once per node and reused');

# statement_timeout and cancel reach the remote work at once
my $t0 = time;
my ($ret, $out, $err) = $n1->psql('postgres',
	"SET statement_timeout = '500ms'; "
	  . "SELECT * FROM mycelium.run_command_on_nodes('SELECT pg_sleep(60)')");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout interrupts a fan-out');
ok(time - $t0 < 20, 'without waiting for the remote commands');
$n2->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'")
  or die 'remote pg_sleep was not cancelled';
pass('the remote command was cancelled too');
is($n1->safe_psql('postgres', "SELECT count(*) FROM mycelium.run_command_on_nodes('SELECT 1')"),
	'3', 'the node works normally after the interrupted fan-out');

# a peer that accepts TCP but never answers costs at most
# connect_attempts x connect_timeout (plus backoff), then 08001
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Listen => 5, Proto => 'tcp') or die "could not listen: $!";
$t0 = time;
($ret, $out, $err) = $n1->psql('postgres',
	"SET mycelium.connect_timeout = '300ms'; SET mycelium.connect_attempts = 2; "
	  . "SELECT mycelium.add_node('n9', '127.0.0.1', " . $silent->sockport . ")");
like($err, qr/could not connect to node "n9".*\n.*timeout expired after 300 ms/,
	'a silent peer times out with a clear error');
ok(time - $t0 < 10, 'within connect_attempts x connect_timeout');
close $silent;

# adding a member twice, or under the wrong name, is refused
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('n2', '127.0.0.1', " . $n2->port . ")");
like($err, qr/node "n2" is already a member of the mesh/, 'adding a member twice fails');

my $n4 = $mesh->new_node('n4');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('wrong', '127.0.0.1', " . $n4->port . ")");
like($err, qr/is not node "wrong".*\n.*DETAIL:  Its mycelium.node_name is "n4"/,
	'a name that does not match the server is refused');

# a node without the extension, or without a name, cannot join
my $n5 = $mesh->new_node('n5', extension => 0);
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('n5', '127.0.0.1', " . $n5->port . ")");
like($err, qr/does not have the mycelium extension/, 'a node without the extension is refused');

my $n6 = $mesh->new_node('n6', node_name => undef, extension => 0);
($ret, $out, $err) = $n6->psql('postgres', 'CREATE EXTENSION mycelium');
like($err, qr/WARNING:  mycelium.node_name is not set/, 'CREATE EXTENSION without a node name says so');
($ret, $out, $err) = $n6->psql('postgres', "SELECT mycelium.add_node('n1', '127.0.0.1', " . $n1->port . ")");
like($err, qr/ERROR:  mycelium.node_name is not set/, 'a node without a name cannot add nodes');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('n6', '127.0.0.1', " . $n6->port . ")");
like($err, qr/is not node "n6".*\n.*Its mycelium.node_name is ""/, 'a node without a name cannot join');

# settings too low for the mesh are named at start: the test nodes do not
# list mycelium in output_plugin_libraries
ok($n1->log_contains(
		qr/WARNING:  output_plugin_libraries does not list mycelium.*\n.*\n.*HINT:  Set output_plugin_libraries = '.*, mycelium'/),
	'a missing output_plugin_libraries entry is named at start');

# without shared_preload_libraries the mesh functions name the setting
my $n7 = $mesh->new_node('n7', preload => 0);
($ret, $out, $err) = $n7->psql('postgres', "SELECT mycelium.add_node('n1', '127.0.0.1', " . $n1->port . ")");
like($err, qr/mycelium must be loaded via shared_preload_libraries/, 'missing preload is named');

# a peer whose certificate the CA did not sign is kept out
my $rogue = $mesh->new_node('n8', ca => 'rogue');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('n8', '127.0.0.1', " . $rogue->port . ")");
like($err, qr/could not connect to node "n8".*certificate verify failed/s,
	'a peer with a certificate from another CA is refused');

# none of the failures changed anything anywhere
for my $n ($mesh->nodes)
{
	is($n->safe_psql('postgres', 'SELECT string_agg(node_name, \',\' ORDER BY node_id) FROM mycelium.node'),
		'n1,n2,n3', $n->name . ' unchanged after the refused joins');
}
ok($mesh->no_prepared_xacts($n4), 'no prepared transaction left behind');

# a node that stops answering is marked down, then up again
$n3->stop('immediate');
$n1->poll_query_until('postgres',
	"SELECT status FROM mycelium.nodes WHERE node_name = 'n3'", 'down')
  or die 'n3 never marked down';
pass('a silent peer is marked down after mycelium.peer_timeout');
$t0 = time;
is( $n1->safe_psql('postgres',
		"SELECT string_agg(node_name || ':' || success || ':' || result, ',' ORDER BY node_name) "
		  . "FROM mycelium.run_command_on_nodes('SELECT 1')"),
	'n1:true:1,n2:true:1,n3:false:node "n3" is down: it has not answered for mycelium.peer_timeout',
	'a fan-out reports a down peer without trying it');
ok(time - $t0 < 2, 'and without waiting for it');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
like($err, qr/could not connect to node "n3"/, 'add_node with a member down fails');
is($n4->safe_psql('postgres', 'SELECT count(*) FROM mycelium.node'), '1',
	'and changes nothing on the new node');
$n3->start;
$n1->poll_query_until('postgres',
	"SELECT status FROM mycelium.nodes WHERE node_name = 'n3'", 'active')
  or die 'n3 never came back';
pass('a peer that answers again is active again');

# add from another member, then remove: every node agrees
$n2->safe_psql('postgres', "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
for my $n ($mesh->nodes, $n4)
{
	is($n->safe_psql('postgres', 'SELECT string_agg(node_id || node_name, \',\' ORDER BY node_id) FROM mycelium.node'),
		'1n1,2n2,3n3,4n4', $n->name . ' sees n4 added from n2');
}
$n3->safe_psql('postgres', "SELECT mycelium.remove_node('n4')");
for my $n ($mesh->nodes)
{
	is($n->safe_psql('postgres', 'SELECT string_agg(node_name, \',\' ORDER BY node_id) FROM mycelium.node'),
		'n1,n2,n3', $n->name . ' forgot n4');
}
is($n4->safe_psql('postgres', 'SELECT string_agg(node_name, \',\') FROM mycelium.node'),
	'n4', 'the removed node is a mesh of one again');

# a dead member can be removed by the others
$n2->safe_psql('postgres', "SELECT mycelium.add_node('n4', '127.0.0.1', " . $n4->port . ")");
$n4->stop('immediate');
($ret, $out, $err) = $n1->psql('postgres', "SELECT mycelium.remove_node('n4')");
is($ret, 0, 'removing an unreachable node works');
like($err, qr/WARNING:  node "n4" could not be reached/, 'with a warning');
is($n3->safe_psql('postgres', 'SELECT string_agg(node_name, \',\' ORDER BY node_id) FROM mycelium.node'),
	'n1,n2,n3', 'the other members forgot it');
ok($mesh->no_prepared_xacts, 'no prepared transaction left behind');

done_testing();
