# The router against an oracle: the same data in distributed tables (schema
# dist: hash, a colocated hash table, range, reference) and in plain local
# tables (schema oracle, on n1), and many randomly generated query shapes
# run against both, from every node.  Results must be equal (rows compared
# sorted, or in order when the query orders them totally; decimals rounded
# to 6 places), or the distributed query must fail with SQLSTATE 0A000
# (counted per shape, not a failure).  Any other difference fails the test
# with the query, the seed and both results.
#
#   MYCELIUM_ORACLE_SEED=n      replay a run (the seed is printed)
#   MYCELIUM_ORACLE_QUERIES=n   queries per node (default 200)
#   MYCELIUM_ORACLE_PLAIN=1     leave schema dist undistributed (checks the
#                               test itself: everything must be equal)
#   MYCELIUM_ORACLE_DML=0       read-only queries only
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use MyceliumMesh;

my $seed = $ENV{MYCELIUM_ORACLE_SEED} // int(time * 1000) % 1000000007;
my $nqueries = $ENV{MYCELIUM_ORACLE_QUERIES} // 200;
my $plain = $ENV{MYCELIUM_ORACLE_PLAIN} // 0;
my $with_dml = $ENV{MYCELIUM_ORACLE_DML} // 1;
diag("router oracle seed: $seed (MYCELIUM_ORACLE_SEED=$seed replays this run)");
srand($seed);
my $t_start = time;

my $mesh = MyceliumMesh->new(nodes => 3);
my @nodes = map { $mesh->node($_) } 1 .. 3;
my $n1 = $nodes[0];

# --- schema and data ------------------------------------------------------
my $ddl = <<'SQL';
CREATE TABLE %S%.accounts (id int PRIMARY KEY, name text NOT NULL, region text,
	balance numeric(12,2) NOT NULL, score int, created date NOT NULL,
	weight double precision);
CREATE TABLE %S%.events (account_id int NOT NULL, seq int NOT NULL, kind text NOT NULL,
	amount int NOT NULL, at timestamp NOT NULL, PRIMARY KEY (account_id, seq));
CREATE TABLE %S%.ranged (k int PRIMARY KEY, v text, n int NOT NULL);
CREATE TABLE %S%.regions (code text PRIMARY KEY, name text NOT NULL, zone int NOT NULL);
CREATE TABLE %S%.tags (tag text PRIMARY KEY, account_id int, hits int NOT NULL);
INSERT INTO %S%.accounts
SELECT id, 'acc' || lpad(id::text, 3, '0'), (ARRAY['eu','us','ap','sa','zz',NULL])[id % 6 + 1],
	((id * 37) % 1000 + (id % 7) / 100.0)::numeric(12,2),
	CASE WHEN id % 17 = 0 THEN NULL ELSE (id * 13) % 50 END,
	date '2024-01-01' + (id * 7) % 365, (id % 9) / 4.0
  FROM generate_series(1, 300) id;
INSERT INTO %S%.events
SELECT a, s, (ARRAY['buy','sell','refund'])[(a + s) % 3 + 1], ((a * s * 11) % 500) - 100,
	timestamp '2024-01-01' + make_interval(hours => a * 5 + s)
  FROM generate_series(1, 310) a, generate_series(1, 4) s WHERE s <= a % 5;
INSERT INTO %S%.tags SELECT 'tag' || g, g % 50, (g * 3) % 17 FROM generate_series(1, 120) g;
INSERT INTO %S%.tags VALUES ('', NULL, 1), ('a b', 7, 2), ('ÄÖü', 8, 3), ('Tag1', 9, 4);
INSERT INTO %S%.regions VALUES ('eu', 'Europe', 1), ('us', 'Americas', 2),
	('ap', 'Asia', 3), ('sa', 'South America', 2), ('af', 'Africa', 4);
SQL
my @ranged_list = map { sprintf("(%d, 'v%d', %d)", $_, $_ % 23, ($_ * 7) % 100) } 0 .. 499;
my $ranged_rows = join(', ', @ranged_list);
my @failures;

sub in_schema
{
	my ($sql, $schema) = @_;
	$sql =~ s/%S%/$schema/g;
	return $sql;
}

$_->safe_psql('postgres', 'CREATE SCHEMA dist') for @nodes;
$n1->safe_psql('postgres', 'CREATE SCHEMA oracle; ' . in_schema($ddl, 'oracle')
	  . "INSERT INTO oracle.ranged VALUES $ranged_rows");
$n1->safe_psql('postgres', in_schema($ddl, 'dist'));
if ($plain)
{
	$n1->safe_psql('postgres', "INSERT INTO dist.ranged VALUES $ranged_rows");
	$_->safe_psql('postgres', in_schema($ddl, 'dist')) for @nodes[ 1 .. 2 ];
	$_->safe_psql('postgres', "INSERT INTO dist.ranged VALUES $ranged_rows") for @nodes[ 1 .. 2 ];
	diag('MYCELIUM_ORACLE_PLAIN: dist tables stay local (checking the test itself)');
}
else
{
	$n1->safe_psql('postgres', q{
		SELECT mycelium.create_distributed_table('dist.accounts', 'id', shard_count => 6);
		SELECT mycelium.create_distributed_table('dist.events', 'account_id', colocate_with => 'dist.accounts');
		SELECT mycelium.create_reference_table('dist.regions');
		SELECT mycelium.create_distributed_table('dist.tags', 'tag', shard_count => 4);
		SELECT mycelium.create_distributed_table('dist.ranged', 'k', 'range');
		SELECT mycelium.add_range_shard('dist.ranged', '0', '100', 'n1');
		SELECT mycelium.add_range_shard('dist.ranged', '100', '250', 'n2');
		SELECT mycelium.add_range_shard('dist.ranged', '250', '600', 'n3');
	});
	# a multi-row INSERT is itself under test: when it fails, fill the
	# shard tables directly so that the rest still runs
	my ($ret, $out, $err) = $n1->psql('postgres', "INSERT INTO dist.ranged VALUES $ranged_rows");
	if ($ret != 0)
	{
		push @failures, "setup: a multi-row INSERT into the range table failed:\n$err";
		my $shards = $n1->safe_psql('postgres',
			"SELECT shard_name, min_value, max_value, substr(node_name, 2) FROM mycelium.shards "
			  . "WHERE table_name = 'dist.ranged'::regclass");
		for my $sh (split /\n/, $shards)
		{
			my ($name, $lo, $hi, $i) = split /\|/, $sh;
			$nodes[ $i - 1 ]->safe_psql('postgres',
				"INSERT INTO dist.$name SELECT k, 'v' || (k % 23), (k * 7) % 100 "
				  . "FROM generate_series($lo, least($hi, 500) - 1) k");
		}
	}
}

