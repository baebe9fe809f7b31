# The mycelium_sqlite foreign data wrapper against the sqlite3 CLI as an
# oracle: randomized WHERE / ORDER BY / LIMIT / aggregate queries over a
# file with odd data must give the CLI's answers; writes and rollbacks
# reach the file exactly; a lock held by the CLI gives 55P03 after
# busy_timeout; unreadable and corrupt files give clear errors and stay
# untouched; statement_timeout stops a long SQLite statement quickly; the
# handle is closed when the backend exits; and all of it works without
# shared_preload_libraries.
use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $dir = PostgreSQL::Test::Utils::tempdir();
my $db = "$dir/oracle.db";

# run SQL with the sqlite3 CLI; returns its output, dies on error
sub cli
{
	my ($file, $sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'sqlite3', '-batch', $file ], \$sql, \$out, \$err)
	  or die "sqlite3 failed: $err";
	chomp $out;
	return $out;
}

sub file_md5
{
	my ($file) = @_;
	open my $fh, '<:raw', $file or die "open $file: $!";
	local $/;
	my $data = <$fh>;
	close $fh;
	return md5_hex($data);
}

# a file with odd data, built by the CLI
srand(20261127);
my @rows;
for my $id (1 .. 300)
{
	my $a = rand() < 0.15 ? 'NULL' : int(rand(41)) - 20;
	# never integral: the CLI prints 2.0 where PostgreSQL prints 2
	my $b = rand() < 0.15 ? 'NULL' : sprintf('%.4f', int(rand(20000) - 10000) / 1000 + 0.0005);
	my $c = rand() < 0.15 ? 'NULL' : "'" . ('k', 'K', 'é', 'x', 'ü✓', '')[ int(rand(6)) ] . int(rand(4)) . "'";
	push @rows, "($id, $a, $b, $c)";
}
cli($db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b REAL, c TEXT);
INSERT INTO t VALUES " . join(', ', @rows) . ";
CREATE INDEX t_a ON t (a);
CREATE TABLE odd (id INTEGER PRIMARY KEY, i, d, bl BLOB);
INSERT INTO odd VALUES (1, 9223372036854775807, '2024-01-02', x'00ff10'),
  (2, -9223372036854775808, '2024-01-02T03:04:05', x''),
  (3, 0, 1700000000, NULL), (4, NULL, 1700000000.5, x'41');
CREATE TABLE w (k INTEGER PRIMARY KEY, v TEXT);");

my $node = PostgreSQL::Test::Cluster->new('sqlite');
$node->init;
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'mycelium'
mycelium.node_name = 'sqlite'
mycelium.node_host = '127.0.0.1'
mycelium.ssl_mode = 'disable'
));
$node->start;
$node->safe_psql('postgres', qq(
CREATE EXTENSION mycelium;
CREATE SERVER lite FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '$db', busy_timeout '300');
CREATE FOREIGN TABLE t (id int8, a int8, b float8, c text) SERVER lite;
CREATE FOREIGN TABLE odd (id int8, i int8, d timestamp, bl bytea) SERVER lite;
CREATE FOREIGN TABLE w (k int8, v text) SERVER lite;
SET timezone = 'UTC';
));

# odd values read exactly
is( $node->safe_psql('postgres',
		"SET timezone = 'UTC'; SELECT id, i, d, encode(bl, 'hex') FROM odd ORDER BY id"),
	"1|9223372036854775807|2024-01-02 00:00:00|00ff10\n"
	  . "2|-9223372036854775808|2024-01-02 03:04:05|\n"
	  . "3|0|2023-11-14 22:13:20|\n"
	  . "4||2023-11-14 22:13:20.5|41",
	'big integers, dates in several forms and blobs read exactly');

