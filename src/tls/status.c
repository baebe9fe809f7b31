/*-------------------------------------------------------------------------
 *
 * status.c
 *	  This node's configured certificate files: status rows and the daily
 *	  expiry warning.
 *
 * The files are the ones node-to-node connections use: mycelium.ssl_cert_file
 * (this node's certificate, possibly followed by intermediates),
 * mycelium.ssl_key_file and mycelium.ssl_ca_file.  They are read fresh on
 * every call, as libpq reads them at every new connection, so what is
 * reported is what the next connection will present.
 *
 * Problems with the files are reported (status rows, WARNINGs), never
 * raised: a status check is most useful exactly when things are broken.
 * The key file is read only to compare its public half with the
 * certificate; its contents are wiped after parsing and never reported.
 *
 * mycelium.check_certificates, which asks every node, is SQL on top of
 * local_certificate_status (sql/parts/20_tls.sql).
 *
 * IDENTIFICATION
 *	  src/tls/status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "tls/tls.h"
#include "tls/tls_internal.h"

PG_FUNCTION_INFO_V1(mycelium_local_certificate_status);
PG_FUNCTION_INFO_V1(mycelium_check_certificate_expiry);

/* one row of local_certificate_status */
typedef struct CertRow
{
	char	   *subject;		/* NULL if no certificate could be read */
	TimestampTz not_after;
	bool		valid;
	const char *error;			/* NULL if valid */
} CertRow;

/*
 * load_certs reads and parses a configured certificate file; returns NIL
 * with *error set if the setting is empty or the file unusable.
 */
static List *
load_certs(const char *guc, const char *path, char **error)
{
	char	   *pem;
	List	   *certs;

	if (path == NULL || path[0] == '\0')
	{
		*error = psprintf("%s is not set", guc);
		return NIL;
	}
	if ((pem = MyceliumTlsReadFile(path, error)) == NULL)
		return NIL;
	certs = MyceliumTlsParseCerts(pem, psprintf("file \"%s\"", path), error);
	pfree(pem);
	return certs;
}

/*
 * key_file_too_open tells whether libpq would refuse a key file for its
 * permissions: it wants mode 0600 or less, or 0640 or less when the file
 * is owned by root (as it checks, a file owned by someone else is left to
 * the open to refuse).
 */
static bool
key_file_too_open(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return false;			/* reading it will say why */
	if (st.st_uid == geteuid())
		return (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
	if (st.st_uid == 0)
		return (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0;
	return false;
}

/*
 * check_key tells whether mycelium.ssl_key_file holds the private key of
 * cert, in a file libpq would accept; on failure *error says why, without
 * any key material.
 */
static bool
check_key(X509 *cert, char **error)
{
	const char *path = mycelium_ssl_key_file;
	char	   *pem;
	EVP_PKEY   *key;
	EVP_PKEY   *pub = X509_get0_pubkey(cert);

	if (path == NULL || path[0] == '\0')
	{
		*error = pstrdup("mycelium.ssl_key_file is not set");
		return false;
	}
	if (key_file_too_open(path))
	{
		*error = psprintf("private key file \"%s\" has group or world access; libpq requires mode 0600 or less", path);
		return false;
	}
	if ((pem = MyceliumTlsReadFile(path, error)) == NULL)
		return false;
	key = MyceliumTlsParseKey(pem, psprintf("private key file \"%s\"", path), error);
	explicit_bzero(pem, strlen(pem));
	pfree(pem);
	if (key == NULL)
		return false;
	if (pub == NULL || EVP_PKEY_eq(pub, key) != 1)
	{
		ERR_clear_error();
		*error = psprintf("private key in \"%s\" does not match the certificate", path);
		return false;
	}
	return true;
}

/*
 * node_row checks this node's certificate: readable, its key matches, and
 * it chains up to mycelium.ssl_ca_file now.  The first problem is the row's
 * error.
 */
static CertRow
node_row(void)
{
	CertRow		row = {NULL, 0, false, NULL};
	char	   *error = NULL;
	List	   *certs;
	List	   *cas;
	X509	   *leaf;
	const char *reason;

	certs = load_certs("mycelium.ssl_cert_file", mycelium_ssl_cert_file, &error);
	if (certs == NIL)
	{
		row.error = error;
		return row;
	}
	leaf = linitial(certs);
	row.subject = MyceliumTlsNameText(X509_get_subject_name(leaf));
	row.not_after = MyceliumTlsTimeToTimestamp(X509_get0_notAfter(leaf));
	if (!check_key(leaf, &error))
	{
		row.error = error;
		return row;
	}
	cas = load_certs("mycelium.ssl_ca_file", mycelium_ssl_ca_file, &error);
	if (cas == NIL)
	{
		row.error = error;
		return row;
	}
	row.valid = MyceliumTlsVerifyChain(leaf, list_delete_first(certs), cas,
									   time(NULL), &reason);
	row.error = reason;
	return row;
}

/*
 * ca_row describes one certificate of the CA file: valid if it is a CA
 * certificate within its validity period now.
 */
static CertRow
ca_row(X509 *ca)
{
	CertRow		row = {NULL, 0, false, NULL};

	row.subject = MyceliumTlsNameText(X509_get_subject_name(ca));
	row.not_after = MyceliumTlsTimeToTimestamp(X509_get0_notAfter(ca));
	if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0)
		row.error = X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED);
	else if (X509_cmp_current_time(X509_get0_notBefore(ca)) >= 0)
		row.error = X509_verify_cert_error_string(X509_V_ERR_CERT_NOT_YET_VALID);
	else if (!MyceliumTlsIsCa(ca))
		row.error = "not a CA certificate";
	else
		row.valid = true;
	return row;
}

