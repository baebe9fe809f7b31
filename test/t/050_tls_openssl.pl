# TLS certificates made with SQL and with the openssl CLI, both ways:
#  - a CLI-made chain (root -> intermediate -> leaf) verifies in SQL, and
#    certificate_info reads it as the CLI does;
#  - a SQL-made CA and node certificate verify with "openssl verify", for
#    TLS server and client use, and the key matches the certificate;
#  - the node then runs on its SQL-made certificates: TLS with client
#    certificates (hostssl ... cert), its own loopback connections with
#    sslmode=verify-full, check_certificates, and a rogue client is refused;
#  - wrong keys, expired certificates and the expiry warning;
#  - no private key text ever reaches the server log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $openssl = $ENV{OPENSSL} // 'openssl';
plan skip_all => 'openssl CLI not available'
  unless system("$openssl version >/dev/null 2>&1") == 0;

my $dir = PostgreSQL::Test::Utils::tempdir;

# run runs a command and returns its stdout; dies on failure
sub run
{
	my @cmd = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	die "command failed: @cmd\n$stderr" unless $ok;
	return $stdout;
}

sub write_file
{
	my ($path, $text, $mode) = @_;
	open(my $fh, '>', $path) or die "could not write $path: $!";
	print $fh $text;
	close $fh;
	chmod($mode // 0644, $path);
}

sub read_file
{
	my ($path) = @_;
	return PostgreSQL::Test::Utils::slurp_file($path);
}

# sql_quote makes a SQL string literal (the CLI-made certificates only:
# private keys are never put into statement text, see below)
sub sql_quote
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

my $node = PostgreSQL::Test::Cluster->new('tls1');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'mycelium'
mycelium.node_name = 'tls1'
mycelium.node_host = '127.0.0.1'
mycelium.ssl_mode = 'disable'
max_prepared_transactions = 10
wal_level = logical
listen_addresses = '127.0.0.1'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION mycelium');

# --- a CLI-made chain in SQL -------------------------------------------

my $ext = "$dir/ext.cnf";
write_file(
	$ext, q{
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:cli-leaf.example,IP:192.0.2.8
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
});

sub cli_cert
{
	my ($name, $cn, $issuer, $section, $days) = @_;
	run($openssl, 'req', '-new', '-newkey', 'ec', '-pkeyopt',
		'ec_paramgen_curve:P-256', '-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.csr", '-subj', "/CN=$cn");
	my @sign =
	  $issuer
	  ? ('-CA', "$dir/$issuer.crt", '-CAkey', "$dir/$issuer.key", '-CAcreateserial')
	  : ('-signkey', "$dir/$name.key");
	run($openssl, 'x509', '-req', '-in', "$dir/$name.csr", @sign,
		'-out', "$dir/$name.crt", '-days', $days // 365,
		'-extfile', $ext, '-extensions', $section);
	return read_file("$dir/$name.crt");
}

my $cli_root = cli_cert('cli_root', 'CLI Root', undef, 'root', 3650);
my $cli_int = cli_cert('cli_int', 'CLI Intermediate', 'cli_root', 'ca', 3650);
my $cli_leaf = cli_cert('cli_leaf', 'CLI Leaf', 'cli_int', 'leaf', 365);
like(run($openssl, 'verify', '-CAfile', "$dir/cli_root.crt", '-untrusted',
		"$dir/cli_int.crt", "$dir/cli_leaf.crt"),
	qr/OK/, 'the CLI chain verifies with openssl');

my ($q_root, $q_int, $q_leaf) = map { sql_quote($_) } ($cli_root, $cli_int, $cli_leaf);
is( $node->safe_psql('postgres',
		"SELECT valid, error IS NULL FROM mycelium.verify_certificate($q_leaf || $q_int, $q_root)"),
	't|t',
	'a CLI-made chain with its intermediate verifies in SQL');
is( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.verify_certificate($q_leaf, $q_root)"),
	'f|unable to get local issuer certificate',
	'without the intermediate it does not');
is( $node->safe_psql('postgres',
		"SELECT subject, issuer, dns_names, ip_addresses, is_ca FROM mycelium.certificate_info($q_leaf)"),
	'CN=CLI Leaf|CN=CLI Intermediate|{cli-leaf.example}|{192.0.2.8}|f',
	'certificate_info reads the CLI leaf');
is($node->safe_psql('postgres', "SELECT is_ca FROM mycelium.certificate_info($q_int)"),
	't', 'certificate_info sees the CLI intermediate is a CA');

my ($cli_fp) = run($openssl, 'x509', '-in', "$dir/cli_leaf.crt", '-noout',
	'-fingerprint', '-sha256') =~ /=(\S+)/;
my ($cli_serial) = run($openssl, 'x509', '-in', "$dir/cli_leaf.crt", '-noout', '-serial') =~ /=(\S+)/;
my ($cli_end) = run($openssl, 'x509', '-in', "$dir/cli_leaf.crt", '-noout', '-enddate',
	'-dateopt', 'iso_8601') =~ /=(.+)$/m;
$cli_end =~ s/Z$/+00/;
is( $node->safe_psql('postgres',
		"SELECT fingerprint_sha256 || ' ' || serial FROM mycelium.certificate_info($q_leaf)"),
	"$cli_fp $cli_serial",
	'fingerprint and serial match the CLI');
is( $node->safe_psql('postgres',
		"SELECT not_after = '$cli_end'::timestamptz FROM mycelium.certificate_info($q_leaf)"),
	't', 'not_after matches the CLI');

# a leaf of the CLI chain used as a CA
cli_cert('cli_rogue', 'CLI Rogue', 'cli_leaf', 'leaf', 30);
my $q_rogue = sql_quote(read_file("$dir/cli_rogue.crt"));
is( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.verify_certificate($q_rogue || $q_leaf || $q_int, $q_root)"),
	'f|invalid CA certificate',
	'a chain through a leaf used as a CA is refused');

# --- a SQL-made CA and node certificate with the CLI ------------------

# Keys stay in a table: statement text can be logged (log_statement,
# log_min_error_statement), so keys are never written into it.
$node->safe_psql(
	'postgres', q{
CREATE TABLE pki (name text PRIMARY KEY, certificate text, private_key text);
INSERT INTO pki SELECT 'ca', * FROM mycelium.generate_ca('Mycelium TAP CA');
INSERT INTO pki SELECT 'tls1', g.* FROM pki ca,
  mycelium.generate_certificate('tls1', ca.certificate, ca.private_key, 20,
    ARRAY['localhost'], ARRAY['127.0.0.1']) g WHERE ca.name = 'ca';
INSERT INTO pki SELECT 'foreign_ca', * FROM mycelium.generate_ca('Foreign CA');
INSERT INTO pki SELECT 'rogue', g.* FROM pki ca,
  mycelium.generate_certificate('tls1', ca.certificate, ca.private_key, 20,
    ARRAY['localhost'], ARRAY['127.0.0.1']) g WHERE ca.name = 'foreign_ca';
});

my %pem;
foreach my $name (qw(ca tls1 foreign_ca rogue))
{
	foreach my $col (qw(certificate private_key))
	{
		$pem{$name}{$col} = $node->safe_psql('postgres',
			"SELECT $col FROM pki WHERE name = '$name'") . "\n";
	}
}
my $pgdata = $node->data_dir;
write_file("$pgdata/mycelium_ca.crt", $pem{ca}{certificate});
write_file("$pgdata/tls1.crt", $pem{tls1}{certificate});
write_file("$pgdata/tls1.key", $pem{tls1}{private_key}, 0600);
write_file("$dir/rogue.crt", $pem{rogue}{certificate});
write_file("$dir/rogue.key", $pem{rogue}{private_key}, 0600);
write_file("$dir/foreign.key", $pem{foreign_ca}{private_key}, 0600);

like(run($openssl, 'verify', '-CAfile', "$pgdata/mycelium_ca.crt", "$pgdata/tls1.crt"),
	qr/: OK$/m, 'the SQL-made node certificate verifies with openssl verify');
foreach my $purpose (qw(sslserver sslclient))
{
	like(run($openssl, 'verify', '-purpose', $purpose, '-CAfile',
			"$pgdata/mycelium_ca.crt", "$pgdata/tls1.crt"),
		qr/: OK$/m, "... for purpose $purpose");
}
is(run($openssl, 'x509', '-in', "$pgdata/tls1.crt", '-noout', '-pubkey'),
	run($openssl, 'pkey', '-in', "$pgdata/tls1.key", '-pubout'),
	'the SQL-made key is the key of the SQL-made certificate');
my $ca_text = run($openssl, 'x509', '-in', "$pgdata/mycelium_ca.crt", '-noout', '-text');
like($ca_text, qr/Basic Constraints: critical\s+CA:TRUE/, 'the CA has CA:TRUE');
like($ca_text, qr/Subject Key Identifier/, 'and a subject key identifier');
like($ca_text, qr/Certificate Sign, CRL Sign/, 'the CA may sign certificates and CRLs');
like($ca_text, qr/prime256v1|P-256/, 'the CA key is EC P-256');
like($ca_text, qr/ecdsa-with-SHA256/, 'signed with SHA-256');
my $leaf_text = run($openssl, 'x509', '-in', "$pgdata/tls1.crt", '-noout', '-text');
like($leaf_text, qr/Basic Constraints: critical\s+CA:FALSE/, 'the node certificate is not a CA');
like($leaf_text, qr/Key Usage: critical\s+Digital Signature\s*\n/,
	'its key may only sign (EC keys do not encipher)');
like($leaf_text, qr/TLS Web Server Authentication, TLS Web Client Authentication/,
	'the node certificate is for TLS servers and clients');
like($leaf_text, qr/DNS:localhost, IP Address:127\.0\.0\.1/, 'with the requested SANs');
like($leaf_text, qr/Authority Key Identifier/, 'and an authority key identifier');
like($leaf_text, qr/Issuer: CN ?= ?Mycelium TAP CA/, 'issued by the CA');

# --- the node runs on its SQL-made certificates -----------------------

my $user = $node->safe_psql('postgres', 'SELECT current_user');
$node->append_conf(
	'postgresql.conf', qq{
ssl = on
ssl_cert_file = 'tls1.crt'
ssl_key_file = 'tls1.key'
ssl_ca_file = 'mycelium_ca.crt'
mycelium.ssl_mode = 'verify-full'
mycelium.ssl_ca_file = '$pgdata/mycelium_ca.crt'
mycelium.ssl_cert_file = '$pgdata/tls1.crt'
mycelium.ssl_key_file = '$pgdata/tls1.key'
});
write_file("$pgdata/pg_hba.conf",
	"local all all trust\nhostssl all all 127.0.0.1/32 cert map=mycelium\n");
write_file("$pgdata/pg_ident.conf", "mycelium tls1 $user\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('mycelium.ssl_mode') = 'verify-full'")
  or die 'the configuration was not reloaded';

my $tcp = "host=127.0.0.1 port=" . $node->port . " dbname=postgres user=$user";
my $client = "$tcp sslmode=verify-full sslrootcert=$pgdata/mycelium_ca.crt"
  . " sslcert=$pgdata/tls1.crt sslkey=$pgdata/tls1.key";
is($node->safe_psql('postgres', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
		connstr => $client),
	't', 'a client with the SQL-made certificate connects with verify-full');
is( $node->safe_psql('postgres',
		"SELECT success, result FROM mycelium.run_command_on_nodes("
		  . "'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')"),
	't|t', 'the node reaches itself over TLS with verify-full');

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT 1',
	connstr => "$tcp sslmode=require sslcert=$dir/rogue.crt sslkey=$dir/rogue.key");
isnt($ret, 0, 'a client certificate from a foreign CA is refused');
like($stderr, qr/certificate|SSL|alert/i, '... by the TLS handshake');
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT 1',
	connstr => "$tcp sslmode=require sslcert=/nonexistent sslkey=/nonexistent");
