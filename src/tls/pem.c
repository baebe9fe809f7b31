/*-------------------------------------------------------------------------
 *
 * pem.c
 *	  PEM input and output, OpenSSL object lifetime and error text.
 *
 * Everything that turns user text or a configured file into OpenSSL
 * objects goes through here, so the input limits, the error codes and the
 * rule that key material never reaches a message live in one place.
 *
 * Lifetime: MyceliumTlsTrack ties an OpenSSL object to CurrentMemoryContext
 * with a reset callback.  A SQL function runs in a per-call (or per-query)
 * context that is reset when the call ends and deleted when an ERROR
 * aborts the transaction, so objects are freed on every path without a
 * PG_TRY block around each OpenSSL call.
 *
 * Error text: OpenSSL's error queue is relayed as "library: reason" pairs
 * only.  The free-form "data" part of queue entries is dropped, since
 * decoders may put input fragments there, and input may be a private key.
 *
 * IDENTIFICATION
 *	  src/tls/pem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "tls/tls_internal.h"

/* one tracked OpenSSL object; lives in the context it is tied to */
typedef struct TrackedObject
{
	MemoryContextCallback cb;
	void	   *obj;
	MyceliumTlsObject kind;
} TrackedObject;

/* how many OpenSSL error queue entries are relayed at most */
#define MAX_RELAYED_ERRORS 4

/*
 * free_tracked is the reset callback that frees one tracked object.  It
 * must not throw: the OpenSSL free functions never do.
 */
static void
free_tracked(void *arg)
{
	TrackedObject *t = (TrackedObject *) arg;

	switch (t->kind)
	{
		case TLS_OBJ_BIO:
			BIO_free(t->obj);
			break;
		case TLS_OBJ_X509:
			X509_free(t->obj);
			break;
		case TLS_OBJ_PKEY:
			EVP_PKEY_free(t->obj);
			break;
		case TLS_OBJ_X509_STACK:
			sk_X509_free(t->obj);
			break;
		case TLS_OBJ_STORE:
			X509_STORE_free(t->obj);
			break;
		case TLS_OBJ_STORE_CTX:
			X509_STORE_CTX_free(t->obj);
			break;
		case TLS_OBJ_NAME:
			X509_NAME_free(t->obj);
			break;
		case TLS_OBJ_GENERAL_NAMES:
			GENERAL_NAMES_free(t->obj);
			break;
		case TLS_OBJ_BIGNUM:
			BN_free(t->obj);
			break;
		case TLS_OBJ_ASN1_INTEGER:
			ASN1_INTEGER_free(t->obj);
			break;
	}
	t->obj = NULL;
}

/*
 * clear_error_queue is a reset callback that empties OpenSSL's error queue.
 */
static void
clear_error_queue(void *arg)
{
	ERR_clear_error();
}

/*
 * MyceliumTlsBegin starts a function that uses OpenSSL: it empties the
 * error queue now and again when CurrentMemoryContext is reset or deleted,
 * so that whatever path the function leaves by (an ERROR included), no
 * entry is left behind to confuse the next OpenSSL user in this process,
 * such as libpq reporting why a TLS connection failed.
 */
void
MyceliumTlsBegin(void)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	ERR_clear_error();
	cb->func = clear_error_queue;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
}

/*
 * MyceliumTlsTrack ties obj to CurrentMemoryContext so that it is freed
 * when that context is reset or deleted, and returns obj.
 *
 * A NULL obj means the OpenSSL call that should have made it failed: that
 * is reported as an ERROR naming what (e.g. "certificate"), with OpenSSL's
 * reason, so callers can write track(make(...)) without their own check.
 */
void *
MyceliumTlsTrack(void *obj, MyceliumTlsObject kind, const char *what)
{
	TrackedObject *t;

	if (obj == NULL)
		MyceliumTlsFailed(psprintf("create %s", what));
	t = MemoryContextAllocExtended(CurrentMemoryContext, sizeof(TrackedObject),
								   MCXT_ALLOC_NO_OOM);
	if (t == NULL)
	{
		TrackedObject tmp;

		tmp.obj = obj;
		tmp.kind = kind;
		free_tracked(&tmp);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	t->obj = obj;
	t->kind = kind;
	t->cb.func = free_tracked;
	t->cb.arg = t;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &t->cb);
	return obj;
}

