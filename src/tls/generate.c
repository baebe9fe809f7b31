/*-------------------------------------------------------------------------
 *
 * generate.c
 *	  mycelium.generate_ca and mycelium.generate_certificate.
 *
 * Keys are EC P-256 (prime256v1): 128-bit security, like RSA-3072, at a
 * fraction of the cost (key generation takes about a millisecond instead of
 * a noticeable pause per RSA key, signatures and handshakes are smaller and
 * faster), and every TLS 1.2/1.3 stack and libpq build supports it.
 * Private keys are returned unencrypted in PKCS#8 PEM, which libpq and the
 * PostgreSQL server read as they are.
 *
 * Certificates are X.509 v3, signed with SHA-256, with a random positive
 * 128-bit serial (RFC 5280 allows up to 20 octets) and a notBefore five
 * minutes in the past so that peers with slightly slow clocks accept a
 * certificate made a moment ago.  The subject is just CN=<common_name>.
 *
 * The CA gets basicConstraints critical CA:TRUE, keyUsage critical
 * keyCertSign + cRLSign and a subjectKeyIdentifier.  A node certificate
 * serves as both TLS server and client: basicConstraints critical
 * CA:FALSE, keyUsage critical digitalSignature, extendedKeyUsage serverAuth
 * + clientAuth, subjectKeyIdentifier, authorityKeyIdentifier and the
 * subjectAltName that verify-full matches host names against.  (The key
 * usage has no keyEncipherment: that bit means RSA key transport, and
 * RFC 5480 forbids it for EC keys; TLS with an EC key only ever signs.)
 *
 * IDENTIFICATION
 *	  src/tls/generate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "tls/tls_internal.h"

PG_FUNCTION_INFO_V1(mycelium_generate_ca);
PG_FUNCTION_INFO_V1(mycelium_generate_certificate);

#define MAX_VALID_DAYS 36500
#define MAX_COMMON_NAME 64		/* ub-common-name of RFC 5280 */
#define MAX_DNS_NAME 253
#define BACKDATE_SECONDS (5 * 60)

/*
 * common_name_arg returns argument argno, a common name, as UTF-8 after
 * checking it is set, 1 to 64 characters long and free of control
 * characters.
 */
static char *
common_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *cn;
	const char *p;
	int			nchars;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("common name must not be null")));
	cn = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (cn[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("common name must not be empty")));
	nchars = pg_mbstrlen(cn);
	if (nchars > MAX_COMMON_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("common name is too long"),
				 errdetail("It has %d characters; the limit is %d.", nchars, MAX_COMMON_NAME)));
	for (p = cn; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("common name must not contain control characters")));
	return pg_server_to_any(cn, strlen(cn), PG_UTF8);
}

/*
 * valid_days_arg returns argument argno, a validity in days, after checking
 * it is between 1 and MAX_VALID_DAYS.
 */
static int
valid_days_arg(FunctionCallInfo fcinfo, int argno)
{
	int			days;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("valid_days must not be null")));
	days = PG_GETARG_INT32(argno);
	if (days <= 0 || days > MAX_VALID_DAYS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("valid_days must be between 1 and %d", MAX_VALID_DAYS),
				 errdetail("The value given was %d.", days)));
	return days;
}

/*
 * new_key generates a tracked EC P-256 key pair.
 */
static EVP_PKEY *
new_key(void)
{
	ERR_clear_error();
	return MyceliumTlsTrack(EVP_EC_gen("P-256"), TLS_OBJ_PKEY, "EC P-256 key");
}

/*
 * new_certificate returns a tracked, unsigned v3 certificate for key with
 * subject CN=cn, a random serial and the validity period; the issuer and
 * extensions are the caller's.
 */
