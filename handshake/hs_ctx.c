// SPDX-License-Identifier: MIT
// Server SSL_CTX: certificate and key, protocol floor, kTLS-offloadable cipher
// defaults, ALPN "postgresql", and client-certificate verification with
// allow-lists. Contexts are refcounted so a reload never pulls one from under
// a live handshake.
#include "hs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

int hs_ssl_index = -1;

const char *hs_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

/* Drain the whole OpenSSL error queue into buf (joined with "; "). */
void hs_err_drain(char *buf, size_t len)
{
	unsigned long e;
	size_t off = 0;
	if (len)
		buf[0] = 0;
	while ((e = ERR_get_error()) != 0) {
		if (off + 2 >= len)
			continue;
		if (off)
			off += (size_t)snprintf(buf + off, len - off, "; ");
		if (off < len)
			ERR_error_string_n(e, buf + off, len - off);
		off = strlen(buf);
	}
}

static int ctx_fail(char *err, size_t errlen, const char *what, const char *path)
{
	char ossl[512];
	hs_err_drain(ossl, sizeof(ossl));
	snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 ossl[0] ? ossl : "failed");
	return -EINVAL;
}

static int copy_list(char ***dst, size_t *dn, char *const *src, size_t n)
{
	*dn = 0;
	*dst = calloc(n ? n : 1, sizeof(char *));
	if (!*dst)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!((*dst)[i] = strdup(src[i])))
			return -ENOMEM;
		*dn = i + 1;
	}
	return 0;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ALPN: select "postgresql" or refuse with no_application_protocol. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	(void)arg;
	struct hs_conn *c = SSL_get_ex_data(ssl, hs_ssl_index);
	for (unsigned i = 0; i < inlen;) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 10 && memcmp(in + i + 1, "postgresql", 10) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	if (c)
		hs_conn_set_reason(c, "client ALPN list lacks \"postgresql\"");
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Direct TLS must carry ALPN; checked before any handshake work is done. */
static int client_hello(SSL *ssl, int *al, void *arg)
{
	(void)arg;
	struct hs_conn *c = SSL_get_ex_data(ssl, hs_ssl_index);
	const unsigned char *ext;
	size_t extlen;
	if (c && c->direct &&
	    !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &extlen)) {
		hs_conn_set_reason(c, "direct TLS without ALPN \"postgresql\"");
		*al = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* The subject's first CN as UTF-8 in out. 0 when there is none; -1 when it
 * cannot be compared safely: an embedded NUL (CVE-2009-4034's trick:
 * "bob\0.evil" read as "bob") or longer than out. */
static int subject_cn(X509 *cert, char *out, size_t outlen, int *type)
{
	out[0] = 0;
	*type = -1;
	X509_NAME *name = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0)
		return 0;
	unsigned char *utf8 = NULL;
	const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	*type = ASN1_STRING_type(data);
	int n = ASN1_STRING_to_UTF8(&utf8, data);
	int rc = -1;
	if (n >= 0 && (size_t)n < outlen && memchr(utf8, 0, (size_t)n) == NULL) {
		memcpy(out, utf8, (size_t)n);
		out[n] = 0;
		rc = 0;
	}
	OPENSSL_free(utf8);
	return rc;
}

/* The subject as PostgreSQL's clientname=DN shows it to pg_ident (RFC 2253: the
 * last RDN first, non-ASCII bytes and NULs escaped) in out; "" when OpenSSL cannot
 * print it or it does not fit (a map rule cannot be longer). */
static void subject_dn(X509 *cert, char *out, size_t outlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;
	out[0] = 0;
	if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0 &&
	    BIO_get_mem_ptr(b, &mem) > 0 && mem->length < outlen && !memchr(mem->data, 0, mem->length)) {
		memcpy(out, mem->data, mem->length);
		out[mem->length] = 0;
	}
	BIO_free(b);
	ERR_clear_error();
}

/* The names of a client certificate that allow-lists and user maps look at. */
struct cert_names {
	char dn[MAP_IDENT_MAX + 1]; /* with want_dn: "" when empty or unusable */
	char cn[256];              /* "" when none, or when it cannot be compared safely */
	int cn_bad;                /* it cannot: a NUL byte, or over 255 bytes */
	int cn_type;               /* its ASN.1 string type; -1 when none */
	GENERAL_NAMES *gens;
	const char **names;        /* dns[] then uris[]; point into gens */
	const char **dns, **uris;
	size_t ndns, nuris;
	int nomem;
};