# randomized predicates: PostgreSQL through the wrapper vs the CLI
sub rand_pred
{
	my ($depth) = @_;
	my $r = rand();
	if ($depth < 2 && $r < 0.25)
	{
		my $op = rand() < 0.5 ? 'AND' : 'OR';
		return '(' . rand_pred($depth + 1) . " $op " . rand_pred($depth + 1) . ')';
	}
	return 'NOT (' . rand_pred($depth + 1) . ')' if $depth < 2 && $r < 0.32;
	my @cmp = ('=', '<>', '<', '<=', '>', '>=');
	my $k = int(rand(8));
	return "a $cmp[int(rand(6))] " . (int(rand(41)) - 20) if $k == 0;
	return "b $cmp[int(rand(6))] " . sprintf('%.2f', rand(20) - 10) if $k == 1;
	return "c " . ('=', '<>')[ int(rand(2)) ] . " '" . ('k', 'K', 'é', 'x')[ int(rand(4)) ] . int(rand(4)) . "'" if $k == 2;
	return ('a', 'b', 'c')[ int(rand(3)) ] . (rand() < 0.5 ? ' IS NULL' : ' IS NOT NULL') if $k == 3;
	return 'a IN (' . join(', ', map { int(rand(41)) - 20 } 1 .. 4) . ')' if $k == 4;
	return 'a BETWEEN ' . (int(rand(21)) - 20) . ' AND ' . int(rand(21)) if $k == 5;
	return 'c ' . ('LIKE', 'NOT LIKE')[ int(rand(2)) ] . " '"
	  . ('k%', '%1', '_1', 'K_', '%é%', 'ü✓%', '%', '_', 'x_%', '%2')[ int(rand(10)) ] . "'"
	  if $k == 6;
	return 'id ' . $cmp[ int(rand(6)) ] . ' ' . int(rand(300));
}

my ($same, $total) = (0, 0);
for my $n (1 .. 150)
{
	my $pred = rand_pred(0);
	my $order = ('id', 'a NULLS FIRST, id', 'b DESC NULLS LAST, id', 'a DESC, id')[ int(rand(4)) ];
	# SQLite orders NULLs first ascending, last descending, as written
	(my $lite_order = $order) =~ s/a DESC, id/a DESC NULLS FIRST, id/;
	my $limit = rand() < 0.3 ? ' LIMIT ' . int(rand(20)) : '';
	my $q = "SELECT id, a, b, c FROM t WHERE $pred ORDER BY";
	my $pg = $node->safe_psql('postgres', "$q $order$limit");
	# the oracle's LIKE must not ignore case, as PostgreSQL's does not
	my $lite = cli($db, "PRAGMA case_sensitive_like = ON; $q $lite_order$limit");
	$total++;
	if ($pg eq $lite) { $same++ }
	else { diag("differs: $q $order$limit\nPG:\n$pg\nSQLite:\n$lite"); last }
}
is($same, $total, "$total random filtered, ordered and limited queries match the CLI");

($same, $total) = (0, 0);
for my $n (1 .. 40)
{
	my $pred = rand_pred(1);
	my $q = "SELECT a, count(*), count(b), sum(a), min(b), max(b), min(id) FROM t WHERE $pred GROUP BY a ORDER BY a";
	my $pg = $node->safe_psql('postgres', "$q NULLS FIRST");
	my $lite = cli($db, "PRAGMA case_sensitive_like = ON; $q");
	$total++;
	if ($pg eq $lite) { $same++ }
	else { diag("differs: $q\nPG:\n$pg\nSQLite:\n$lite"); last }
}
is($same, $total, "$total random grouped aggregates match the CLI");

# parameterized join lookups give the CLI's answer
$node->safe_psql('postgres',
	"CREATE TABLE keys AS SELECT g * 7 AS id FROM generate_series(1, 40) g; ANALYZE keys;");
is( $node->safe_psql('postgres',
		"SELECT string_agg(t.id || ':' || coalesce(t.c, '-'), ',' ORDER BY t.id) FROM keys k JOIN t ON t.id = k.id"),
	cli($db, "SELECT group_concat(id || ':' || coalesce(c, '-'), ',') FROM (SELECT id, c FROM t WHERE id % 7 = 0 AND id <= 280 ORDER BY id)"),
	'local table joined to the foreign one');