static X509 *
new_certificate(const char *cn, EVP_PKEY *key, int days)
{
	X509	   *cert = MyceliumTlsTrack(X509_new(), TLS_OBJ_X509, "certificate");
	unsigned char rnd[16];
	BIGNUM	   *bn;
	ASN1_INTEGER *serial;
	X509_NAME  *name;
	time_t		now = time(NULL);

	if (!X509_set_version(cert, X509_VERSION_3))
		MyceliumTlsFailed("set the certificate version");

	/* random 128 bits, read as an unsigned number: positive unless zero */
	do
	{
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			MyceliumTlsFailed("generate a serial number");
		bn = MyceliumTlsTrack(BN_bin2bn(rnd, sizeof(rnd), NULL), TLS_OBJ_BIGNUM, "serial number");
	} while (BN_is_zero(bn));
	serial = MyceliumTlsTrack(BN_to_ASN1_INTEGER(bn, NULL), TLS_OBJ_ASN1_INTEGER, "serial number");
	if (!X509_set_serialNumber(cert, serial))
		MyceliumTlsFailed("set the serial number");

	name = X509_get_subject_name(cert);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
									(const unsigned char *) cn, -1, -1, 0))
		MyceliumTlsFailed("set the subject name");
	if (!X509_set_pubkey(cert, key))
		MyceliumTlsFailed("set the public key");
	if (!X509_time_adj_ex(X509_getm_notBefore(cert), 0, -BACKDATE_SECONDS, &now) ||
		!X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, &now))
		MyceliumTlsFailed("set the validity period");
	return cert;
}

/*
 * add_extension adds one extension given in OpenSSL's configuration
 * syntax.  Only fixed strings come here, never user input: the SAN, which
 * carries user input, is built structurally by add_san.
 */
static void
add_extension(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX	ctx;
	X509_EXTENSION *ext;
	int			ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		MyceliumTlsFailed(psprintf("build the %s extension", OBJ_nid2sn(nid)));
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok)
		MyceliumTlsFailed(psprintf("add the %s extension", OBJ_nid2sn(nid)));
}

/*
 * sign signs cert with key: SHA-256 for EC and RSA keys; EdDSA keys (an
 * operator's own CA may have one) take no separate digest.
 */
static void
sign(X509 *cert, EVP_PKEY *key)
{
	const EVP_MD *md = EVP_sha256();

	if (EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 || EVP_PKEY_get_id(key) == EVP_PKEY_ED448)
		md = NULL;
	if (X509_sign(cert, key, md) <= 0)
		MyceliumTlsFailed("sign the certificate");
}

/*
 * return_pair adds the (certificate, private_key) PEM row to the result.
 */
static void
return_pair(FunctionCallInfo fcinfo, X509 *cert, EVP_PKEY *key)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BIO		   *cbio = MyceliumTlsMemBio(false);
	BIO		   *kbio = MyceliumTlsMemBio(true);
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (!PEM_write_bio_X509(cbio, cert))
		MyceliumTlsFailed("write the certificate");
	if (!PEM_write_bio_PrivateKey(kbio, key, NULL, NULL, 0, NULL, NULL))
		MyceliumTlsFailed("write the private key");
	values[0] = CStringGetTextDatum(MyceliumTlsBioText(cbio));
	values[1] = CStringGetTextDatum(MyceliumTlsBioText(kbio));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	ERR_clear_error();
}

/*
 * mycelium.generate_ca(common_name text, valid_days int DEFAULT 3650)
 *	 returns table(certificate text, private_key text)
 *
 * A self-signed root CA with a new key.
 */
Datum
mycelium_generate_ca(PG_FUNCTION_ARGS)
{
	char	   *cn;
	int			days;
	EVP_PKEY   *key;
	X509	   *cert;

	MyceliumTlsBegin();
	cn = common_name_arg(fcinfo, 0);
	days = valid_days_arg(fcinfo, 1);
	InitMaterializedSRF(fcinfo, 0);
	key = new_key();
	cert = new_certificate(cn, key, days);
	if (!X509_set_issuer_name(cert, X509_get_subject_name(cert)))
		MyceliumTlsFailed("set the issuer name");
	add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
	add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_extension(cert, cert, NID_subject_key_identifier, "hash");
	sign(cert, key);
	return_pair(fcinfo, cert, key);
	return (Datum) 0;
}