static void names_get(X509 *cert, struct cert_names *n, int want_dn)
{
	memset(n, 0, sizeof(*n));
	if (want_dn) /* only user maps look at it */
		subject_dn(cert, n->dn, sizeof(n->dn));
	if (subject_cn(cert, n->cn, sizeof(n->cn), &n->cn_type) < 0) {
		n->cn_bad = 1;
		n->cn[0] = 0;
	}
	n->gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int ngens = n->gens ? sk_GENERAL_NAME_num(n->gens) : 0;
	if (ngens <= 0)
		return;
	if (!(n->names = calloc(2 * (size_t)ngens, sizeof(*n->names)))) {
		n->nomem = 1;
		return;
	}
	n->dns = n->names;
	n->uris = n->names + ngens;
	for (int i = 0; i < ngens; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(n->gens, i);
		const ASN1_IA5STRING *s = NULL;
		if (g->type == GEN_DNS)
			s = g->d.dNSName;
		else if (g->type == GEN_URI)
			s = g->d.uniformResourceIdentifier;
		/* reject embedded NULs: they would shorten the name we compare */
		if (!s || (size_t)s->length != strlen((const char *)s->data))
			continue;
		if (g->type == GEN_DNS)
			n->dns[n->ndns++] = (const char *)s->data;
		else
			n->uris[n->nuris++] = (const char *)s->data;
	}
}

static void names_put(struct cert_names *n)
{
	free(n->names);
	GENERAL_NAMES_free(n->gens);
}

/* The name the log gives a client certificate: its first URI SAN, else CN=. */
static void peer_of(const struct cert_names *n, char *peer, size_t peerlen)
{
	int room = (int)peerlen - 4; /* a longer name is cut, as the log's field is */
	if (n->nuris)
		snprintf(peer, peerlen, "%.*s", room + 3, n->uris[0]);
	else
		snprintf(peer, peerlen, "CN=%.*s", room, n->cn);
}

static int names_allowed(const struct hs_settings *st, const struct cert_names *n, char *peer, size_t peerlen,
			 const char **why)
{
	*why = "client certificate not in allow-list";
	if (n->cn_bad && st->n_allow_cn) {
		snprintf(peer, peerlen, "(unusable CN)");
		*why = "client certificate CN holds a NUL byte or is over 255 bytes";
		return 0;
	}
	/* an unusable CN is not compared: the certificate may still match by SAN */
	peer_of(n, peer, peerlen);
	if (n->nomem)
		return 0;
	return allow_check(st, n->cn, n->dns, n->ndns, n->uris, n->nuris);
}

/* Collect CN, DNS and URI SANs of cert and apply the allow-lists. */
int hs_identity_check(const struct hs_settings *st, X509 *cert, char *peer, size_t peerlen, const char **why)
{
	struct cert_names n;
	names_get(cert, &n, 0);
	int ok = names_allowed(st, &n, peer, peerlen, why);
	names_put(&n);
	return ok;
}

/* --client-user-match: the users this certificate may log in as, "a\0b\0\0". */
static char *cert_users(const struct hs_ctx *ctx, const struct cert_names *n)
{
	char *users = NULL;
	/* PostgreSQL compares the CN's bytes as they are (to the user, or in pg_ident):
	 * only where those are already UTF-8 is the converted CN the same name */
	int same = n->cn_type == V_ASN1_UTF8STRING || n->cn_type == V_ASN1_PRINTABLESTRING ||
		   n->cn_type == V_ASN1_IA5STRING || n->cn_type == V_ASN1_VISIBLESTRING;
	const char *cn = same ? n->cn : "";
	if (ctx->s.user_match == HS_USER_MAP) {
		if (user_map_users(ctx->user_map, cn, n->dn, n->dns, n->ndns, n->uris, n->nuris, &users))
			return NULL;
		return users;
	}
	size_t len = strlen(cn);
	if ((users = calloc(len + 2, 1)))
		memcpy(users, cn, len); /* "" for no usable CN: the empty list */
	return users;
}