cli($db, 'CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
INSERT INTO big SELECT x, x * 3 FROM c;');
$node->safe_psql('postgres', 'CREATE FOREIGN TABLE big (id int8, v int8) SERVER lite');
like( $node->safe_psql('postgres',
		"EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM keys k JOIN big b ON b.id = k.id"),
	qr/Nested Loop.*WHERE \(\?1 = "id"\)/s,
	'a small local table joined to a big foreign one: parameterized lookups');
is( $node->safe_psql('postgres', "SELECT count(*), sum(v) FROM keys k JOIN big b ON b.id = k.id"),
	cli($db, 'SELECT count(*), sum(v) FROM big WHERE id % 7 = 0 AND id <= 280'), 'and their answer');

# writes reach the file exactly; rollbacks and rolled-back savepoints do not
$node->safe_psql('postgres', "BEGIN; INSERT INTO w SELECT g, 'r' || g FROM generate_series(1, 250) g; ROLLBACK;");
is(cli($db, 'SELECT count(*) FROM w'), '0', 'rolled back INSERT left the file unchanged');
$node->safe_psql('postgres', "INSERT INTO w SELECT g, 'r' || g FROM generate_series(1, 250) g");
is(cli($db, 'SELECT count(*), sum(k) FROM w'), '250|31375', 'batched INSERT committed');
$node->safe_psql('postgres', q{
BEGIN;
UPDATE w SET v = 'u' WHERE k <= 10;
SAVEPOINT s;
DELETE FROM w WHERE k > 100;
ROLLBACK TO SAVEPOINT s;
DELETE FROM w WHERE k > 200;
COMMIT;});
is(cli($db, "SELECT count(*), sum(v = 'u') FROM w"), '200|10', 'savepoint rolled back inside a committed transaction');
$node->safe_psql('postgres', "BEGIN; TRUNCATE w; ROLLBACK;");
is(cli($db, 'SELECT count(*) FROM w'), '200', 'rolled back TRUNCATE left the rows');

# random writes in random transactions, mirrored in a local table: the
# file (read by the CLI) must end up exactly like the mirror
$node->safe_psql('postgres', q{
CREATE TABLE mirror (k int8 PRIMARY KEY, v text);
INSERT INTO mirror SELECT k, v FROM w;
});
my @script;
for my $x (1 .. 60)
{
	my $k = int(rand(400));
	my @ops = (
		"INSERT INTO %s VALUES ($k + 1000, 'i$x') ON CONFLICT DO NOTHING",
		"UPDATE %s SET v = v || '$x' WHERE k % 7 = " . int(rand(7)),
		"DELETE FROM %s WHERE k BETWEEN $k AND $k + 5",
		"UPDATE %s SET k = k + 100000 WHERE k = $k");
	my $op = $ops[ int(rand(@ops)) ];
	# foreign tables take no ON CONFLICT: insert only keys not there yet
	my $fop = sprintf($op, 'w');
	$fop =~ s/INSERT INTO w VALUES \((\d+) \+ 1000, '(\w+)'\) ON CONFLICT DO NOTHING/INSERT INTO w SELECT $1 + 1000, '$2' WHERE NOT EXISTS (SELECT FROM w WHERE k = $1 + 1000)/;
	my $end = ('COMMIT', 'COMMIT', 'ROLLBACK')[ int(rand(3)) ];
	my $sp = rand() < 0.3;
	my $sql = "BEGIN; " . ($sp ? 'SAVEPOINT s; ' : '') . "$fop; "
	  . sprintf($op, 'mirror') . "; "
	  . ($sp && rand() < 0.5 ? 'ROLLBACK TO SAVEPOINT s; ' : '') . "$end;";
	$node->safe_psql('postgres', $sql);
}
is( cli($db, "SELECT group_concat(k || '=' || v, ',') FROM (SELECT k, v FROM w ORDER BY k)"),
	$node->safe_psql('postgres', "SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM mirror"),
	'60 random write transactions reached the file exactly');

# the CLI holds the write lock: 55P03 after busy_timeout, then success
my ($in, $out, $err) = ('', '', '');
my $holder = IPC::Run::start([ 'sqlite3', '-batch', $db ], \$in, \$out, \$err,
	IPC::Run::timeout(60));
$in .= "BEGIN EXCLUSIVE;\nSELECT 'locked';\n";
$holder->pump until $out =~ /locked/;
my $t0 = time();
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nINSERT INTO w VALUES (1000, 'waits')");
my $waited = time() - $t0;
like($stderr, qr/55P03.*is locked/s, 'a lock held by the CLI gives SQLSTATE 55P03');
ok($waited >= 0.25 && $waited < 5, "waited busy_timeout first (${waited}s)");
$in .= "COMMIT;\n.quit\n";
$holder->finish;
$node->safe_psql('postgres', "INSERT INTO w VALUES (1000, 'after')");
is(cli($db, 'SELECT v FROM w WHERE k = 1000'), 'after', 'writes work once the lock is released');

# unreadable and corrupt files: clear errors, files untouched
my $noread = "$dir/noread.db";
cli($noread, 'CREATE TABLE x (a); INSERT INTO x VALUES (1);');
my $noread_md5 = file_md5($noread);
chmod 0000, $noread;
my $corrupt = "$dir/corrupt.db";
open my $fh, '>:raw', $corrupt or die;
print $fh join('', map { chr(int(rand(256))) } 1 .. 8192);
close $fh;
my $corrupt_md5 = file_md5($corrupt);
$node->safe_psql('postgres', qq(
CREATE SERVER noread FOREIGN DATA WRAPPER mycelium_sqlite OPTIONS (database '$noread');
CREATE FOREIGN TABLE nr (a int) SERVER noread OPTIONS (table 'x');
CREATE SERVER corrupt FOREIGN DATA WRAPPER mycelium_sqlite OPTIONS (database '$corrupt');
CREATE FOREIGN TABLE cr (a int) SERVER corrupt OPTIONS (table 'x');
));
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT * FROM nr');
like($stderr, qr/could not open SQLite database/, 'unreadable file: clear error');
($ret, $stdout, $stderr) = $node->psql('postgres', 'INSERT INTO cr VALUES (1)');
like($stderr, qr/is corrupt or not a SQLite database/, 'corrupt file: clear error');
chmod 0600, $noread;
is(file_md5($noread), $noread_md5, 'unreadable file unchanged');
is(file_md5($corrupt), $corrupt_md5, 'corrupt file unchanged');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still fine');

# statement_timeout interrupts a statement running inside SQLite
cli($db, 'CREATE VIEW forever AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c WHERE x < 0;');
$node->safe_psql('postgres', 'CREATE FOREIGN TABLE forever (x int8) SERVER lite');
$t0 = time();
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT * FROM forever");
my $took = time() - $t0;
like($stderr, qr/canceling statement due to statement timeout/, 'statement_timeout cancels');
ok($took < 1.5, "cancelled promptly (${took}s for a 300 ms timeout)");

# pg_cancel_backend stops a statement running in SQLite, and a wait for a
# lock (busy_timeout of a minute here), within a fraction of a second
sub cancel_time
{
	my ($sql) = @_;
	my ($cin, $cout, $cerr) = ("SELECT pg_backend_pid();\n$sql;\n", '', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres') ],
		\$cin, \$cout, \$cerr, IPC::Run::timeout(60));
	$h->pump until $cout =~ /^(\d+)$/m;
	my $pid = $1;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND state = 'active'");
	my $start = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$h->pump until $cerr =~ /canceling statement due to user request/;
	my $took = time() - $start;
	$cin .= "\\q\n";
	$h->finish;
	return $took;
}
$took = cancel_time('SELECT * FROM forever');
ok($took < 1, "pg_cancel_backend stops a SQLite statement (${took}s)");
$node->safe_psql('postgres', qq(
CREATE SERVER patient FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '$db', busy_timeout '60000');
CREATE FOREIGN TABLE w_patient (k int8, v text) SERVER patient OPTIONS (table 'w');
));
($in, $out, $err) = ('', '', '');
$holder = IPC::Run::start([ 'sqlite3', '-batch', $db ], \$in, \$out, \$err,
	IPC::Run::timeout(60));