/*
 * MyceliumTlsFailed reports a failed OpenSSL call that no input can cause
 * (out of memory, a broken installation): "could not <what>", with
 * OpenSSL's reasons as the detail.
 */
void
MyceliumTlsFailed(const char *what)
{
	char	   *detail = MyceliumTlsErrors();

	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not %s", what),
			 detail ? errdetail_internal("%s", detail) : 0));
}

/*
 * MyceliumTlsErrors empties OpenSSL's error queue of this thread and
 * returns its entries as "library: reason" text, or NULL if it was empty.
 */
char *
MyceliumTlsErrors(void)
{
	StringInfoData buf;
	unsigned long code;
	int			n = 0;

	initStringInfo(&buf);
	while ((code = ERR_get_error()) != 0)
	{
		const char *lib = ERR_lib_error_string(code);
		const char *reason = ERR_reason_error_string(code);

		if (n++ >= MAX_RELAYED_ERRORS)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, "; ");
		if (lib)
			appendStringInfo(&buf, "%s: ", lib);
		if (reason)
			appendStringInfoString(&buf, reason);
		else
			appendStringInfo(&buf, "error code %lu", code);
	}
	ERR_clear_error();
	if (buf.len == 0)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/*
 * MyceliumTlsTextArg returns text argument argno as a C string, refusing a
 * NULL and anything larger than MYCELIUM_TLS_MAX_INPUT.  what names the
 * argument in messages.
 */
char *
MyceliumTlsTextArg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	t = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(t) > MYCELIUM_TLS_MAX_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", what),
				 errdetail("It is %zu bytes; the limit is %d bytes.",
						   (size_t) VARSIZE_ANY_EXHDR(t), MYCELIUM_TLS_MAX_INPUT)));
	return text_to_cstring(t);
}

/*
 * refuse_password is OpenSSL's passphrase callback for every PEM read: it
 * records that a passphrase was asked for and refuses.  Without it OpenSSL
 * would prompt on the server's terminal.
 */
static int
refuse_password(char *buf, int size, int rwflag, void *userdata)
{
	*(bool *) userdata = true;
	return -1;
}

/*
 * parse_failed reports a parse failure: as an ERROR, or, when the caller
 * passed a non-NULL error (a status check that reports instead of
 * failing), as "message: detail" text in *error.  Never includes input.
 */
static void
parse_failed(char **error, int sqlstate, const char *msg, const char *detail,
			 const char *hint)
{
	if (error != NULL)
	{
		*error = detail ? psprintf("%s: %s", msg, detail) : pstrdup(msg);
		return;
	}
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg_internal("%s", msg),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * is_blank tells whether text is empty or only white space.
 */
static bool
is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char) *s))
			return false;
	return true;
}

/*
 * MyceliumTlsParseCerts parses every certificate of PEM text, in order,
 * into a List of tracked X509 objects (at least one).  Text outside PEM
 * blocks and blocks of other types are skipped, as OpenSSL does; a block
 * that does not decode (truncated base64, bad DER, missing END line) is a
 * failure, wherever it is.  what names the input in messages.
 *
 * Failures are ERRORs if error is NULL; otherwise NIL is returned with
 * *error set.
 */
List *
MyceliumTlsParseCerts(const char *pem, const char *what, char **error)
{
	BIO		   *bio;
	List	   *certs = NIL;
	bool		asked = false;
	unsigned long err;
	char	   *ossl;

	if (is_blank(pem))
	{
		parse_failed(error, ERRCODE_INVALID_PARAMETER_VALUE,
					 psprintf(_("%s must not be empty"), what), NULL, NULL);
		return NIL;
	}
	ERR_clear_error();
	bio = MyceliumTlsTrack(BIO_new_mem_buf(pem, -1), TLS_OBJ_BIO, "memory buffer");
	for (;;)
	{
		X509	   *cert = PEM_read_bio_X509(bio, NULL, refuse_password, &asked);

		if (cert == NULL)
			break;
		certs = lappend(certs, MyceliumTlsTrack(cert, TLS_OBJ_X509, "certificate"));
	}

	/* the loop always ends on an error; "no start line" means end of input */
	err = ERR_peek_last_error();
	if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)
	{
		ERR_clear_error();
		if (certs != NIL)
			return certs;
		parse_failed(error, ERRCODE_INVALID_TEXT_REPRESENTATION,
					 psprintf(_("%s has no \"BEGIN CERTIFICATE\" block"), what),
					 NULL, NULL);
		return NIL;
	}
	ossl = MyceliumTlsErrors();
	parse_failed(error, ERRCODE_INVALID_TEXT_REPRESENTATION,
				 psprintf(_("could not parse %s"), what),
				 ossl ? psprintf(_("PEM block %d: %s"), list_length(certs) + 1, ossl) :
				 psprintf(_("PEM block %d is invalid."), list_length(certs) + 1),
				 NULL);
	return NIL;
}

