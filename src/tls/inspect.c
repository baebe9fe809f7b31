/*-------------------------------------------------------------------------
 *
 * inspect.c
 *	  mycelium.certificate_info: what a certificate says about itself.
 *
 * Also home of the conversions shared by the other tls/ files: names as
 * RFC 2253 text, ASN.1 times as timestamptz, and "is this a CA".
 *
 * IDENTIFICATION
 *	  src/tls/inspect.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"

#include "tls/tls_internal.h"

PG_FUNCTION_INFO_V1(mycelium_certificate_info);

/*
 * MyceliumTlsNameText returns a distinguished name as RFC 2253 text
 * ("CN=node1,O=Example"), in the database encoding.  Non-ASCII characters
 * are kept (as UTF-8 converted to the database encoding) instead of being
 * escaped as \XX, so a CN reads back the way it was given.
 */
char *
MyceliumTlsNameText(const X509_NAME *name)
{
	BIO		   *bio = MyceliumTlsMemBio(false);
	char	   *utf8;

	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not format a distinguished name")));
	utf8 = MyceliumTlsBioText(bio);
	if (!pg_verify_mbstr(PG_UTF8, utf8, strlen(utf8), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("certificate name is not valid UTF-8")));
	return pg_any_to_server(utf8, strlen(utf8), PG_UTF8);
}

/*
 * MyceliumTlsTimeToTimestamp converts a certificate time (UTCTime or
 * GeneralizedTime, always UTC) to timestamptz.
 */
TimestampTz
MyceliumTlsTimeToTimestamp(const ASN1_TIME *t)
{
	struct tm	tm;
	struct pg_tm ptm;
	TimestampTz result;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("certificate has an invalid validity time")));
	memset(&ptm, 0, sizeof(ptm));
	ptm.tm_year = tm.tm_year + 1900;
	ptm.tm_mon = tm.tm_mon + 1;
	ptm.tm_mday = tm.tm_mday;
	ptm.tm_hour = tm.tm_hour;
	ptm.tm_min = tm.tm_min;
	ptm.tm_sec = tm.tm_sec;
	if (tm2timestamp(&ptm, 0, NULL, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("certificate validity time is out of range")));
	return result;
}

/*
 * MyceliumTlsIsCa tells whether a certificate may sign others: it has
 * basicConstraints CA:TRUE and, if it has a keyUsage, keyCertSign.  (Old
 * v1 roots without extensions, which OpenSSL still trusts as anchors, are
 * not CAs by this definition: Mycelium never issues from one.)
 */
bool
MyceliumTlsIsCa(X509 *cert)
{
	uint32_t	flags = X509_get_extension_flags(cert);

	if (flags & EXFLAG_INVALID)
		return false;
	if (!(flags & EXFLAG_CA))
		return false;
	return (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN) != 0;
}

/*
 * printable_ascii copies len bytes, replacing anything that is not
 * printable ASCII by '?': SAN strings are IA5 (ASCII) by definition, but a
 * certificate is user input and may carry anything, NULs included.
 */
static char *
printable_ascii(const unsigned char *data, int len)
{
	char	   *s = palloc(len + 1);
	int			i;

	for (i = 0; i < len; i++)
		s[i] = (data[i] >= 0x20 && data[i] < 0x7f) ? (char) data[i] : '?';
	s[len] = '\0';
	return s;
}

/*
 * text_array builds a text[] from a List of C strings ('{}' if empty).
 */
static Datum
text_array(List *items)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(items) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, items)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * san_lists collects the DNS names and IP addresses of a certificate's
 * subjectAltName, in order, as text[] datums.
 */