$in .= "BEGIN EXCLUSIVE;\nSELECT 'locked';\n";
$holder->pump until $out =~ /locked/;
$took = cancel_time("INSERT INTO w_patient VALUES (3000, 'waits')");
ok($took < 1, "pg_cancel_backend stops a wait for a SQLite lock (${took}s)");
$in .= "ROLLBACK;\n.quit\n";
$holder->finish;

# a backend that exits closes its handle: its open transaction is gone
my $bg = $node->background_psql('postgres');
$bg->query_safe("BEGIN; INSERT INTO w VALUES (2000, 'never');");
$bg->quit;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
is(cli($db, "BEGIN EXCLUSIVE; SELECT count(*) FROM w WHERE k = 2000; COMMIT;"), '0',
	'backend exit rolled back and released the file');

$node->stop;

# the wrapper needs no shared_preload_libraries
my $plain = PostgreSQL::Test::Cluster->new('nopreload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', qq(
CREATE EXTENSION mycelium;
CREATE SERVER lite FOREIGN DATA WRAPPER mycelium_sqlite
  OPTIONS (database '$db', readonly 'true');
CREATE FOREIGN TABLE t (id int8, a int8, b float8, c text) SERVER lite;
));
is( $plain->safe_psql('postgres', 'SELECT count(*), sum(a), max(c) FROM t WHERE a > 0'),
	cli($db, 'SELECT count(*), sum(a), max(c) FROM t WHERE a > 0'),
	'works without shared_preload_libraries');
$plain->stop;
done_testing();