/*
 * MyceliumTlsParseKey parses the first private key of PEM text (PKCS#8 or
 * the traditional RSA/EC forms) into a tracked EVP_PKEY.  Encrypted keys
 * are refused, since there is nobody to type the passphrase.  Failures are
 * reported as by MyceliumTlsParseCerts; the key text never is.
 */
EVP_PKEY *
MyceliumTlsParseKey(const char *pem, const char *what, char **error)
{
	BIO		   *bio;
	EVP_PKEY   *key;
	bool		asked = false;
	char	   *detail;

	if (is_blank(pem))
	{
		parse_failed(error, ERRCODE_INVALID_PARAMETER_VALUE,
					 psprintf(_("%s must not be empty"), what), NULL, NULL);
		return NULL;
	}
	ERR_clear_error();
	bio = MyceliumTlsTrack(BIO_new_mem_buf(pem, -1), TLS_OBJ_BIO, "memory buffer");
	key = PEM_read_bio_PrivateKey(bio, NULL, refuse_password, &asked);
	if (key != NULL)
	{
		ERR_clear_error();
		return MyceliumTlsTrack(key, TLS_OBJ_PKEY, "private key");
	}
	detail = MyceliumTlsErrors();
	if (asked)
		parse_failed(error, ERRCODE_INVALID_PARAMETER_VALUE,
					 psprintf(_("%s is encrypted"), what), NULL,
					 _("Decrypt it first, for example with \"openssl pkey\"; passphrases are not supported."));
	else
		parse_failed(error, ERRCODE_INVALID_TEXT_REPRESENTATION,
					 psprintf(_("could not parse %s"), what), detail,
					 _("A private key starts with \"-----BEGIN PRIVATE KEY-----\"."));
	return NULL;
}

/*
 * MyceliumTlsMemBio returns a new tracked memory BIO to write PEM into.
 * A secret one (for private keys) uses OpenSSL's secure heap variant,
 * which clears its memory when freed.
 */
BIO *
MyceliumTlsMemBio(bool secret)
{
	return MyceliumTlsTrack(BIO_new(secret ? BIO_s_secmem() : BIO_s_mem()),
							TLS_OBJ_BIO, "memory buffer");
}

/*
 * MyceliumTlsBioText returns a palloc'd copy of what was written to a
 * memory BIO.
 */
char *
MyceliumTlsBioText(BIO *bio)
{
	char	   *data;
	long		len = BIO_get_mem_data(bio, &data);

	if (len < 0)
		elog(ERROR, "could not read memory BIO");
	return pnstrdup(data, len);
}

/*
 * MyceliumTlsReadFile reads a configured PEM file (the settings only take
 * absolute paths).  Returns the
 * palloc'd contents, or NULL with *error set: a missing or unreadable file
 * is something to report in a status row or a log line, not an ERROR.
 */
char *
MyceliumTlsReadFile(const char *path, char **error)
{
	struct stat st;
	FILE	   *f;
	char	   *buf;
	size_t		n;

	*error = NULL;
	if (stat(path, &st) != 0)
	{
		*error = psprintf("could not stat file \"%s\": %m", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
	{
		*error = psprintf("\"%s\" is not a regular file", path);
		return NULL;
	}
	if (st.st_size > MYCELIUM_TLS_MAX_INPUT)
	{
		*error = psprintf("file \"%s\" is too large (%lld bytes; the limit is %d bytes)",
						  path, (long long) st.st_size, MYCELIUM_TLS_MAX_INPUT);
		return NULL;
	}
	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		*error = psprintf("could not open file \"%s\": %m", path);
		return NULL;
	}
	buf = palloc(st.st_size + 1);
	n = fread(buf, 1, st.st_size, f);
	if (ferror(f))
	{
		*error = psprintf("could not read file \"%s\": %m", path);
		FreeFile(f);
		pfree(buf);
		return NULL;
	}
	FreeFile(f);
	buf[n] = '\0';
	return buf;
}