/*
 * valid_dns_name tells whether s can be a dNSName: dot-separated labels of
 * 1 to 63 ASCII letters, digits, '-' or '_' (underscores appear in real
 * host names, and libpq compares names as strings), at most 253 characters,
 * optionally starting with a "*." wildcard label.
 */
static bool
valid_dns_name(const char *s)
{
	const char *p = s;
	int			label = 0;

	if (strlen(s) == 0 || strlen(s) > MAX_DNS_NAME)
		return false;
	if (strncmp(p, "*.", 2) == 0)
		p += 2;
	for (; *p; p++)
	{
		char		c = *p;

		if (c == '.')
		{
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/*
 * parse_ip parses an IPv4 or IPv6 address into its 4 or 16 bytes; returns
 * the length, or 0 if s is not an address.
 */
static int
parse_ip(const char *s, unsigned char *buf)
{
	if (inet_pton(AF_INET, s, buf) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, buf) == 1)
		return 16;
	return 0;
}

/*
 * push_name appends a DNS name or IP address (type GEN_DNS or GEN_IPADD)
 * to a GENERAL_NAMES stack, which owns it from then on.
 */
static void
push_name(GENERAL_NAMES *names, int type, const unsigned char *data, int len)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_STRING *s;

	if (gn == NULL)
		MyceliumTlsFailed("allocate a subject alternative name");
	if (!sk_GENERAL_NAME_push(names, gn))
	{
		GENERAL_NAME_free(gn);
		MyceliumTlsFailed("allocate a subject alternative name");
	}
	s = type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
	if (s == NULL)
		MyceliumTlsFailed("allocate a subject alternative name");
	GENERAL_NAME_set0_value(gn, type, s);
	if (!ASN1_STRING_set(s, data, len))
		MyceliumTlsFailed("set a subject alternative name");
}

/*
 * array_strings returns the elements of a text[] argument (NULL for a NULL
 * argument), refusing NULL elements.
 */
static List *
array_strings(FunctionCallInfo fcinfo, int argno, const char *what)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *isnull;
	int			n,
				i;
	List	   *result = NIL;

	if (PG_ARGISNULL(argno))
		return NIL;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &isnull, &n);
	for (i = 0; i < n; i++)
	{
		if (isnull[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", what)));
		result = lappend(result, TextDatumGetCString(elems[i]));
	}
	return result;
}

/*
 * add_san adds the subjectAltName: the given DNS names and IP addresses,
 * or, when there are none, the common name (as an IP address if it is
 * one, else as a DNS name).  Built structurally, so no input can inject
 * other name types the way OpenSSL's "DNS:a,IP:b" syntax would allow.
 */
static void
add_san(X509 *cert, List *dns, List *ips, const char *cn)
{
	GENERAL_NAMES *names;
	unsigned char ip[16];
	int			len;
	ListCell   *lc;

	names = MyceliumTlsTrack(GENERAL_NAMES_new(), TLS_OBJ_GENERAL_NAMES, "name list");
	foreach(lc, dns)
	{
		const char *s = lfirst(lc);

		if (!valid_dns_name(s))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid DNS name \"%s\"", s),
					 errdetail("A DNS name is up to 253 characters of dot-separated labels made of letters, digits, \"-\" and \"_\", optionally starting with \"*.\".")));
		push_name(names, GEN_DNS, (const unsigned char *) s, strlen(s));
	}
	foreach(lc, ips)
	{
		const char *s = lfirst(lc);

		if ((len = parse_ip(s, ip)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid IP address \"%s\"", s),
					 errhint("Give IPv4 or IPv6 addresses without a netmask, such as \"192.0.2.1\" or \"2001:db8::1\".")));
		push_name(names, GEN_IPADD, ip, len);
	}
	if (sk_GENERAL_NAME_num(names) == 0)
	{
		if ((len = parse_ip(cn, ip)) > 0)
			push_name(names, GEN_IPADD, ip, len);
		else if (valid_dns_name(cn))
			push_name(names, GEN_DNS, (const unsigned char *) cn, strlen(cn));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("common name \"%s\" cannot serve as the subject alternative name",
							pg_any_to_server(cn, strlen(cn), PG_UTF8)),
					 errdetail("Without dns_names or ip_addresses the common name is used, and it is neither a DNS name nor an IP address."),
					 errhint("Pass dns_names or ip_addresses.")));
	}
	if (!X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT))
		MyceliumTlsFailed("add the subjectAltName extension");
}

