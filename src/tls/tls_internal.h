/*-------------------------------------------------------------------------
 *
 * tls_internal.h
 *	  Helpers shared by the files of the tls/ subsystem (not for others).
 *
 * OpenSSL objects are malloc'd by OpenSSL, not palloc'd.  Every object a
 * function creates is registered with MyceliumTlsTrack right after it is
 * created; it is then freed when CurrentMemoryContext is reset or deleted,
 * which happens on every path out of the function, ERROR included.  Tracked
 * objects are never freed by hand.  Ownership of an object passed to an
 * OpenSSL call that takes its own reference (X509_STORE_add_cert) stays
 * with the tracker; calls that steal a reference get an object that is not
 * tracked.  Every SQL function starts with MyceliumTlsBegin, which
 * likewise empties OpenSSL's error queue on every way out.
 *
 * IDENTIFICATION
 *	  src/tls/tls_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_TLS_INTERNAL_H
#define MYCELIUM_TLS_INTERNAL_H

#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* the largest PEM text (argument or file) accepted */
#define MYCELIUM_TLS_MAX_INPUT (1024 * 1024)

/* kinds of OpenSSL object MyceliumTlsTrack knows how to free */
typedef enum MyceliumTlsObject
{
	TLS_OBJ_BIO,
	TLS_OBJ_X509,
	TLS_OBJ_PKEY,
	TLS_OBJ_X509_STACK,			/* the stack only, not its members */
	TLS_OBJ_STORE,
	TLS_OBJ_STORE_CTX,
	TLS_OBJ_NAME,
	TLS_OBJ_GENERAL_NAMES,		/* the stack and its members */
	TLS_OBJ_BIGNUM,
	TLS_OBJ_ASN1_INTEGER
} MyceliumTlsObject;

/* in tls/pem.c */
extern void MyceliumTlsBegin(void);
extern void *MyceliumTlsTrack(void *obj, MyceliumTlsObject kind, const char *what);
extern void MyceliumTlsFailed(const char *what) pg_attribute_noreturn();
extern char *MyceliumTlsErrors(void);
extern char *MyceliumTlsTextArg(FunctionCallInfo fcinfo, int argno, const char *what);
extern List *MyceliumTlsParseCerts(const char *pem, const char *what, char **error);
extern EVP_PKEY *MyceliumTlsParseKey(const char *pem, const char *what, char **error);
extern char *MyceliumTlsBioText(BIO *bio);
extern BIO *MyceliumTlsMemBio(bool secret);
extern char *MyceliumTlsReadFile(const char *path, char **error);

/* in tls/inspect.c */
extern char *MyceliumTlsNameText(const X509_NAME *name);
extern TimestampTz MyceliumTlsTimeToTimestamp(const ASN1_TIME *t);
extern bool MyceliumTlsIsCa(X509 *cert);

/* in tls/verify.c */
extern bool MyceliumTlsVerifyChain(X509 *leaf, List *untrusted, List *trusted,
								   time_t at, const char **reason);

#endif							/* MYCELIUM_TLS_INTERNAL_H */