isnt($ret, 0, 'a client without a certificate is refused');

is( $node->safe_psql('postgres',
		"SELECT node_name, subject, valid, error IS NULL, days_left BETWEEN 18 AND 20 "
		  . "FROM mycelium.check_certificates()"),
	"tls1|CN=tls1|t|t|t\ntls1|CN=Mycelium TAP CA|t|t|f",
	'check_certificates reports the node certificate and the CA');

# expiry warning: the node certificate expires in 20 days, within 30
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT mycelium.check_certificate_expiry()');
like($stderr, qr/WARNING:  certificate "CN=tls1" in ".*tls1\.crt" expires in 1[89] days/,
	'the expiry check warns about the node certificate');
unlike($stderr, qr/Mycelium TAP CA/, 'but not about the CA, which has years left');
$node->safe_psql('postgres', 'ALTER SYSTEM SET mycelium.certificate_expiry_warning = \'7d\'; SELECT pg_reload_conf()');
$node->poll_query_until('postgres', "SELECT current_setting('mycelium.certificate_expiry_warning') = '7d'")
  or die 'the configuration was not reloaded';
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT mycelium.check_certificate_expiry()');
is($stderr, '', 'no warning with a 7 day window');

# --- broken configurations: reported, never raised -------------------

sub set_files
{
	my (%set) = @_;
	my $sql = join('; ', map { "ALTER SYSTEM SET mycelium.$_ = '$set{$_}'" } sort keys %set);
	$node->safe_psql('postgres', "$sql; SELECT pg_reload_conf()");
	my ($k) = sort keys %set;
	$node->poll_query_until('postgres', "SELECT current_setting('mycelium.$k') = '$set{$k}'")
	  or die 'the configuration was not reloaded';
}
set_files(ssl_key_file => "$dir/foreign.key");
is( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	"f|private key in \"$dir/foreign.key\" does not match the certificate",
	'a key that does not belong to the certificate is reported');
