# MyceliumMesh.pm
#	  The one shared helper of Mycelium's TAP tests: builds an N-node mesh of
#	  PostgreSQL::Test::Cluster nodes with the extension preloaded, TLS
#	  between the nodes, and peer authentication by client certificate.
#	  Certificates are made with Mycelium's own SQL functions on the first
#	  node (in a separate database "pki"), or with the openssl CLI when
#	  asked (certs => 'openssl').
#
#	  use MyceliumMesh;
#	  my $mesh = MyceliumMesh->new(nodes => 3);         # started and joined
#	  my $mesh = MyceliumMesh->new(nodes => 3, join => 0, conf => "...");
#	  $mesh->node(1)->safe_psql('postgres', '...');     # nodes are 1-based
#	  my $extra = $mesh->new_node('n9', ca => 'rogue'); # not joined
#
# IDENTIFICATION
#	  test/perl/MyceliumMesh.pm

package MyceliumMesh;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The openssl CLI writes into $dir: a CA (ca.crt/ca.key) per name.
sub _openssl
{
	my @cmd = ('openssl', @_);
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr)
	  or die "openssl @_ failed: $stderr";
	return $stdout;
}

# make_ca($dir, $name): self-signed EC P-256 CA $dir/$name.crt + .key
sub make_ca
{
	my ($dir, $name) = @_;
	_openssl('req', '-new', '-x509', '-days', '30', '-nodes',
		'-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-subj', "/CN=mycelium test CA $name",
		'-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,keyCertSign,cRLSign',
		'-keyout', "$dir/$name.key", '-out', "$dir/$name.crt");
	chmod 0600, "$dir/$name.key";
}

# make_node_cert($dir, $node_name, $ca): node certificate signed by CA $ca,
# valid for 127.0.0.1 and localhost, usable as TLS server and client.
sub make_node_cert
{
	my ($dir, $name, $ca) = @_;
	my $ext = "$dir/$name.ext";
	open my $fh, '>', $ext or die "could not write $ext: $!";
	print $fh "basicConstraints=CA:FALSE\n"
	  . "keyUsage=critical,digitalSignature,keyEncipherment\n"
	  . "extendedKeyUsage=serverAuth,clientAuth\n"
	  . "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
	close $fh;
	_openssl('req', '-new', '-nodes',
		'-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		'-subj', "/CN=$name", '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.csr");
	_openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.crt",
		'-CAkey', "$dir/$ca.key", '-CAcreateserial', '-days', '30',
		'-extfile', $ext, '-out', "$dir/$name.crt");
	chmod 0600, "$dir/$name.key";
}

