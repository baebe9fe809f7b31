/*-------------------------------------------------------------------------
 *
 * readahead.c
 *	  TLS read-ahead on the serving side of node-to-node connections.
 *
 * Without read-ahead OpenSSL reads every TLS record with two recv() calls
 * (its 5-byte header, then its body).  A backend serving a peer's routed
 * statements receives one small record per statement, so half of its
 * reads are record headers.  With read-ahead on, OpenSSL asks the socket
 * for as much as its buffer holds and takes the header and body in one
 * call.
 *
 * This is safe on the server side because PostgreSQL's backend always
 * calls SSL_read before it waits on the socket (secure_read waits only
 * after SSL_read answered "want read"), so bytes OpenSSL has buffered are
 * never left unread while the backend sleeps.  It is not done on the
 * client side (libpq): libpq's own waits look at SSL_pending only, which
 * does not count unprocessed read-ahead bytes, and could sleep with a
 * reply already buffered.  Replication connections are left alone too;
 * walstream.c handles its client side itself.
 *
 * The ClientAuthentication hook turns it on after authentication, for
 * TLS sessions whose application_name says a mycelium node opened them.
 *
 * IDENTIFICATION
 *	  src/transport/readahead.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/*
 * Port keeps its layout without GSSAPI (its gss member stays a pointer, for
 * extensions' sake), and the GSSAPI headers are not always installed.
 */
#undef ENABLE_GSS
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "replication/walsender.h"

#ifdef USE_OPENSSL
#include <openssl/ssl.h>
#endif

#include "transport/transport.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

/*
 * read_ahead_for_peers enables read-ahead on an authenticated TLS session
 * opened by a mycelium node's connection layer.
 */
static void
read_ahead_for_peers(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
#ifdef USE_OPENSSL
	if (status == STATUS_OK && port->ssl_in_use && port->ssl != NULL && !am_walsender &&
		port->application_name != NULL &&
		strcmp(port->application_name, MYCELIUM_CONN_APPNAME) == 0)
		SSL_set_read_ahead((SSL *) port->ssl, 1);
#endif
}

/*
 * MyceliumInstallReadAheadHook chains the ClientAuthentication hook; called
 * from _PG_init when preloaded.
 */
void
MyceliumInstallReadAheadHook(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = read_ahead_for_peers;
}