/*
 * put_row adds a CertRow to the result, with days_left rounded down (so
 * negative once expired).
 */
static void
put_row(ReturnSetInfo *rsinfo, CertRow *row)
{
	Datum		values[6];
	bool		nulls[6] = {false};

	if (mycelium_node_name && mycelium_node_name[0])
		values[0] = CStringGetTextDatum(mycelium_node_name);
	else
		nulls[0] = true;
	if (row->subject)
	{
		TimestampTz now = GetCurrentTimestamp();
		int64		secs = (row->not_after - now) / USECS_PER_SEC;

		values[1] = CStringGetTextDatum(row->subject);
		values[2] = TimestampTzGetDatum(row->not_after);
		values[3] = Int32GetDatum((int32) (secs >= 0 ? secs / SECS_PER_DAY :
										   -((-secs + SECS_PER_DAY - 1) / SECS_PER_DAY)));
	}
	else
		nulls[1] = nulls[2] = nulls[3] = true;
	values[4] = BoolGetDatum(row->valid);
	if (row->error)
		values[5] = CStringGetTextDatum(row->error);
	else
		nulls[5] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * mycelium.local_certificate_status()
 *	 returns table(node_name text, subject text, not_after timestamptz,
 *				   days_left int, valid bool, error text)
 *
 * First row: this node's certificate (mycelium.ssl_cert_file), checked
 * against its key and the CA file.  Then one row per certificate of the CA
 * bundle, mycelium.ssl_ca_file, if it can be read.
 */
Datum
mycelium_local_certificate_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CertRow		row;
	char	   *error;
	List	   *cas;
	ListCell   *lc;

	MyceliumTlsBegin();
	InitMaterializedSRF(fcinfo, 0);
	row = node_row();
	put_row(rsinfo, &row);
	if (mycelium_ssl_ca_file && mycelium_ssl_ca_file[0])
	{
		cas = load_certs("mycelium.ssl_ca_file", mycelium_ssl_ca_file, &error);
		foreach(lc, cas)
		{
			row = ca_row(lfirst(lc));
			put_row(rsinfo, &row);
		}
	}
	ERR_clear_error();
	return (Datum) 0;
}

/*
 * warn_about_file logs a WARNING for each certificate of a configured file
 * that has expired or expires within mycelium.certificate_expiry_warning,
 * and for a file that cannot be read.
 */
static void
warn_about_file(const char *guc, const char *path)
{
	char	   *error = NULL;
	List	   *certs;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz horizon = TimestampTzPlusMilliseconds(now,
													  (int64) mycelium_certificate_expiry_warning_s * 1000);

	if (path == NULL || path[0] == '\0')
		return;
	certs = load_certs(guc, path, &error);
	if (certs == NIL)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not check the expiry of %s", guc),
				 errdetail_internal("%s", error)));
	foreach(lc, certs)
	{
		X509	   *cert = lfirst(lc);
		TimestampTz not_after = MyceliumTlsTimeToTimestamp(X509_get0_notAfter(cert));
		char	   *subject = MyceliumTlsNameText(X509_get_subject_name(cert));

		if (not_after <= now)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("certificate \"%s\" in \"%s\" expired at %s",
							subject, path, timestamptz_to_str(not_after)),
					 errhint("Issue a new certificate, replace the file and reload the configuration.")));
		else if (not_after <= horizon)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("certificate \"%s\" in \"%s\" expires in %d days, at %s",
							subject, path,
							(int) ((not_after - now) / USECS_PER_DAY),
							timestamptz_to_str(not_after)),
					 errhint("Issue a new certificate, replace the file and reload the configuration.")));
	}
}

/*
 * MyceliumTlsCheckExpiry logs a WARNING for each certificate of
 * mycelium.ssl_ca_file and mycelium.ssl_cert_file that has expired or
 * expires within mycelium.certificate_expiry_warning.  Meant to be called
 * once a day by the maintenance worker: it never throws, any ERROR on the
 * way is logged as a WARNING and swallowed, and it needs no transaction.
 */
void
MyceliumTlsCheckExpiry(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "mycelium certificate expiry check",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		MyceliumTlsBegin();
		warn_about_file("mycelium.ssl_ca_file", mycelium_ssl_ca_file);
		warn_about_file("mycelium.ssl_cert_file", mycelium_ssl_cert_file);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("could not check certificate expiry: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	ERR_clear_error();
}

/*
 * mycelium.check_certificate_expiry() returns void
 *
 * Runs the maintenance worker's daily expiry check now, in this session:
 * the WARNINGs go to the client as well as to the server log.
 */
Datum
mycelium_check_certificate_expiry(PG_FUNCTION_ARGS)
{
	MyceliumTlsCheckExpiry();
	PG_RETURN_VOID();
}