static int check_identity(struct hs_ctx *ctx, struct hs_conn *c, X509 *cert)
{
	char peer[sizeof(c->peer)];
	const char *why;
	struct cert_names n;
	names_get(cert, &n, ctx->s.user_match == HS_USER_MAP);
	int ok = names_allowed(&ctx->s, &n, peer, sizeof(peer), &why);
	memcpy(c->peer, peer, sizeof(peer));
	if (ok && ctx->s.user_match != HS_USER_ANY && !n.nomem) {
		free(c->users);
		if (!(c->users = cert_users(ctx, &n))) {
			why = "out of memory";
			ok = 0;
		}
	}
	names_put(&n);
	if (!ok)
		hs_conn_set_reason(c, why);
	return ok;
}

/* Why OpenSSL refused a client chain, as the log and `check` say it. */
static void chain_reason(X509_STORE_CTX *xs, char *out, size_t outlen)
{
	snprintf(out, outlen, "client certificate rejected at depth %d: %s", X509_STORE_CTX_get_error_depth(xs),
		 X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct hs_conn *c = ssl ? SSL_get_ex_data(ssl, hs_ssl_index) : NULL;
	int depth = X509_STORE_CTX_get_error_depth(xs);
	if (!preverify_ok) {
		X509 *leaf = X509_STORE_CTX_get0_cert(xs);
		if (c && !c->peer[0] && leaf) { /* who the refused client says it is (unverified) */
			struct cert_names n;
			names_get(leaf, &n, 0);
			peer_of(&n, c->peer, sizeof(c->peer));
			names_put(&n);
		}
		if (c) {
			char r[160];
			chain_reason(xs, r, sizeof(r));
			hs_conn_set_reason(c, r);
		}
		return 0;
	}
	if (depth == 0 && c && !check_identity(c->ctx, c, X509_STORE_CTX_get_current_cert(xs))) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

/* An encrypted key would make OpenSSL prompt on the terminal, blocking the thread that
 * loads it (a reload on the admin thread stalls /healthz): refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
	(void)buf, (void)size, (void)rwflag;
	if (asked)
		*(int *)asked = 1;
	return -1;
}

/* "DNS:a, IP:b" of the certificate's subjectAltName. */
static void describe_sans(X509 *x, char *out, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
	X509_EXTENSION *ext = idx >= 0 ? X509_get_ext(x, idx) : NULL;
	out[0] = 0;
	if (b && ext && X509V3_EXT_print(b, ext, 0, 0)) {
		int n = BIO_read(b, out, (int)len - 1);
		out[n > 0 ? n : 0] = 0;
	}
	BIO_free(b);
	ERR_clear_error();
}

static void describe_cert(struct hs_ctx *ctx)
{
	X509 *x = SSL_CTX_get0_certificate(ctx->ssl);
	struct tm tm;
	snprintf(ctx->subject, sizeof(ctx->subject), "?");
	snprintf(ctx->not_after, sizeof(ctx->not_after), "?");
	snprintf(ctx->not_before, sizeof(ctx->not_before), "?");
	snprintf(ctx->serial, sizeof(ctx->serial), "?");
	if (x) {
		X509_NAME_oneline(X509_get_subject_name(x), ctx->subject, sizeof(ctx->subject));
		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) { /* ISO 8601, as in reload_at */
			strftime(ctx->not_after, sizeof(ctx->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
			ctx->not_after_unix = (long long)timegm(&tm);
		}
		if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm))
			strftime(ctx->not_before, sizeof(ctx->not_before), "%Y-%m-%dT%H:%M:%SZ", &tm);
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		char *hex = bn ? BN_bn2hex(bn) : NULL;
		if (hex) /* the form openssl x509 -serial prints */
			snprintf(ctx->serial, sizeof(ctx->serial), "%s", hex);
		OPENSSL_free(hex);
		BN_free(bn);
		describe_sans(x, ctx->sans, sizeof(ctx->sans));
		ctx->expired = X509_cmp_current_time(X509_get0_notAfter(x)) < 0;
		ctx->not_yet_valid = X509_cmp_current_time(X509_get0_notBefore(x)) > 0;
	}
	ERR_clear_error();
	snprintf(ctx->desc, sizeof(ctx->desc), "subject=\"%s\" serial=\"%s\" not_after=%s", ctx->subject, ctx->serial,
		 ctx->not_after);
}

/* How many ciphers a handshake could pick from under sc's version range: none
 * means every handshake would fail (--min-tls-version 1.3 --ciphersuites ""). */
static int usable_ciphers(SSL_CTX *sc)
{
	SSL *probe = SSL_new(sc);
	STACK_OF(SSL_CIPHER) *sk = probe ? SSL_get1_supported_ciphers(probe) : NULL;
	int n = sk ? sk_SSL_CIPHER_num(sk) : 0;
	sk_SSL_CIPHER_free(sk);
	SSL_free(probe);
	ERR_clear_error();
	return n;
}

/* Unix time of t; 0 if it cannot be read. */
static long long unix_time(const ASN1_TIME *t)
{
	struct tm tm;
	return t && ASN1_TIME_to_tm(t, &tm) ? (long long)timegm(&tm) : 0;
}

/* Load the client CRLs in file into sc's store and check every client chain against
 * them, each certificate in it (as PostgreSQL does with ssl_crl_file): a chain whose
 * CA has no CRL is refused. Note each issuer's newest nextUpdate, and the client CAs
 * that have no CRL. */
static int load_crls(struct hs_ctx *ctx, SSL_CTX *sc, const char *file, char *err, size_t errlen)
{
	X509_STORE *st = SSL_CTX_get_cert_store(sc);
	X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
	if (!lk || X509_load_crl_file(lk, file, X509_FILETYPE_PEM) <= 0)
		return ctx_fail(err, errlen, "cannot load client CRL (PEM)", file);
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(st);
	int n = sk_X509_OBJECT_num(objs);
	const X509_NAME **iss = calloc((size_t)n + 1, sizeof(*iss));
	ctx->crl_next = calloc((size_t)n + 1, sizeof(*ctx->crl_next));
	if (!iss || !ctx->crl_next) {
		free(iss);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
		if (!crl)
			continue;
		const X509_NAME *name = X509_CRL_get_issuer(crl);
		long long next = unix_time(X509_CRL_get0_nextUpdate(crl));
		int j = 0;
		while (j < ctx->crl_issuers && X509_NAME_cmp(iss[j], name))
			j++;
		if (j == ctx->crl_issuers) {
			iss[ctx->crl_issuers++] = name;
			ctx->crl_next[j] = next;
		} else if (ctx->crl_next[j] && (!next || next > ctx->crl_next[j])) {
			ctx->crl_next[j] = next; /* a newer CRL of the same CA, or one that never expires */
		}
	}
	for (int i = 0; i < n; i++) {
		X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		if (!ca || X509_check_ca(ca) <= 0)
			continue;
		int j = 0;
		while (j < ctx->crl_issuers && X509_NAME_cmp(iss[j], X509_get_subject_name(ca)))
			j++;
		if (j < ctx->crl_issuers || ctx->cas_without_crl++)
			continue;
		X509_NAME_oneline(X509_get_subject_name(ca), ctx->ca_without_crl, sizeof(ctx->ca_without_crl));
	}
	free(iss);
	ERR_clear_error();
	return 0;
}

/* --client-user-map FILE, at most USER_MAP_MAX bytes. */
#define USER_MAP_MAX (1u << 20)
static int load_user_map(struct hs_ctx *ctx, const char *file, char *err, size_t errlen)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	int rc = 0;
	char *buf = NULL;
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		snprintf(err, errlen, "cannot load client user map %s: %s", file, strerror(errno));
	} else if (!S_ISREG(st.st_mode) || st.st_size > (off_t)USER_MAP_MAX) {
		rc = -EINVAL;
		snprintf(err, errlen, "cannot load client user map %s: %s", file,
			 S_ISREG(st.st_mode) ? "over 1 MiB" : "not a regular file");
	} else if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = -ENOMEM;
	} else {
		/* all of it, and nothing more: a map cut short by a write in progress could
		 * end in a shorter user name, another role */
		size_t got = 0;
		ssize_t n = 0;
		char extra;
		struct stat after;
		while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
			got += (size_t)n;
		if (n < 0 || got != (size_t)st.st_size || read(fd, &extra, 1) != 0 || fstat(fd, &after) ||
		    after.st_size != st.st_size || after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
		    after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
			rc = -EAGAIN;
			snprintf(err, errlen, "cannot load client user map %s: %s", file,
				 n < 0 ? strerror(errno) : "it changed while read (try again once it is written)");
		} else {
			char why[320];
			if ((rc = user_map_parse(buf, got, &ctx->user_map, why, sizeof(why))))
				snprintf(err, errlen, "client user map %s: %s", file, why);
		}
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int ctx_configure(struct hs_ctx *ctx, const struct hs_settings *s, char *err, size_t errlen)
{
	SSL_CTX *sc = ctx->ssl;
	SSL_CTX_set_min_proto_version(sc, s->min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	/* renegotiation and compression cannot coexist with kTLS; tickets are
	 * useless to libpq, which never resumes sessions */
	SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(sc, 0);
	SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
	/* no SSL_MODE_RELEASE_BUFFERS: it frees and reallocates the 17 KB record buffers
	 * around every record; an idle connection gives them back (hs_conn_release_buffers) */
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_CTX_set_read_ahead(sc, 0);
	if (!SSL_CTX_set_cipher_list(sc, s->ciphers))
		return ctx_fail(err, errlen, "ciphers", s->ciphers);
	if (!SSL_CTX_set_ciphersuites(sc, s->ciphersuites))
		return ctx_fail(err, errlen, "ciphersuites", s->ciphersuites);
	if (!usable_ciphers(sc)) {
		snprintf(err, errlen, "no cipher is left for TLS %s and above: ciphers=\"%s\" ciphersuites=\"%s\"",
			 s->min_tls13 ? "1.3" : "1.2", s->ciphers, s->ciphersuites);
		return -EINVAL;
	}
	if (!SSL_CTX_use_certificate_chain_file(sc, s->cert))
		return ctx_fail(err, errlen, "cannot load certificate", s->cert);
	int asked = 0;
	SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
	SSL_CTX_set_default_passwd_cb_userdata(sc, &asked);
	int loaded = SSL_CTX_use_PrivateKey_file(sc, s->key, SSL_FILETYPE_PEM);
	SSL_CTX_set_default_passwd_cb_userdata(sc, NULL);
	if (!loaded && asked) {
		ERR_clear_error();
		snprintf(err, errlen, "cannot load private key %s: it is encrypted, and passphrases are not "
			 "supported (decrypt it: openssl pkey -in KEY -out PLAIN)", s->key);
		return -EINVAL;
	}
	if (!loaded)
		return ctx_fail(err, errlen, "cannot load private key", s->key);
	if (!SSL_CTX_check_private_key(sc))
		return ctx_fail(err, errlen, "private key does not match certificate", s->key);
	if (s->export_keys)
		hs_keys_setup_ctx(sc);
	SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
	SSL_CTX_set_client_hello_cb(sc, client_hello, NULL);
	if (s->verify) {
		if (!SSL_CTX_load_verify_locations(sc, s->client_ca, NULL))
			return ctx_fail(err, errlen, "cannot load client CA", s->client_ca);
		int rc;
		if (s->client_crl && *s->client_crl && (rc = load_crls(ctx, sc, s->client_crl, err, errlen)))
			return rc;
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->client_ca);
		if (names)
			SSL_CTX_set_client_CA_list(sc, names);
		int mode = SSL_VERIFY_PEER | (s->verify == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
		SSL_CTX_set_verify(sc, mode, verify_cb);
		SSL_CTX_set_verify_depth(sc, 8);
	}
	int rc;
	if (s->user_match == HS_USER_MAP && s->keep_map && s->keep_map->user_map)
		ctx->user_map = user_map_ref(s->keep_map->user_map);
	else if (s->user_match == HS_USER_MAP && (rc = load_user_map(ctx, s->user_map, err, errlen)))
		return rc;
	describe_cert(ctx);
	return 0;
}

int hs_ctx_load(const struct hs_settings *s, struct hs_ctx **out, char *err, size_t errlen)
{
	if (hs_ssl_index < 0)
		hs_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ERR_clear_error();
	struct hs_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	atomic_init(&ctx->refs, 1);
	ctx->s = *s;
	int rc = -ENOMEM;
	if (copy_list(&ctx->cn, &ctx->s.n_allow_cn, s->allow_cn, s->n_allow_cn) ||
	    copy_list(&ctx->dns, &ctx->s.n_allow_dns, s->allow_dns, s->n_allow_dns) ||
	    copy_list(&ctx->uri, &ctx->s.n_allow_uri, s->allow_uri, s->n_allow_uri))
		goto err_ctx;
	ctx->s.allow_cn = ctx->cn;
	ctx->s.allow_dns = ctx->dns;
	ctx->s.allow_uri = ctx->uri;
	ctx->ssl = SSL_CTX_new(TLS_server_method());
	if (!ctx->ssl) {
		rc = ctx_fail(err, errlen, "SSL_CTX_new", NULL);
		goto err_ctx;
	}
	if ((rc = ctx_configure(ctx, s, err, errlen)))
		goto err_ctx;
	/* the paths and cipher strings belong to the caller's configuration, which a
	 * reload frees while this context lives on: keep no pointer to them */
	ctx->s.cert = ctx->s.key = ctx->s.client_ca = ctx->s.client_crl = ctx->s.ciphers = ctx->s.ciphersuites = NULL;
	ctx->s.user_map = NULL;
	ctx->s.keep_map = NULL;
	*out = ctx;
	return 0;
err_ctx:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	ctx->refs = 1;
	hs_ctx_put(ctx);
	return rc;
}

void hs_ctx_get(struct hs_ctx *ctx) { atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed); }

void hs_ctx_put(struct hs_ctx *ctx)
{
	if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx->crl_next);
	user_map_free(ctx->user_map);
	free_list(ctx->cn, ctx->s.n_allow_cn);
	free_list(ctx->dns, ctx->s.n_allow_dns);
	free_list(ctx->uri, ctx->s.n_allow_uri);
	free(ctx);
}