# new(nodes => N, join => 1, tls => 1, conf => '...'): start N nodes n1..nN
# and, unless join => 0, add n2..nN to the mesh from n1.
sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		nodes => [],
		tls => $opts{tls} // 1,
		conf => $opts{conf} // '',
		certs => $opts{certs} // 'sql',
		certdir => PostgreSQL::Test::Utils::tempdir(),
	}, $class;
	for my $i (1 .. ($opts{nodes} // 3))
	{
		push @{ $self->{nodes} }, $self->new_node("n$i");
	}
	$self->join_all unless defined $opts{join} && !$opts{join};
	return $self;
}

# node($i): the i-th node (1-based)
sub node
{
	my ($self, $i) = @_;
	return $self->{nodes}[ $i - 1 ];
}

# nodes: all nodes of the mesh
sub nodes
{
	my ($self) = @_;
	return @{ $self->{nodes} };
}

# new_node($name, ca => 'ca', preload => 1, extension => 1, node_name => $name,
#          conf => '...'): an initialised, started node outside the mesh.
sub new_node
{
	my ($self, $name, %o) = @_;
	my $dir = $self->{certdir};
	my $ca = $o{ca} // 'ca';
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $node_name = exists $o{node_name} ? $o{node_name} : $name;
	my $preload = $o{preload} // 1;

	$node->init(allows_streaming => 'logical');
	my $conf = "listen_addresses = '127.0.0.1'\n"
	  . "max_connections = 40\n"
	  . "max_prepared_transactions = 40\n"
	  . "track_commit_timestamp = on\n"
	  . "max_worker_processes = 16\n"
	  . "mycelium.node_host = '127.0.0.1'\n"
	  . "mycelium.connect_timeout = '2s'\n"
	  . "mycelium.heartbeat_interval = '200ms'\n"
	  . "mycelium.peer_timeout = '2s'\n"
	  . "restart_after_crash = on\n";	# crash tests kill backends

	$conf .= "shared_preload_libraries = 'mycelium'\n" if $preload;
	$conf .= "mycelium.node_name = '$node_name'\n" if defined $node_name;
	my $tls_conf = '';
	if ($self->{tls})
	{
		$tls_conf = "ssl = on\n"
		  . "ssl_cert_file = '$dir/$name.crt'\n"
		  . "ssl_key_file = '$dir/$name.key'\n"
		  . "ssl_ca_file = '$dir/$ca.crt'\n"
		  . "mycelium.ssl_mode = 'verify-full'\n"
		  . "mycelium.ssl_ca_file = '$dir/$ca.crt'\n"
		  . "mycelium.ssl_cert_file = '$dir/$name.crt'\n"
		  . "mycelium.ssl_key_file = '$dir/$name.key'\n";
		# peers authenticate with their node certificate; any node's
		# certificate may act as the cluster's roles (pg_ident map)
		$node->append_conf('pg_hba.conf',
			"hostssl all all 127.0.0.1/32 cert map=mycelium\n");
		my $su = (getpwuid($<))[0];
		$node->append_conf('pg_ident.conf', "mycelium /^n[0-9]+\$ $su\n");
	}
	else
	{
		$conf .= "mycelium.ssl_mode = 'disable'\n";
		$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\n");
	}
	$node->append_conf('postgresql.conf', $conf . $self->{conf} . ($o{conf} // ''));
	if ($self->{tls} && $self->{certs} eq 'sql' && !$self->{pki})
	{
		# the first node makes every certificate: start it without TLS
		# to make its own, then turn TLS on
		$node->start;
		$node->safe_psql('postgres', 'CREATE DATABASE pki');
		$node->safe_psql('pki', 'CREATE EXTENSION mycelium; '
			  . 'CREATE TABLE pki (name text PRIMARY KEY, certificate text, private_key text)');
		$self->{pki} = $node;
		$self->_make_cert($name, $ca);
		$node->append_conf('postgresql.conf', $tls_conf);
		$node->restart;
	}
	else
	{
		$self->_make_cert($name, $ca) if $self->{tls};
		$node->append_conf('postgresql.conf', $tls_conf);
		$node->start;
	}
	$node->safe_psql('postgres', 'CREATE EXTENSION mycelium')
	  if $o{extension} // 1;
	return $node;
}

# _write_file($path, $text, $mode)
sub _write_file
{
	my ($path, $text, $mode) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh "$text\n";
	close $fh;
	chmod $mode, $path;
}

# _make_cert($name, $ca): the node certificate of $name signed by CA $ca,
# written to certdir, made with the openssl CLI or with
# mycelium.generate_ca/generate_certificate on the pki node.  Keys are
# passed by subquery, never as literals in a statement.
sub _make_cert
{
	my ($self, $name, $ca) = @_;
	my $dir = $self->{certdir};
	if ($self->{certs} eq 'openssl')
	{
		make_ca($dir, $ca) unless -f "$dir/$ca.crt";
		make_node_cert($dir, $name, $ca);
		return;
	}
	my $pki = $self->{pki};
	for my $pair ([ $ca, "SELECT '$ca', * FROM mycelium.generate_ca('mycelium test CA $ca', 30)" ],
		[ $name,
			"SELECT '$name', * FROM mycelium.generate_certificate('$name', "
			  . "(SELECT certificate FROM pki WHERE name = '$ca'), "
			  . "(SELECT private_key FROM pki WHERE name = '$ca'), 30, "
			  . "ARRAY['localhost'], ARRAY['127.0.0.1'])" ])
	{
		my ($who, $sql) = @$pair;
		next if -f "$dir/$who.crt";
		$pki->safe_psql('pki', "INSERT INTO pki $sql");
		_write_file("$dir/$who.crt",
			$pki->safe_psql('pki', "SELECT certificate FROM pki WHERE name = '$who'"), 0644);
		_write_file("$dir/$who.key",
			$pki->safe_psql('pki', "SELECT private_key FROM pki WHERE name = '$who'"), 0600);
	}
}

# join_all: add every node but the first from the first.
sub join_all
{
	my ($self) = @_;
	my $first = $self->node(1);
	for my $n (@{ $self->{nodes} }[ 1 .. $#{ $self->{nodes} } ])
	{
		$first->safe_psql('postgres',
			"SELECT mycelium.add_node('" . $n->name . "', '127.0.0.1', " . $n->port . ")");
	}
}

# query_all($sql): { node name => result } of $sql on every node
sub query_all
{
	my ($self, $sql) = @_;
	my %r;
	$r{ $_->name } = $_->safe_psql('postgres', $sql) for $self->nodes;
	return \%r;
}

# make_accounts: on node 1, the range-distributed table acct (id, bal)
# with ids 0-99 on n2 and 100-199 on n3, rows 1 and 101 at 1000 (the
# transactions tests' bank); returns { n2 => shard name, n3 => shard name }
sub make_accounts
{
	my ($self) = @_;
	my $n1 = $self->node(1);
	$n1->safe_psql('postgres', q{
		CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL);
		SELECT mycelium.create_distributed_table('acct', 'id', 'range');
		SELECT mycelium.add_range_shard('acct', '0', '100', 'n2'), mycelium.add_range_shard('acct', '100', '200', 'n3');
		INSERT INTO acct VALUES (1, 1000), (101, 1000);
	});
	my %shards = map {
		$_ => $n1->safe_psql('postgres',
			"SELECT shard_name FROM mycelium.shards WHERE table_name = 'acct'::regclass AND node_name = '$_'")
	} qw(n2 n3);
	return \%shards;
}

# transfer_sql($amount, $prefix): $prefix, then one transaction moving
# $amount from acct row 1 (on n2) to row 101 (on n3)
sub transfer_sql
{
	my ($amount, $prefix) = @_;
	$prefix //= '';
	return "$prefix BEGIN; UPDATE acct SET bal = bal - $amount WHERE id = 1; "
	  . "UPDATE acct SET bal = bal + $amount WHERE id = 101; COMMIT;";
}

# no_prepared_xacts: true when no node holds a prepared transaction
sub no_prepared_xacts
{
	my ($self, @extra) = @_;
	for my $n ($self->nodes, @extra)
	{
		return 0
		  if $n->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') ne '0';
	}
	return 1;
}

1;