# without the router (no planner hook yet) there is nothing to compare
unless ($plain || $n1->safe_psql('postgres', 'EXPLAIN SELECT * FROM dist.accounts') =~ /Custom Scan/)
{
	plan skip_all => 'the query router is not installed';
}

# the rows really are in the shards (read there directly, bypassing the
# router), spread over the nodes
unless ($plain)
{
	for my $t (qw(accounts events ranged tags))
	{
		my $want = $n1->safe_psql('postgres', "SELECT count(*) FROM oracle.$t");
		my ($have, %per_node) = (0);
		for my $sh (split /\n/, $n1->safe_psql('postgres',
				"SELECT shard_name, substr(node_name, 2) FROM mycelium.shards "
				  . "WHERE table_name = 'dist.$t'::regclass"))
		{
			my ($name, $i) = split /\|/, $sh;
			my $c = $nodes[ $i - 1 ]->safe_psql('postgres', "SELECT count(*) FROM dist.$name");
			$have += $c;
			$per_node{$i} += $c;
		}
		is($have, $want, "the shards of dist.$t hold its $want rows");
		ok(keys(%per_node) >= 2, "dist.$t is spread over " . keys(%per_node) . ' nodes');
	}
}

# --- sessions and running statements --------------------------------------
my @dist = map { $_->background_psql('postgres', on_error_stop => 0) } @nodes;
my $orac = $n1->background_psql('postgres', on_error_stop => 0);
my $banner_seq = 0;

# sq($session, $sql): { rows => [...] } or { err => SQLSTATE, msg => text }
sub sq
{
	my ($s, $sql) = @_;
	my $b = 'oracle_banner_' . $banner_seq++;
	$s->{stdout} = '';
	$s->{stderr} = '';
	$s->{stdin} .= "$sql\n;\n\\echo '$b'\n\\warn '$b'\n";
	$s->{timeout}->start($PostgreSQL::Test::Utils::timeout_default);
	$s->{run}->pump
	  until ($s->{stdout} =~ /$b\r?\n/ && $s->{stderr} =~ /$b\r?\n/)
	  || $s->{timeout}->is_expired;
	die "statement timed out: $sql" if $s->{timeout}->is_expired;
	my $out = $s->{stdout};
	my $err = $s->{stderr};
	$out =~ s/\r?\n?$b\r?\n//;
	$err =~ s/\r?\n?$b\r?\n//;
	if ($err =~ /ERROR:\s+([0-9A-Z]{5}):\s*([^\n]*)/)
	{
		return { err => $1, msg => $2, full => $err };
	}
	return { rows => [ $out eq '' ? () : split(/\r?\n/, $out) ] };
}

for my $s (@dist, $orac)
{
	sq($s, "\\pset null '<NULL>'");
	sq($s, '\set VERBOSITY verbose');
	sq($s, "SET extra_float_digits = 0");
}

# normalise a row: decimals rounded to 6 places
sub norm_row
{
	my ($row) = @_;
	return join('|', map {
			/^-?\d+\.\d+$/ || /^-?\d+(\.\d+)?e[-+]?\d+$/i ? sprintf('%.6f', $_) : $_
	} split(/\|/, $row, -1));
}