const char *hs_ctx_describe(const struct hs_ctx *ctx) { return ctx->desc; }
const char *hs_ctx_subject(const struct hs_ctx *ctx) { return ctx->subject; }
const char *hs_ctx_sans(const struct hs_ctx *ctx) { return ctx->sans; }
const char *hs_ctx_not_after(const struct hs_ctx *ctx) { return ctx->not_after; }
int hs_ctx_expired(const struct hs_ctx *ctx) { return ctx->expired; }
int hs_ctx_user_match(const struct hs_ctx *ctx) { return ctx->s.user_match; }
int hs_ctx_user_map_rules(const struct hs_ctx *ctx) { return ctx->user_map ? (int)user_map_rules(ctx->user_map) : -1; }

int hs_ctx_crls(const struct hs_ctx *ctx, int *stale, long long *next_update)
{
	long long now = (long long)time(NULL);
	*stale = 0;
	*next_update = 0;
	for (int i = 0; i < ctx->crl_issuers; i++) {
		long long t = ctx->crl_next[i];
		if (!t)
			continue;
		*stale += t < now;
		if (!*next_update || t < *next_update)
			*next_update = t;
	}
	return ctx->crl_issuers;
}

int hs_ctx_cas_without_crl(const struct hs_ctx *ctx, const char **first)
{
	*first = ctx->ca_without_crl;
	return ctx->cas_without_crl;
}
const char *hs_ctx_not_before(const struct hs_ctx *ctx) { return ctx->not_yet_valid ? ctx->not_before : NULL; }
const char *hs_ctx_serial(const struct hs_ctx *ctx) { return ctx->serial; }
long long hs_ctx_not_after_unix(const struct hs_ctx *ctx) { return ctx->not_after_unix; }

