# MyceliumMesh.pm
#	  The one shared helper of Mycelium's TAP tests: builds an N-node mesh of
#	  PostgreSQL::Test::Cluster nodes with the extension preloaded, TLS
#	  between the nodes (certificates made with the openssl CLI), and peer
#	  authentication by client certificate.
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
		certdir => PostgreSQL::Test::Utils::tempdir(),
	}, $class;
	make_ca($self->{certdir}, 'ca') if $self->{tls};
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
	  . "log_min_messages = log\n"
	  . "restart_after_crash = on\n";	# crash tests kill backends

	$conf .= "shared_preload_libraries = 'mycelium'\n" if $preload;
	$conf .= "mycelium.node_name = '$node_name'\n" if defined $node_name;
	if ($self->{tls})
	{
		make_ca($dir, $ca) unless -f "$dir/$ca.crt";
		make_node_cert($dir, $name, $ca);
		$conf .= "ssl = on\n"
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
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION mycelium')
	  if $o{extension} // 1;
	return $node;
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