# the node cannot reach itself with that key any more: check_certificates
# reports the failed node instead of failing
like( $node->safe_psql('postgres',
		"SELECT node_name, valid, error FROM mycelium.check_certificates()"),
	qr/^tls1\|f\|.*(key|certificate)/s,
	'check_certificates reports a node it cannot reach with a row');

write_file("$dir/garbage.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600);
set_files(ssl_key_file => "$dir/garbage.key");
like( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	qr/^f\|could not parse private key file/, 'a malformed key file is reported');

write_file("$dir/open.key", $pem{tls1}{private_key}, 0644);
set_files(ssl_key_file => "$dir/open.key");
like( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	qr/^f\|private key file ".*open\.key" has group or world access/,
	'a key file libpq would refuse for its permissions is reported');

set_files(ssl_key_file => "$dir/missing.key");
like( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	qr/^f\|could not stat file ".*missing\.key": No such file/, 'a missing key file is reported');

# an expired certificate (the CLI can back-date; SQL refuses to)
write_file("$dir/mycelium_ca.key", $pem{ca}{private_key}, 0600);
# (the CA key is written to a file only for the CLI to sign with)
run($openssl, 'x509', '-req', '-in', "$dir/cli_leaf.csr", '-CA', "$pgdata/mycelium_ca.crt",
	'-CAkey', "$dir/mycelium_ca.key", '-CAcreateserial', '-out', "$dir/expired.crt",
	'-days', '-1', '-extfile', $ext, '-extensions', 'leaf');
set_files(ssl_cert_file => "$dir/expired.crt", ssl_key_file => "$dir/cli_leaf.key");
is( $node->safe_psql('postgres',
		"SELECT subject, valid, error, days_left < 0 FROM mycelium.local_certificate_status() LIMIT 1"),
	'CN=CLI Leaf|f|certificate has expired|t',
	'an expired certificate is reported');
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT mycelium.check_certificate_expiry()');
like($stderr, qr/WARNING:  certificate "CN=CLI Leaf" in ".*expired\.crt" expired at/,
	'the expiry check warns about the expired certificate');

set_files(ssl_cert_file => "$dir/cli_leaf.crt");
is( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	'f|unable to get local issuer certificate',
	'a certificate from a foreign CA is reported');

write_file("$dir/garbage.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
set_files(ssl_cert_file => "$dir/garbage.crt");
like( $node->safe_psql('postgres',
		"SELECT valid, error FROM mycelium.local_certificate_status() LIMIT 1"),
	qr/^f\|could not parse file ".*garbage\.crt": PEM block 1: /,
	'a malformed certificate file is reported');
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT mycelium.check_certificate_expiry()');
like($stderr, qr/WARNING:  could not check the expiry of mycelium\.ssl_cert_file/,
	'the expiry check warns about an unreadable file instead of failing');
is($ret, 0, '... and does not fail');

# --- errors with keys around never log them ---------------------------

$node->psql('postgres', q{SELECT * FROM pki ca, pki k,
  mycelium.generate_certificate('x', ca.certificate, k.private_key)
  WHERE ca.name = 'ca' AND k.name = 'foreign_ca'});
$node->psql('postgres', q{SELECT * FROM pki k,
  mycelium.generate_certificate('x', k.private_key, k.private_key) WHERE k.name = 'ca'});
$node->psql('postgres', q{SELECT * FROM pki k,
  mycelium.certificate_info(k.private_key) WHERE k.name = 'tls1'});
$node->psql('postgres', q{SELECT * FROM pki ca, pki k,
  mycelium.generate_certificate('x', ca.certificate, substr(k.private_key, 1, 120))
  WHERE ca.name = 'ca' AND k.name = 'ca'});
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');

my $log = read_file($node->logfile);
my $leaked = 0;
foreach my $name (keys %pem)
{
	foreach my $line (split /\n/, $pem{$name}{private_key})
	{
		next if $line =~ /^-----/ || length($line) < 16;
		$leaked++ if index($log, $line) >= 0;
	}
}
is($leaked, 0, 'no line of any private key appears in the server log');
unlike($log, qr/PRIVATE KEY-----\s*\n\s*[A-Za-z0-9+\/=]{16}/, 'no PEM private key block either');

$node->stop;
done_testing();