/* The certificates of a PEM file: the first, then the rest (its intermediates). */
static X509 *read_chain(const char *file, STACK_OF(X509) **rest)
{
	BIO *b = BIO_new_file(file, "r");
	X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	*rest = sk_X509_new_null();
	X509 *x;
	while (leaf && *rest && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
		if (!sk_X509_push(*rest, x))
			X509_free(x);
	BIO_free(b);
	ERR_clear_error();
	return leaf;
}

/* Print text from a certificate to a terminal: control bytes as '?'; with quote, a '"'
 * doubled, as a map's quoted field holds it. */
static void put_clean(FILE *f, const char *s, int quote)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (quote && ch == '"')
			fputc('"', f);
		fputc(ch < 0x20 || ch == 0x7f ? '?' : ch, f);
	}
}

/* Print a users list "a\0b\0\0" as "a, b", each once. */
static void print_users(FILE *f, const char *users)
{
	for (const char *u = users; *u; u += strlen(u) + 1) {
		const char *v = users;
		while (v < u && strcmp(v, u))
			v += strlen(v) + 1;
		if (v != u)
			continue;
		fputs(u == users ? "" : ", ", f);
		put_clean(f, u, 0);
	}
}

int hs_ctx_check_client(struct hs_ctx *ctx, const char *file, const char *user, FILE *f)
{
	STACK_OF(X509) *rest = NULL;
	X509 *leaf = read_chain(file, &rest);
	if (!leaf || !rest) {
		fprintf(f, "client certificate %s: cannot read a PEM certificate from it\n", file);
		X509_free(leaf);
		sk_X509_pop_free(rest, X509_free);
		return -EINVAL;
	}
	struct cert_names n;
	names_get(leaf, &n, 1);
	fprintf(f, "client certificate %s\n  subject: ", file);
	put_clean(f,
		  n.dn[0]					? n.dn
		  : X509_NAME_entry_count(X509_get_subject_name(leaf)) ? "(unusable: not printable in RFC 2253 form, "
									 "or over 1024 bytes)"
									: "(empty)",
		  0);
	if (n.dn[0]) { /* as a map rule writes it: quoted, quotes doubled */
		fprintf(f, "\n  as a map identity: \"DN:");
		put_clean(f, n.dn, 1);
		fputc('"', f);
	}
	fputc('\n', f);
	int ok = 1;
	if (!ctx->s.verify) {
		fprintf(f, "  chain: not checked: --verify none, the sidecar asks for no client certificate\n");
	} else {
		/* as OpenSSL checks a client's chain in a handshake: the client CAs and CRLs
		 * of the store, the context's verify parameters and security level (key
		 * sizes, signature digests), the TLS client purpose */
		X509_STORE_CTX *xs = X509_STORE_CTX_new();
		X509_VERIFY_PARAM *param = NULL;
		if (xs && X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(ctx->ssl), leaf, rest) &&
		    X509_STORE_CTX_set_default(xs, "ssl_client") &&
		    X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xs), SSL_CTX_get0_param(ctx->ssl)))
			param = X509_STORE_CTX_get0_param(xs);
		if (param)
			X509_VERIFY_PARAM_set_auth_level(param, SSL_CTX_get_security_level(ctx->ssl));
		if (!param) {
			fprintf(f, "  chain: cannot be checked (out of memory)\n");
			ok = -ENOMEM;
		} else if (X509_verify_cert(xs) != 1) {
			char why[160];
			chain_reason(xs, why, sizeof(why));
			fprintf(f, "  chain: refused: %s\n", why);
			ok = 0;
		} else {
			fprintf(f, "  chain: trusted (--client-ca%s)\n", ctx->crl_issuers ? ", not revoked in --client-crl" : "");
		}
		X509_STORE_CTX_free(xs);
	}
	char peer[192];
	const char *why;
	int allowed = names_allowed(&ctx->s, &n, peer, sizeof(peer), &why);
	fprintf(f, "  identity: ");
	put_clean(f, peer, 0);
	fputc('\n', f);
	if (!ctx->s.verify) {
		/* the allow-lists need a certificate the handshake asks for */
	} else if (!allowed) {
		fprintf(f, "  allow-lists: refused: %s\n", why);
		ok = ok < 0 ? ok : 0;
	} else {
		fprintf(f, "  allow-lists: %s\n",
			ctx->s.n_allow_cn + ctx->s.n_allow_dns + ctx->s.n_allow_uri ? "admitted" : "none set");
	}
	char *users = NULL;
	if (ctx->s.user_match == HS_USER_ANY) {
		fprintf(f, "  users: any (no --client-user-match)\n");
	} else if (!(users = cert_users(ctx, &n))) {
		fprintf(f, "  users: cannot be listed (out of memory)\n");
		ok = -ENOMEM;
	} else {
		fprintf(f, "  users: ");
		if (*users)
			print_users(f, users);
		else
			fprintf(f, "none (%s): every login is refused",
				ctx->s.user_match == HS_USER_CN ? "no usable subject CN"
								: "no rule of the map names this certificate");
		fprintf(f, "\n");
		if (!*users && ok == 1)
			ok = 0;
	}
	if (user) {
		int may = !users || user_list_has(users, user);
		fprintf(f, "  log in as \"%s\": %s\n", user,
			ok != 1 && may ? "refused: the certificate is refused"
			: may	       ? "allowed"
				       : "refused (FATAL 28000)");
		if (!may && ok == 1)
			ok = 0;
	}
	fprintf(f, "  verdict: %s\n", ok == 1 ? "admitted" : "refused");
	free(users);
	names_put(&n);
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
	return ok;
}