/*
 * check_issuer refuses a CA certificate that cannot sign: not a CA (a
 * node certificate used as a CA), outside its validity period, or not the
 * owner of the given private key.
 */
static void
check_issuer(X509 *ca, EVP_PKEY *ca_key)
{
	EVP_PKEY   *ca_pub = X509_get0_pubkey(ca);

	if (!MyceliumTlsIsCa(ca))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("certificate \"%s\" is not a CA certificate",
						MyceliumTlsNameText(X509_get_subject_name(ca))),
				 errdetail("A CA certificate has basicConstraints CA:TRUE and, if it has a keyUsage, keyCertSign.")));
	if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("CA certificate \"%s\" has expired",
						MyceliumTlsNameText(X509_get_subject_name(ca)))));
	if (X509_cmp_current_time(X509_get0_notBefore(ca)) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("CA certificate \"%s\" is not yet valid",
						MyceliumTlsNameText(X509_get_subject_name(ca)))));
	if (ca_pub == NULL || EVP_PKEY_eq(ca_pub, ca_key) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("CA private key does not match the CA certificate")));
	ERR_clear_error();
}

/*
 * mycelium.generate_certificate(common_name text, ca_certificate text,
 *		ca_private_key text, valid_days int DEFAULT 365,
 *		dns_names text[] DEFAULT NULL, ip_addresses text[] DEFAULT NULL)
 *	 returns table(certificate text, private_key text)
 *
 * A node certificate with a new key, issued by the (first) certificate of
 * ca_certificate.  A certificate that outlives its CA is made, with a
 * WARNING: it stops verifying when the CA expires.
 */
Datum
mycelium_generate_certificate(PG_FUNCTION_ARGS)
{
	char	   *cn;
	X509	   *ca;
	EVP_PKEY   *ca_key;
	int			days;
	List	   *dns,
			   *ips;
	EVP_PKEY   *key;
	X509	   *cert;

	MyceliumTlsBegin();
	cn = common_name_arg(fcinfo, 0);
	ca = linitial(MyceliumTlsParseCerts(MyceliumTlsTextArg(fcinfo, 1, "CA certificate"),
										"CA certificate", NULL));
	ca_key = MyceliumTlsParseKey(MyceliumTlsTextArg(fcinfo, 2, "CA private key"),
								 "CA private key", NULL);
	days = valid_days_arg(fcinfo, 3);
	dns = array_strings(fcinfo, 4, "dns_names");
	ips = array_strings(fcinfo, 5, "ip_addresses");
	check_issuer(ca, ca_key);

	InitMaterializedSRF(fcinfo, 0);
	key = new_key();
	cert = new_certificate(cn, key, days);
	if (!X509_set_issuer_name(cert, X509_get_subject_name(ca)))
		MyceliumTlsFailed("set the issuer name");
	add_extension(cert, ca, NID_basic_constraints, "critical,CA:FALSE");
	add_extension(cert, ca, NID_key_usage, "critical,digitalSignature");
	add_extension(cert, ca, NID_ext_key_usage, "serverAuth,clientAuth");
	add_extension(cert, ca, NID_subject_key_identifier, "hash");
	add_extension(cert, ca, NID_authority_key_identifier, "keyid,issuer");
	add_san(cert, dns, ips, cn);
	if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(ca)) > 0)
		ereport(WARNING,
				(errmsg("certificate outlives its CA certificate \"%s\"",
						MyceliumTlsNameText(X509_get_subject_name(ca))),
				 errdetail("It will stop verifying when the CA certificate expires."),
				 errhint("Give fewer valid_days, or renew the CA first.")));
	sign(cert, ca_key);
	return_pair(fcinfo, cert, key);
	return (Datum) 0;
}