sub render
{
	my ($r) = @_;
	return "ERROR $r->{err}: $r->{msg}" if $r->{err};
	my @rows = @{ $r->{rows} };
	my $more = @rows > 20 ? "\n... (" . scalar(@rows) . ' rows)' : '';
	return join("\n", @rows[ 0 .. ($#rows < 19 ? $#rows : 19) ]) . $more;
}

# same($dist, $oracle, $ordered): 'equal', 'unsupported' or 'different'
sub same
{
	my ($d, $o, $ordered) = @_;
	if ($d->{err})
	{
		return 'unsupported' if $d->{err} eq '0A000';
		return ($o->{err} && $o->{err} eq $d->{err}) ? 'equal' : 'different';
	}
	return 'different' if $o->{err};
	my @a = map { norm_row($_) } @{ $d->{rows} };
	my @b = map { norm_row($_) } @{ $o->{rows} };
	unless ($ordered)
	{
		@a = sort @a;
		@b = sort @b;
	}
	return join("\n", @a) eq join("\n", @b) ? 'equal' : 'different';
}

my %stats;		# shape => { run, equal, unsupported, different }
my $nwrong = 0;	# wrong answers (the first ones are in @failures)

sub record
{
	my ($shape, $node, $sql, $d, $o, $verdict) = @_;
	$stats{$shape}{run}++;
	$stats{$shape}{$verdict}++;
	return 1 unless $verdict eq 'different';
	$nwrong++;
	push @failures, "seed $seed, shape $shape, on node n$node:\n  " . in_schema($sql, 'dist')
	  . "\n-- distributed:\n" . render($d) . "\n-- oracle (the same on schema oracle):\n" . render($o)
	  if @failures < 12;
	return 0;
}

# --- random values --------------------------------------------------------
sub pick { return $_[ int(rand(@_)) ]; }
sub rid { return 1 + int(rand(320)); }	# 301..320: no such account
sub rids { return join(', ', map { rid() } 1 .. $_[0]); }
sub rscore { return int(rand(55)); }
sub rregion { return pick("'eu'", "'us'", "'ap'", "'sa'", "'zz'", "'xx'"); }
sub rk { return int(rand(520)); }

# --- read-only query shapes: name => sub returning [sql, ordered] ----------
my %shapes = (
	point => sub { ["SELECT * FROM %S%.accounts WHERE id = " . rid(), 0] },
	point_in => sub { ["SELECT id, name, balance FROM %S%.accounts WHERE id IN (" . rids(1 + int(rand(5))) . ")", 0] },
	point_null => sub {
		[ pick("SELECT * FROM %S%.accounts WHERE id = NULL",
				"SELECT id FROM %S%.accounts WHERE id IN (" . rids(2) . ", NULL)",
				"SELECT count(*) FROM %S%.accounts WHERE id IS NULL",
				"SELECT id FROM %S%.accounts WHERE id = " . rid() . " OR id IS NULL",
				"SELECT * FROM %S%.events WHERE account_id = NULL::int"), 0 ]
	},
	point_filter => sub { ["SELECT id, score FROM %S%.accounts WHERE id = " . rid() . " AND coalesce(score, 0) >= " . rscore(), 0] },
	point_events => sub { ["SELECT seq, kind, amount FROM %S%.events WHERE account_id = " . rid() . " ORDER BY seq", 1] },
	filter => sub {
		[ pick("SELECT id, region FROM %S%.accounts WHERE score BETWEEN " . rscore() . " AND " . rscore(),
				"SELECT id, balance FROM %S%.accounts WHERE region = " . rregion(),
				"SELECT id FROM %S%.accounts WHERE name LIKE 'acc1%' AND weight > 1",
				"SELECT id, created FROM %S%.accounts WHERE created < date '2024-03-01' AND region IS NULL",
				"SELECT account_id, seq FROM %S%.events WHERE amount < " . (int(rand(300)) - 100)), 0 ]
	},
	order_limit => sub {
		[ pick("SELECT id, score FROM %S%.accounts ORDER BY score DESC NULLS LAST, id LIMIT " . (1 + int(rand(20))) . " OFFSET " . int(rand(30)),
				"SELECT id, balance FROM %S%.accounts WHERE region = " . rregion() . " ORDER BY balance, id LIMIT " . (1 + int(rand(10))),
				"SELECT account_id, seq, amount FROM %S%.events ORDER BY amount DESC, account_id, seq LIMIT 7",
				"SELECT id FROM %S%.accounts ORDER BY id DESC OFFSET 295",
				"SELECT name FROM %S%.accounts ORDER BY name LIMIT 5 OFFSET " . int(rand(300))), 1 ]
	},
	group => sub {
		my $having = rand() < 0.5 ? " HAVING count(*) > " . int(rand(60)) : '';
		[ pick("SELECT region, count(*), sum(balance), min(score), max(score), avg(score) FROM %S%.accounts GROUP BY region$having",
				"SELECT kind, count(*), sum(amount), avg(amount), min(at), max(at) FROM %S%.events GROUP BY kind$having",
				"SELECT score % 5 AS b, count(*), avg(balance), sum(weight) FROM %S%.accounts GROUP BY 1$having",
				"SELECT account_id, sum(amount) FROM %S%.events GROUP BY account_id HAVING sum(amount) > " . int(rand(400)),
				"SELECT region, count(DISTINCT score) FROM %S%.accounts GROUP BY region",
				"SELECT kind, count(*) FILTER (WHERE amount > 0), max(amount) FROM %S%.events GROUP BY kind"), 0 ]
	},
	group_order => sub {
		["SELECT region, count(*) AS c FROM %S%.accounts GROUP BY region ORDER BY c DESC, region NULLS FIRST LIMIT " . (1 + int(rand(5))), 1]
	},
	distinct => sub {
		[ pick("SELECT DISTINCT region FROM %S%.accounts",
				"SELECT DISTINCT score FROM %S%.accounts WHERE score < " . rscore(),
				"SELECT DISTINCT kind, amount > 0 FROM %S%.events",
				"SELECT DISTINCT ON (region) region, id FROM %S%.accounts ORDER BY region, id",
				"SELECT count(DISTINCT region) FROM %S%.accounts"), 0 ]
	},
	count => sub {
		[ pick("SELECT count(*) FROM %S%.accounts",
				"SELECT count(*) FROM %S%.events WHERE kind = 'buy'",
				"SELECT count(score), count(region) FROM %S%.accounts",
				"SELECT count(*) FROM %S%.ranged",
				"SELECT count(*), sum(n), min(k), max(k), avg(n) FROM %S%.ranged WHERE k >= " . rk()), 0 ]
	},
	aggregate => sub {
		[ pick("SELECT sum(amount), avg(amount), min(at), max(at) FROM %S%.events WHERE kind = 'sell'",
				"SELECT sum(balance), avg(balance), min(created), max(created), sum(weight) FROM %S%.accounts",
				"SELECT max(score) - min(score), sum(score) / count(score) FROM %S%.accounts",
				"SELECT avg(weight), sum(weight * 2) FROM %S%.accounts WHERE id IN (" . rids(4) . ")"), 0 ]
	},
	range => sub {
		my $a = rk();
		[ pick("SELECT * FROM %S%.ranged WHERE k = $a",
				"SELECT k, v FROM %S%.ranged WHERE k IN ($a, " . rk() . ", " . rk() . ")",
				"SELECT k, n FROM %S%.ranged WHERE k BETWEEN $a AND " . ($a + int(rand(200))),
				"SELECT n % 5, count(*), sum(k) FROM %S%.ranged GROUP BY 1",
				"SELECT v, count(*) FROM %S%.ranged WHERE n > 50 GROUP BY v HAVING count(*) > 8"), 0 ]
	},
	join_colocated => sub {
		[ pick("SELECT a.id, a.name, e.seq, e.amount FROM %S%.accounts a JOIN %S%.events e ON a.id = e.account_id WHERE a.id = " . rid(),
				"SELECT a.id, e.seq FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id WHERE e.kind = 'refund' AND a.score > " . rscore(),
				"SELECT a.id, count(e.seq) FROM %S%.accounts a LEFT JOIN %S%.events e ON e.account_id = a.id WHERE a.id < " . rid() . " GROUP BY a.id",
				"SELECT a.region, count(*), sum(e.amount) FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id GROUP BY a.region",
				"SELECT e.account_id, e.seq FROM %S%.events e LEFT JOIN %S%.accounts a ON a.id = e.account_id WHERE a.id IS NULL"), 0 ]
	},
	join_pushdown => sub {
		my $id = rid();
		[ pick("SELECT a.id, e.seq, r.name FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id JOIN %S%.regions r ON r.code = a.region WHERE e.amount > " . int(rand(300)),
				"SELECT r.zone, count(*), sum(e.amount), avg(a.balance) FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id JOIN %S%.regions r ON r.code = a.region GROUP BY r.zone HAVING count(*) > " . int(rand(20)),
				"SELECT a.id, e.seq FROM %S%.accounts a FULL JOIN %S%.events e ON e.account_id = a.id AND e.kind = 'buy' WHERE coalesce(a.id, e.account_id) < " . rid(),
				"SELECT e.account_id, a.name FROM %S%.accounts a RIGHT JOIN %S%.events e ON a.id = e.account_id AND a.score > " . rscore(),
				"SELECT a.id, r.zone FROM %S%.accounts a LEFT JOIN %S%.regions r ON r.code = a.region AND r.zone > 1 JOIN %S%.events e ON e.account_id = a.id WHERE e.seq = 2",
				"SELECT r.code, count(a.id) FROM %S%.regions r LEFT JOIN %S%.accounts a ON a.region = r.code GROUP BY r.code",
				"SELECT DISTINCT a.region, e.kind FROM %S%.accounts a JOIN %S%.events e ON a.id = e.account_id WHERE a.score < 0",
				"SELECT a.region, e.kind, count(*) OVER (PARTITION BY a.region) FROM %S%.accounts a JOIN %S%.events e ON a.id = e.account_id WHERE a.id IN (" . rids(6) . ")",
				"SELECT a.id, sum(e.amount) FROM %S%.accounts a JOIN %S%.events e ON a.id = e.account_id WHERE a.id = $id OR a.id = " . rid() . " GROUP BY a.id",
				"SELECT count(*), sum(e.amount) FROM %S%.accounts a, %S%.events e WHERE a.id = e.account_id AND e.account_id = $id",
				"SELECT a.id, e.seq FROM %S%.accounts a JOIN %S%.events e ON a.id = e.account_id ORDER BY e.amount DESC, a.id, e.seq LIMIT " . (1 + int(rand(9))),
				"SELECT a.id, x.n FROM %S%.accounts a JOIN (SELECT account_id, count(*) n FROM %S%.events GROUP BY account_id) x ON x.account_id = a.id WHERE a.id = $id",
				"SELECT t.tag, a.name FROM %S%.tags t JOIN %S%.accounts a ON a.id = t.account_id WHERE a.id = $id",
				"SELECT a.region, count(*), sum(x.s) FROM %S%.accounts a JOIN (SELECT account_id, sum(amount) s, count(*) c FROM %S%.events GROUP BY account_id) x ON x.account_id = a.id WHERE x.c > " . int(rand(4)) . " GROUP BY a.region",
				"SELECT x.id, x.kind FROM (SELECT a.id, e.kind FROM %S%.accounts a LEFT JOIN %S%.events e ON e.account_id = a.id WHERE a.score > " . rscore() . ") x JOIN %S%.regions r ON r.zone = x.id % 5",
				"SELECT count(*) FROM %S%.accounts a JOIN (SELECT account_id FROM %S%.events ORDER BY amount LIMIT 9) x ON x.account_id = a.id",
				"WITH t AS (SELECT account_id, count(*) n FROM %S%.events WHERE kind <> 'sell' GROUP BY account_id) SELECT a.region, sum(t.n) FROM %S%.accounts a LEFT JOIN t ON t.account_id = a.id GROUP BY a.region",
				"SELECT a.region, count(*) FROM %S%.accounts a WHERE EXISTS (SELECT 1 FROM %S%.events e WHERE e.account_id = a.id AND e.amount > " . int(rand(400)) . ") GROUP BY a.region",
				"SELECT a.id FROM %S%.accounts a WHERE NOT EXISTS (SELECT 1 FROM %S%.events e WHERE e.account_id = a.id AND e.kind = 'buy') AND a.score < " . rscore(),
				"SELECT a.id, r.zone FROM %S%.accounts a JOIN %S%.regions r ON r.code = a.region WHERE a.id IN (SELECT account_id FROM %S%.events WHERE amount < " . (int(rand(200)) - 100) . ")",
				"SELECT count(*) FROM %S%.accounts a WHERE a.region IN (SELECT code FROM %S%.regions WHERE zone > " . int(rand(4)) . ") AND EXISTS (SELECT 1 FROM %S%.events e WHERE e.account_id = a.id)"), 0 ]
	},
	join_reference => sub {
		[ pick("SELECT a.id, r.name FROM %S%.accounts a JOIN %S%.regions r ON r.code = a.region WHERE a.score > " . rscore(),
				"SELECT r.zone, count(*), sum(a.balance) FROM %S%.accounts a JOIN %S%.regions r ON r.code = a.region GROUP BY r.zone",
				"SELECT a.id, r.zone FROM %S%.accounts a LEFT JOIN %S%.regions r ON r.code = a.region WHERE a.id IN (" . rids(5) . ")",
				"SELECT * FROM %S%.regions ORDER BY code",
				"SELECT k.k, r.name FROM %S%.ranged k JOIN %S%.regions r ON r.zone = k.n % 5 WHERE k.k < " . rk()), 0 ]
	},
	join_other => sub {
		[ pick("SELECT a.id, k.v FROM %S%.accounts a JOIN %S%.ranged k ON k.k = a.id WHERE a.id < " . rid(),
				"SELECT a.id, b.id FROM %S%.accounts a JOIN %S%.accounts b ON a.score = b.score WHERE a.id = " . rid(),
				"SELECT a.id, e.account_id FROM %S%.accounts a JOIN %S%.events e ON e.amount = a.score WHERE a.id < 40",
				"SELECT count(*) FROM %S%.accounts a, %S%.events e WHERE a.id = e.seq"), 0 ]
	},
	subquery => sub {
		[ pick("SELECT id FROM %S%.accounts WHERE id IN (SELECT account_id FROM %S%.events WHERE kind = 'refund')",
				"SELECT id FROM %S%.accounts a WHERE EXISTS (SELECT 1 FROM %S%.events e WHERE e.account_id = a.id AND e.amount > " . int(rand(400)) . ")",
				"SELECT id FROM %S%.accounts a WHERE NOT EXISTS (SELECT 1 FROM %S%.events e WHERE e.account_id = a.id)",
				"SELECT id, (SELECT count(*) FROM %S%.events e WHERE e.account_id = a.id) FROM %S%.accounts a WHERE a.id = " . rid(),
				"SELECT region, max(c) FROM (SELECT region, score, count(*) c FROM %S%.accounts GROUP BY region, score) q GROUP BY region",
				"SELECT id FROM %S%.accounts WHERE region IN (SELECT code FROM %S%.regions WHERE zone = 2)",
				"SELECT id FROM %S%.accounts WHERE score > (SELECT avg(score) FROM %S%.accounts)"), 0 ]
	},
	cte => sub {
		[ pick("WITH t AS (SELECT account_id, sum(amount) s FROM %S%.events GROUP BY account_id) SELECT a.id, t.s FROM %S%.accounts a JOIN t ON t.account_id = a.id WHERE t.s > " . int(rand(500)),
				"WITH x AS (SELECT * FROM %S%.accounts WHERE id = " . rid() . ") SELECT id, name FROM x",
				"WITH x AS MATERIALIZED (SELECT id, score FROM %S%.accounts WHERE score > " . rscore() . ") SELECT count(*), max(score) FROM x",
				"WITH r AS (SELECT code FROM %S%.regions WHERE zone = 1) SELECT count(*) FROM %S%.accounts WHERE region IN (SELECT code FROM r)"), 0 ]
	},
	expressions => sub {
		[ pick("SELECT id, balance * 2, upper(name), coalesce(score, -1), created + 1 FROM %S%.accounts WHERE id IN (" . rids(3) . ")",
				"SELECT id, CASE WHEN score > 25 THEN 'hi' ELSE 'lo' END FROM %S%.accounts WHERE id < " . rid(),
				"SELECT account_id * 10 + seq, abs(amount) FROM %S%.events WHERE account_id = " . rid()), 0 ]
	},
	text_key => sub {
		my $t = pick("'tag" . int(rand(130)) . "'", "''", "'a b'", "'ÄÖü'", "'Tag1'", "'TAG1'");
		[ pick("SELECT * FROM %S%.tags WHERE tag = $t",
				"SELECT tag, hits FROM %S%.tags WHERE tag IN ($t, 'tag" . int(rand(130)) . "', NULL)",
				"SELECT count(*), sum(hits) FROM %S%.tags WHERE tag LIKE 'tag1%'",
				"SELECT hits, count(*) FROM %S%.tags GROUP BY hits HAVING count(*) > 6",
				"SELECT t.tag, a.name FROM %S%.tags t JOIN %S%.accounts a ON a.id = t.account_id WHERE t.tag = $t",
				"SELECT tag FROM %S%.tags ORDER BY tag COLLATE \"C\" LIMIT 5"), 0 ]
	},
	pruning => sub {
		my $i = rid();
		[ pick("SELECT id FROM %S%.accounts WHERE id = $i.0",
				"SELECT id FROM %S%.accounts WHERE id = ${i}::bigint",
				"SELECT id FROM %S%.accounts WHERE id = '$i'",
				"SELECT id FROM %S%.accounts WHERE id::numeric = $i",
				"SELECT id FROM %S%.accounts WHERE id = 2147483648",
				"SELECT id FROM %S%.accounts WHERE id = $i AND id = " . rid(),
				"SELECT id FROM %S%.accounts WHERE id = $i OR id = " . rid(),
				"SELECT id FROM %S%.accounts WHERE id BETWEEN $i AND " . ($i + 5),
				"SELECT id FROM %S%.accounts WHERE id + 0 = $i",
				"SELECT id FROM %S%.accounts WHERE -id = -$i",
				"SELECT id FROM %S%.accounts WHERE id = ANY (ARRAY[$i, " . rid() . "])",
				"SELECT id FROM %S%.accounts WHERE id = $i LIMIT 0",
				"SELECT id, generate_series(1, 2) FROM %S%.accounts WHERE id = $i",
				"SELECT k FROM %S%.ranged WHERE k = 99.5",
				"SELECT k FROM %S%.ranged WHERE k < " . int(rand(120)) . " AND k > 95",
				"SELECT k FROM %S%.ranged WHERE k = -1",
				"SELECT k FROM %S%.ranged WHERE k IN (-5, 700, " . rk() . ")",
				"SELECT count(*) FROM %S%.ranged WHERE k >= 250 AND k < 260",
				"SELECT tag FROM %S%.tags WHERE tag = 'Tag1' COLLATE \"C\"",
				"SELECT tag FROM %S%.tags WHERE lower(tag) = 'tag1'",
				"SELECT tag FROM %S%.tags WHERE tag = 'tag1'::varchar"), 0 ]
	},
	agg_edge => sub {
		[ pick("SELECT avg(score), sum(score), min(name), max(created), count(*) FROM %S%.accounts WHERE id = 100000",
				"SELECT region, avg(balance) FROM %S%.accounts GROUP BY region HAVING avg(balance) > " . int(rand(600)),
				"SELECT region FROM %S%.accounts GROUP BY region ORDER BY sum(balance) DESC, region NULLS FIRST",
				"SELECT DISTINCT score FROM %S%.accounts ORDER BY score NULLS FIRST LIMIT 5",
				"SELECT count(*) FROM (SELECT id FROM %S%.accounts WHERE score > 10 ORDER BY id LIMIT 20) s",
				"SELECT max(balance) FILTER (WHERE region = 'eu'), count(*) FILTER (WHERE score IS NULL) FROM %S%.accounts",
				"SELECT string_agg(name, ',' ORDER BY name) FROM %S%.accounts WHERE id < 20",
				"SELECT array_agg(id ORDER BY id) FROM %S%.accounts WHERE score = " . rscore(),
				"SELECT bool_and(balance > 0), bool_or(score > 48), every(id > 0) FROM %S%.accounts",
				"SELECT stddev(score)::numeric(20,6), variance(balance)::numeric(30,6) FROM %S%.accounts",
				"SELECT count(*), count(DISTINCT kind), sum(DISTINCT amount) FROM %S%.events WHERE account_id < 100",
				"SELECT region, min(name), max(name) FROM %S%.accounts GROUP BY region",
				"SELECT created, count(*) FROM %S%.accounts GROUP BY created HAVING count(*) > 1 ORDER BY created LIMIT 3 OFFSET 1",
				"SELECT 1 FROM %S%.accounts HAVING count(*) > 10",
				"SELECT count(*) FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id AND e.seq = 1 WHERE a.region IN ('eu', 'us')"), 0 ]
	},
	setop => sub {
		[ pick("SELECT id FROM %S%.accounts WHERE id = " . rid() . " UNION ALL SELECT id FROM %S%.accounts WHERE id = " . rid(),
				"SELECT region FROM %S%.accounts UNION SELECT code FROM %S%.regions",
				"SELECT account_id FROM %S%.events WHERE kind = 'buy' INTERSECT SELECT id FROM %S%.accounts WHERE score < 10"), 0 ]
	},
	window => sub {
		[ pick("SELECT id, rank() OVER (ORDER BY balance, id) FROM %S%.accounts WHERE region = 'eu'",
				"SELECT account_id, seq, sum(amount) OVER (PARTITION BY account_id ORDER BY seq) FROM %S%.events WHERE account_id < 30"), 0 ]
	},
);

# session settings that change how values are read and printed: every
# query must mean on the shards what it means here
my @settings = (
	"SET DateStyle = 'SQL, DMY'", "SET DateStyle = 'German'", "SET DateStyle = 'Postgres, MDY'",
	"SET TimeZone = 'Asia/Kathmandu'", "SET TimeZone = 'America/St_Johns'",
	"SET IntervalStyle = 'sql_standard'", "SET extra_float_digits = -3",
	"SET datestyle = 'ISO, YMD'; SET TimeZone = 'Pacific/Chatham'");
my @setting_queries = (
	[ "SELECT count(*) FROM %S%.accounts WHERE created < '10/02/2024'", 0 ],
	[ "SELECT id, created FROM %S%.accounts WHERE created BETWEEN '03/04/2024' AND '08/05/2024'", 0 ],
	[ "SELECT id, created FROM %S%.accounts WHERE id = ID", 0 ],
	[ "SELECT count(*) FROM %S%.events WHERE at < '03/01/2024 12:00'", 0 ],
	[ "SELECT account_id, seq, at, at::timestamptz FROM %S%.events WHERE account_id = ID", 0 ],
	[ "SELECT count(*) FROM %S%.events WHERE at::timestamptz < '2024-01-20 00:00:00+00'", 0 ],
	[ "SELECT date_trunc('day', at::timestamptz)::text, count(*) FROM %S%.events GROUP BY 1", 0 ],
	[ "SELECT (at - timestamp '2024-01-01')::text, at::date FROM %S%.events WHERE account_id = ID", 0 ],
	[ "SELECT sum(weight * 1.1::float8)::text, avg(weight)::text FROM %S%.accounts", 0 ],
	[ "SELECT count(*) FROM %S%.events WHERE at - timestamp '2024-01-01' > interval '3 days 2 hours'", 0 ],
	[ "SELECT created::timestamptz::text FROM %S%.accounts WHERE id IN (ID, ID)", 0 ],
	[ "SELECT to_char(at, 'DD Mon YYYY HH24:MI') FROM %S%.events WHERE account_id = ID", 0 ]);

# check_settings($setting, @queries): run queries (random ones by default)
# under a setting
sub check_settings
{
	my ($setting, @queries) = @_;
	$setting //= pick(@settings);
	@queries = map { pick(@setting_queries) } 1 .. 3 unless @queries;
	for my $sess (@dist, $orac)
	{
		my $r = sq($sess, $setting);
		die "could not apply $setting: " . render($r) if $r->{err};
	}
	for my $q (@queries)
	{
		my ($sql, $ordered) = @$q;
		$sql =~ s/ID/rid()/ge;
		check_query('settings', "$sql -- after $setting", $ordered);
	}
	sq($_, 'RESET DateStyle; RESET TimeZone; RESET IntervalStyle; SET extra_float_digits = 0')
	  for @dist, $orac;
}

# prepared statements: [name, parameter types, sql with $n, parameter generator]
my @prepared = (
	[ 'int', 'SELECT * FROM %S%.accounts WHERE id = $1', sub { pick(rid(), rid(), rid(), 'NULL') } ],
	[ 'int, int', 'SELECT id, balance FROM %S%.accounts WHERE id IN ($1, $2)', sub { rid() . ', ' . pick(rid(), 'NULL') } ],
	[ 'int', 'SELECT seq, amount FROM %S%.events WHERE account_id = $1 AND amount > -50', sub { rid() } ],
	[ 'int', 'SELECT a.name, e.seq FROM %S%.accounts a JOIN %S%.events e ON e.account_id = a.id WHERE a.id = $1', sub { rid() } ],
	[ 'int', 'SELECT count(*), sum(balance) FROM %S%.accounts WHERE score > $1', sub { rscore() } ],
	[ 'int', 'SELECT k, v FROM %S%.ranged WHERE k = $1', sub { rk() } ],
	[ 'text', 'SELECT id FROM %S%.accounts WHERE region = $1', sub { rregion() } ],
	[ 'text', 'SELECT tag, hits FROM %S%.tags WHERE tag = $1', sub { pick("'tag" . int(rand(130)) . "'", "''", 'NULL') } ],
);

# run a read-only query on every node against the oracle
sub check_query
{
	my ($shape, $sql, $ordered) = @_;
	my $o = sq($orac, in_schema($sql, 'oracle'));
	die "the oracle failed on its own query: $sql\n" . render($o)
	  if $o->{err} && $o->{err} !~ /^(22|23)/;
	for my $i (0 .. $#dist)
	{
		my $d = sq($dist[$i], in_schema($sql, 'dist'));
		record($shape, $i + 1, $sql, $d, $o, same($d, $o, $ordered));
	}
}

sub check_prepared
{
	my ($p) = @_;
	my ($types, $sql, $gen) = @$p;
	my $mode = pick('auto', 'force_generic_plan', 'force_custom_plan');
	my $name = 'p' . $banner_seq;
	for my $s (@dist, $orac)
	{
		sq($s, "SET plan_cache_mode = $mode");
		sq($s, "PREPARE $name ($types) AS " . in_schema($sql, $s == $orac ? 'oracle' : 'dist'));
	}
	for (1 .. 7)
	{
		my $exec = "EXECUTE $name (" . $gen->() . ')';
		my $o = sq($orac, $exec);
		for my $i (0 .. $#dist)
		{
			my $d = sq($dist[$i], $exec);
			record("prepared_$mode", $i + 1, "$sql -- $exec", $d, $o, same($d, $o, 0));
		}
	}
	for my $s (@dist, $orac)
	{
		sq($s, "DEALLOCATE $name");
		sq($s, 'RESET plan_cache_mode');
	}
}

# --- DML: applied to dist from one node and to oracle, then compared ------
my $next_id = 1000;
my %dml = (
	update_point => sub { ["UPDATE %S%.accounts SET balance = balance + 1.25, score = coalesce(score, 0) + 1 WHERE id = " . rid() . " RETURNING id, balance, score", 'accounts'] },
	update_in => sub { ["UPDATE %S%.accounts SET weight = weight + 0.5 WHERE id IN (" . rids(4) . ") RETURNING id, weight", 'accounts'] },
	update_multi => sub { ["UPDATE %S%.accounts SET score = score - 1 WHERE score > " . (40 + int(rand(10))) . " RETURNING id, score", 'accounts'] },
	update_dist_column => sub { ["UPDATE %S%.accounts SET id = id + 5000 WHERE id = " . rid(), 'accounts'] },
	delete_point => sub { ["DELETE FROM %S%.events WHERE account_id = " . rid() . " AND seq = 1 RETURNING *", 'events'] },
	delete_multi => sub { ["DELETE FROM %S%.events WHERE amount < " . (int(rand(40)) - 100) . " RETURNING account_id, seq", 'events'] },
	insert_one => sub { my $i = $next_id++; ["INSERT INTO %S%.accounts VALUES ($i, 'new$i', " . rregion() . ", $i.5, " . rscore() . ", date '2024-06-01', 0.25) RETURNING *", 'accounts'] },
	insert_multi => sub {
		my @v = map { my $i = $next_id++; "($i, 'm$i', NULL, 1, NULL, date '2024-07-01', NULL)" } 1 .. 1 + int(rand(6));
		["INSERT INTO %S%.accounts VALUES " . join(', ', @v) . " RETURNING id", 'accounts']
	},
	upsert => sub {
		my $id = pick(rid(), $next_id++);
		["INSERT INTO %S%.accounts AS t VALUES ($id, 'up$id', 'us', 7.5, 3, date '2024-08-01', 1) ON CONFLICT (id) DO UPDATE SET balance = t.balance + excluded.balance, name = excluded.name RETURNING id, name, balance", 'accounts']
	},
	upsert_nothing => sub {
		my $id = pick(rid(), $next_id++);
		["INSERT INTO %S%.accounts VALUES ($id, 'nx$id', NULL, 0, NULL, date '2024-09-01', NULL) ON CONFLICT DO NOTHING RETURNING id", 'accounts']
	},
	insert_events => sub {
		my $a = rid();
		["INSERT INTO %S%.events VALUES ($a, " . (100 + $next_id++) . ", 'buy', 5, timestamp '2024-05-05') RETURNING account_id, seq", 'events']
	},
	insert_select => sub {
		my $off = 1000 + $next_id++;
		["INSERT INTO %S%.events SELECT account_id, seq + $off, kind, amount, at FROM %S%.events WHERE account_id = " . rid() . " AND seq < 100", 'events']
	},
	insert_duplicate => sub { ["INSERT INTO %S%.accounts VALUES (" . (1 + int(rand(300))) . ", 'dup', NULL, 0, NULL, date '2024-01-01', NULL)", 'accounts'] },
	update_range => sub { my $a = rk(); ["UPDATE %S%.ranged SET n = n + 1 WHERE k BETWEEN $a AND " . ($a + int(rand(150))) . " RETURNING k, n", 'ranged'] },
	insert_range => sub { my $k = 500 + int(rand(100)); ["INSERT INTO %S%.ranged VALUES ($k, 'new', 1) ON CONFLICT (k) DO UPDATE SET n = %S%.ranged.n + 1 RETURNING k, n", 'ranged'] },
	upsert_text => sub {
		my $t = pick("'tag" . int(rand(130)) . "'", "'new" . $next_id++ . "'");
		["INSERT INTO %S%.tags VALUES ($t, 1, 1) ON CONFLICT (tag) DO UPDATE SET hits = %S%.tags.hits + 1 RETURNING tag, hits", 'tags']
	},
	update_join_reference => sub { ["UPDATE %S%.accounts a SET score = r.zone FROM %S%.regions r WHERE r.code = a.region AND a.id < " . rid() . " RETURNING a.id, a.score", 'accounts'] },
	update_no_row => sub { ["UPDATE %S%.accounts SET score = 1 WHERE id = 2147483647 RETURNING id", 'accounts'] },
	delete_in_subquery => sub { ["DELETE FROM %S%.events WHERE account_id IN (SELECT id FROM %S%.accounts WHERE score = " . rscore() . ") RETURNING account_id, seq", 'events'] },
	insert_columns => sub { my $i = $next_id++; ["INSERT INTO %S%.accounts (id, name, balance, created) VALUES ($i, 'c$i', 3, date '2024-10-10') RETURNING id, region, score, weight", 'accounts'] },
	upsert_where => sub {
		my $id = rid();
		["INSERT INTO %S%.accounts AS t VALUES ($id, 'uw', 'ap', 1, 1, date '2024-11-01', 2) ON CONFLICT (id) DO UPDATE SET score = coalesce(t.score, 0) + 100 WHERE t.balance < 500 RETURNING id, score", 'accounts']
	},
	insert_select_limit => sub {
		my $off = 2000 + $next_id++;
		["INSERT INTO %S%.events SELECT account_id, seq + $off, kind, amount, at FROM %S%.events ORDER BY account_id, seq LIMIT 5 RETURNING account_id, seq", 'events']
	},
	update_reference => sub { ["UPDATE %S%.regions SET zone = zone + 1 WHERE code = " . pick("'eu'", "'ap'", "'af'") . " RETURNING code, zone", 'regions'] },
	delete_subquery => sub { ["DELETE FROM %S%.events e WHERE e.account_id = " . rid() . " AND e.amount > (SELECT min(amount) FROM %S%.events x WHERE x.account_id = e.account_id)", 'events'] },
);
my %keys = (accounts => 'id', events => 'account_id, seq', ranged => 'k', regions => 'code',
	tags => 'tag COLLATE "C"');

# compare the full contents of a table on every node with the oracle
sub check_contents
{
	my ($shape, $table) = @_;
	my $sql = "SELECT * FROM %S%.$table ORDER BY $keys{$table}";
	my $o = sq($orac, in_schema($sql, 'oracle'));
	my $ok = 1;
	for my $i (0 .. $#dist)
	{
		my $d = sq($dist[$i], in_schema($sql, 'dist'));
		my $v = same($d, $o, 1);
		$v = 'different' if $v eq 'unsupported';	# a full scan must work
		$ok &&= record("${shape}_contents", $i + 1, $sql, $d, $o, $v);
	}
	return $ok;
}

# run DML (a list of statements, in one transaction when more than one)
# on node $i and on the oracle; false when the data diverged
sub check_dml
{
	my ($shape, $stmts, $table, $i, $end) = @_;
	my $s = $dist[$i];
	my @d;
	sq($s, 'BEGIN') if $end;
	for my $st (@$stmts)
	{
		push @d, sq($s, in_schema($st, 'dist'));
		last if $d[-1]{err};
	}
	if (grep { $_->{err} && $_->{err} eq '0A000' } @d)
	{
		sq($s, 'ROLLBACK') if $end;
		$stats{$shape}{run}++;
		$stats{$shape}{unsupported}++;
		return check_contents($shape, $table);
	}
	sq($s, $d[-1]{err} ? 'ROLLBACK' : $end) if $end;
	if ($plain)
	{
		# plain tables are per node: make the same change on the others
		for my $other (grep { $_ != $s } @dist)
		{
			sq($other, 'BEGIN') if $end;
			sq($other, in_schema($_, 'dist')) for @$stmts;
			sq($other, $d[-1]{err} ? 'ROLLBACK' : $end) if $end;
		}
	}
	sq($orac, 'BEGIN') if $end;
	my $k = 0;
	my $ok = 1;
	for my $st (@$stmts)
	{
		last if $k > $#d;
		my $o = sq($orac, in_schema($st, 'oracle'));
		$ok &&= record($shape, $i + 1, $st, $d[$k], $o, same($d[$k], $o, 0));
		$k++;
		last if $o->{err};
	}
	sq($orac, ($d[-1]{err} || !$ok) ? 'ROLLBACK' : $end) if $end;
	return check_contents($shape, $table) && $ok;
}

# --- the run --------------------------------------------------------------
# every setting with every query once, then random shapes
check_settings($_, @setting_queries) for @settings;

my @shape_names = sort keys %shapes;
my @dml_names = sort keys %dml;
my $diverged = 0;
for my $q (1 .. $nqueries)
{
	my $r = rand();
	if ($r < 0.12)
	{
		check_prepared(pick(@prepared));
	}
	elsif ($r < 0.16)
	{
		check_settings(undef);
	}
	elsif ($r < 0.33 && $with_dml)
	{
		my $name = pick(@dml_names);
		my $node = int(rand(3));
		my ($sql, $table) = @{ $dml{$name}->() };
		if (rand() < 0.15)
		{
			# two statements in one transaction with reads between them
			# (each sees the transaction's own writes), then commit or roll back
			my ($sql2) = @{ $dml{$name}->() };
			my $end = pick('COMMIT', 'ROLLBACK');
			my $read = "SELECT count(*) FROM %S%.$table";
			my $read2 = "SELECT * FROM %S%.$table ORDER BY $keys{$table}";
			$diverged = !check_dml("txn_${name}_" . lc($end), [ $sql, $read, $sql2, $read2 ], $table, $node, $end);
		}
		else
		{
			$diverged = !check_dml($name, [$sql], $table, $node, undef);
		}
	}
	else
	{
		my $name = pick(@shape_names);
		my ($sql, $ordered) = @{ $shapes{$name}->() };
		check_query($name, $sql, $ordered);
	}
	last if $diverged || time - $t_start > 240;
}

$_->quit for @dist, $orac;

my $total = 0;
my $unsupported = 0;
for my $shape (sort keys %stats)
{
	my $st = $stats{$shape};
	$total += $st->{run};
	$unsupported += $st->{unsupported} // 0;
	note(sprintf('%-32s run %4d  equal %4d  unsupported (0A000) %4d  different %d',
			$shape, $st->{run}, $st->{equal} // 0, $st->{unsupported} // 0, $st->{different} // 0));
}
diag(sprintf('router oracle: %d comparisons over %d shapes, %d unsupported (0A000), %d wrong, %.0fs (seed %d)',
		$total, scalar(keys %stats), $unsupported, $nwrong, time - $t_start, $seed));
for my $shape (sort keys %stats)
{
	my $st = $stats{$shape};
	diag(sprintf('  %-40s %4d run, %4d 0A000, %4d wrong', $shape, $st->{run},
			$st->{unsupported} // 0, $st->{different} // 0))
	  if $st->{unsupported} || $st->{different};
}
ok($total >= $nqueries, "ran $total comparisons");
is($nwrong + ($failures[0] && $failures[0] =~ /^setup/ ? 1 : 0), 0, 'no wrong answer')
  or diag(join("\n\n", @failures));
ok(!$diverged, 'the data never diverged');
ok($mesh->no_prepared_xacts, 'nothing is left prepared');

done_testing();
