/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  mycelium.verify_certificate: full chain validation at a given time.
 *
 * The chain is built and checked by OpenSSL (X509_STORE_CTX), the way
 * libpq checks a peer with sslmode=verify-ca: the CA bundle holds the
 * trust anchors, which must be self-signed roots (no partial chains), and
 * intermediates may follow the leaf in the certificate text.  No purpose
 * is imposed, since a node certificate serves as both TLS client and
 * server; host names are libpq's business (verify-full), not checked here.
 *
 * An invalid chain is an answer (valid = false, OpenSSL's reason), not an
 * ERROR; text that is not a certificate at all is an ERROR.
 *
 * IDENTIFICATION
 *	  src/tls/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "funcapi.h"
#include "utils/builtins.h"

#include "tls/tls_internal.h"

PG_FUNCTION_INFO_V1(mycelium_verify_certificate);

/* 0001-01-01 00:00:00 and 9999-12-31 23:59:59 UTC, the range of ASN.1 times */
#define MIN_VERIFY_TIME ((time_t) INT64CONST(-62135596800))
#define MAX_VERIFY_TIME ((time_t) INT64CONST(253402300799))

/*
 * MyceliumTlsVerifyChain checks that leaf chains up to one of the trusted
 * certificates, through the untrusted ones if needed, with every
 * certificate valid at time at.  Returns true, or false with *reason set
 * to OpenSSL's static description of the first problem found.
 */
bool
MyceliumTlsVerifyChain(X509 *leaf, List *untrusted, List *trusted,
					   time_t at, const char **reason)
{
	X509_STORE *store;
	X509_STORE_CTX *ctx;
	STACK_OF(X509) *chain;
	ListCell   *lc;
	int			rc;

	ERR_clear_error();
	store = MyceliumTlsTrack(X509_STORE_new(), TLS_OBJ_STORE, "certificate store");
	foreach(lc, trusted)
		if (!X509_STORE_add_cert(store, lfirst(lc)))
		{
			/* a duplicate in the bundle is harmless; anything else is not */
			unsigned long err = ERR_peek_last_error();

			if (ERR_GET_REASON(err) != X509_R_CERT_ALREADY_IN_HASH_TABLE)
				MyceliumTlsFailed("add a CA certificate to the store");
			ERR_clear_error();
		}
	chain = MyceliumTlsTrack(sk_X509_new_null(), TLS_OBJ_X509_STACK, "certificate list");
	foreach(lc, untrusted)
		if (!sk_X509_push(chain, lfirst(lc)))
			MyceliumTlsFailed("build the list of intermediate certificates");

	ctx = MyceliumTlsTrack(X509_STORE_CTX_new(), TLS_OBJ_STORE_CTX, "verification context");
	if (!X509_STORE_CTX_init(ctx, store, leaf, chain))
		MyceliumTlsFailed("initialize the verification context");
	X509_STORE_CTX_set_time(ctx, 0, at);

	rc = X509_verify_cert(ctx);
	if (rc < 0)
		MyceliumTlsFailed("verify the certificate chain");
	*reason = rc == 1 ? NULL :
		X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
	ERR_clear_error();
	return rc == 1;
}

/*
 * mycelium.verify_certificate(certificate text, ca_bundle text,
 *							   at timestamptz DEFAULT now())
 *	 returns table(valid bool, error text)
 */
Datum
mycelium_verify_certificate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *certs;
	List	   *bundle;
	X509	   *leaf;
	TimestampTz at;
	const char *reason;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	MyceliumTlsBegin();
	InitMaterializedSRF(fcinfo, 0);
	certs = MyceliumTlsParseCerts(MyceliumTlsTextArg(fcinfo, 0, "certificate"),
								  "certificate", NULL);
	bundle = MyceliumTlsParseCerts(MyceliumTlsTextArg(fcinfo, 1, "CA bundle"),
								   "CA bundle", NULL);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("verification time must not be null")));
	at = PG_GETARG_TIMESTAMPTZ(2);
	if (TIMESTAMP_NOT_FINITE(at) ||
		timestamptz_to_time_t(at) < MIN_VERIFY_TIME ||
		timestamptz_to_time_t(at) > MAX_VERIFY_TIME)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("verification time is out of range"),
				 errdetail("Certificates can only express times from year 1 to year 9999.")));

	leaf = linitial(certs);
	certs = list_delete_first(certs);	/* the rest: intermediates */
	values[0] = BoolGetDatum(MyceliumTlsVerifyChain(leaf, certs, bundle,
													timestamptz_to_time_t(at),
													&reason));
	if (reason)
		values[1] = CStringGetTextDatum(reason);
	else
		nulls[1] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