static void
san_lists(X509 *cert, Datum *dns, Datum *ips)
{
	GENERAL_NAMES *names;
	List	   *dns_list = NIL,
			   *ip_list = NIL;
	int			i;

	names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (names != NULL)
	{
		MyceliumTlsTrack(names, TLS_OBJ_GENERAL_NAMES, "name list");
		for (i = 0; i < sk_GENERAL_NAME_num(names); i++)
		{
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
			char		buf[INET6_ADDRSTRLEN];
			const unsigned char *d;
			int			len;

			if (gn->type == GEN_DNS)
			{
				d = ASN1_STRING_get0_data(gn->d.dNSName);
				len = ASN1_STRING_length(gn->d.dNSName);
				dns_list = lappend(dns_list, printable_ascii(d, len));
			}
			else if (gn->type == GEN_IPADD)
			{
				d = ASN1_STRING_get0_data(gn->d.iPAddress);
				len = ASN1_STRING_length(gn->d.iPAddress);
				if ((len == 4 && inet_ntop(AF_INET, d, buf, sizeof(buf))) ||
					(len == 16 && inet_ntop(AF_INET6, d, buf, sizeof(buf))))
					ip_list = lappend(ip_list, pstrdup(buf));
				else
					ip_list = lappend(ip_list, psprintf("(invalid address of %d bytes)", len));
			}
		}
	}
	ERR_clear_error();			/* a missing extension leaves a queue entry */
	*dns = text_array(dns_list);
	*ips = text_array(ip_list);
}

/*
 * serial_text returns the serial number as upper-case hexadecimal, the way
 * "openssl x509 -serial" prints it.
 */
static char *
serial_text(X509 *cert)
{
	BIGNUM	   *bn;
	char	   *hex;
	char	   *result;

	bn = MyceliumTlsTrack(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL),
						  TLS_OBJ_BIGNUM, "serial number");
	hex = BN_bn2hex(bn);
	if (hex == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	result = pstrdup(hex);
	OPENSSL_free(hex);
	return result;
}

/*
 * fingerprint_text returns the SHA-256 fingerprint of the DER encoding as
 * colon-separated upper-case hex, as "openssl x509 -fingerprint -sha256".
 */
static char *
fingerprint_text(X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;
	char	   *s;
	unsigned int i;

	if (!X509_digest(cert, EVP_sha256(), md, &len))
		MyceliumTlsFailed("compute a certificate fingerprint");
	s = palloc(len * 3 + 1);
	for (i = 0; i < len; i++)
		sprintf(s + i * 3, "%02X%s", md[i], i + 1 < len ? ":" : "");
	return s;
}

/*
 * mycelium.certificate_info(certificate text)
 *	 returns table(subject text, issuer text, serial text,
 *				   not_before timestamptz, not_after timestamptz,
 *				   fingerprint_sha256 text, dns_names text[],
 *				   ip_addresses text[], is_ca bool)
 *
 * Describes the first certificate of the PEM text; the others (a chain)
 * must still parse.
 */
Datum
mycelium_certificate_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *pem;
	X509	   *cert;
	Datum		values[9];
	bool		nulls[9] = {false};

	MyceliumTlsBegin();
	InitMaterializedSRF(fcinfo, 0);
	pem = MyceliumTlsTextArg(fcinfo, 0, "certificate");
	cert = linitial(MyceliumTlsParseCerts(pem, "certificate", NULL));

	values[0] = CStringGetTextDatum(MyceliumTlsNameText(X509_get_subject_name(cert)));
	values[1] = CStringGetTextDatum(MyceliumTlsNameText(X509_get_issuer_name(cert)));
	values[2] = CStringGetTextDatum(serial_text(cert));
	values[3] = TimestampTzGetDatum(MyceliumTlsTimeToTimestamp(X509_get0_notBefore(cert)));
	values[4] = TimestampTzGetDatum(MyceliumTlsTimeToTimestamp(X509_get0_notAfter(cert)));
	values[5] = CStringGetTextDatum(fingerprint_text(cert));
	san_lists(cert, &values[6], &values[7]);
	values[8] = BoolGetDatum(MyceliumTlsIsCa(cert));
	ERR_clear_error();

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
