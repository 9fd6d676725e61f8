// SPDX-License-Identifier: MIT
// Session keys for kTLS. OpenSSL 3.0 cannot hand TLS 1.3 RX keys to the
// kernel, so we derive both directions ourselves: TLS 1.3 from the traffic
// secrets the keylog callback sees (HKDF-Expand-Label via TLS13-KDF), TLS 1.2
// from the master secret ("key expansion" via TLS1-PRF). Secrets are wiped
// as soon as the keys are out, except TLS 1.3's two traffic secrets, which the
// connection keeps (struct hs_traffic) to follow a KeyUpdate.
#include "hs_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Parse the hex secret at the end of a keylog line into out. Length, or 0. */
static size_t keylog_secret(const char *line, uint8_t *out, size_t cap)
{
	const char *p = strrchr(line, ' ');
	if (!p)
		return 0;
	size_t n = strlen(++p) / 2;
	if (n > cap)
		return 0;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return 0;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return n;
}

/* Keep only the two application traffic secrets; never log anything. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	struct hs_conn *c = SSL_get_ex_data(ssl, hs_ssl_index);
	if (!c)
		return;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		c->sec_c_len = (uint8_t)keylog_secret(line, c->sec_c, sizeof(c->sec_c));
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		c->sec_s_len = (uint8_t)keylog_secret(line, c->sec_s, sizeof(c->sec_s));
}

/* Count records we send after switching to application keys (TLS 1.3
 * NewSessionTicket, KeyUpdate): the kernel's TX sequence starts after them. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
		   void *arg)
{
	(void)version, (void)arg;
	if (!write_p || content_type != SSL3_RT_HANDSHAKE || len < 1)
		return;
	struct hs_conn *c = SSL_get_ex_data(ssl, hs_ssl_index);
	uint8_t mt = ((const uint8_t *)buf)[0];
	if (c && (mt == SSL3_MT_NEWSESSION_TICKET || mt == SSL3_MT_KEY_UPDATE))
		c->tx_app_records++;
}

void hs_keys_setup_ctx(SSL_CTX *ctx)
{
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	SSL_CTX_set_msg_callback(ctx, msg_cb);
}

/* Run the named OpenSSL KDF with params into out. 0 or -EINVAL. */
static int kdf_derive(const char *name, const OSSL_PARAM *params, uint8_t *out, size_t outlen)
{
	int rc = -EINVAL;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	if (kctx && EVP_KDF_derive(kctx, out, outlen, params) > 0)
		rc = 0;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	ERR_clear_error();
	return rc;
}

int hs_kdf_tls13_expand(const char *md, const uint8_t *secret, size_t slen, const char *label, uint8_t *out,
			size_t outlen)
{
	static const unsigned char empty[1];
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, (void *)"tls13 ", 6),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label, strlen(label)),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, (void *)empty, 0),
		OSSL_PARAM_construct_end(),
	};
	return kdf_derive("TLS13-KDF", p, out, outlen);
}

int hs_kdf_tls12_prf(const char *md, const uint8_t *secret, size_t slen, const char *label, const uint8_t *s1,
		     size_t s1len, const uint8_t *s2, size_t s2len, uint8_t *out, size_t outlen)
{
	/* repeated SEED parameters are concatenated: label || s1 || s2 */
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret, slen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)label, strlen(label)),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)s1, s1len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)s2, s2len),
		OSSL_PARAM_construct_end(),
	};
	return kdf_derive("TLS1-PRF", p, out, outlen);
}

/* Which AEAD, key size and PRF hash the negotiated suite uses. */
static int suite_params(const SSL_CIPHER *ciph, uint8_t *cipher, size_t *keylen, const char **md)
{
	switch (SSL_CIPHER_get_cipher_nid(ciph)) {
	case NID_aes_128_gcm:
		*cipher = KTLS_AES_128_GCM, *keylen = 16;
		break;
	case NID_aes_256_gcm:
		*cipher = KTLS_AES_256_GCM, *keylen = 32;
		break;
	case NID_chacha20_poly1305:
		*cipher = KTLS_CHACHA20_POLY1305, *keylen = 32;
		break;
	default:
		return -ENOTSUP;
	}
	const EVP_MD *h = SSL_CIPHER_get_handshake_digest(ciph);
	*md = h && EVP_MD_get_size(h) == 48 ? "SHA384" : "SHA256";
	return 0;
}

static int export13(struct hs_conn *c, uint8_t cipher, size_t keylen, const char *md, struct ktls_keys *tx,
		    struct ktls_keys *rx)
{
	if (!c->sec_c_len || !c->sec_s_len)
		return -ENOKEY;
	if (hs_kdf_tls13_expand(md, c->sec_s, c->sec_s_len, "key", tx->key, keylen) ||
	    hs_kdf_tls13_expand(md, c->sec_s, c->sec_s_len, "iv", tx->iv, 12) ||
	    hs_kdf_tls13_expand(md, c->sec_c, c->sec_c_len, "key", rx->key, keylen) ||
	    hs_kdf_tls13_expand(md, c->sec_c, c->sec_c_len, "iv", rx->iv, 12))
		return -EINVAL;
	tx->version = rx->version = 0x0304;
	tx->cipher = rx->cipher = cipher;
	tx->seq = c->tx_app_records;
	rx->seq = 0;
	return 0;
}

static int export12(struct hs_conn *c, uint8_t cipher, size_t keylen, const char *md, struct ktls_keys *tx,
		    struct ktls_keys *rx)
{
	uint8_t master[48], cr[32], sr[32], kb[2 * 32 + 2 * 12];
	size_t ivlen = cipher == KTLS_CHACHA20_POLY1305 ? 12 : 4; /* GCM: 4-byte implicit salt */
	size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(c->ssl), master, sizeof(master));
	if (mlen == 0 || SSL_get_client_random(c->ssl, cr, 32) != 32 || SSL_get_server_random(c->ssl, sr, 32) != 32)
		return -ENOKEY;
	int rc = hs_kdf_tls12_prf(md, master, mlen, "key expansion", sr, 32, cr, 32, kb, 2 * keylen + 2 * ivlen);
	if (!rc) {
		/* key block: client key, server key, client IV, server IV (no MAC keys for AEADs) */
		memcpy(rx->key, kb, keylen);
		memcpy(tx->key, kb + keylen, keylen);
		memcpy(rx->iv, kb + 2 * keylen, ivlen);
		memcpy(tx->iv, kb + 2 * keylen + ivlen, ivlen);
		tx->version = rx->version = 0x0303;
		tx->cipher = rx->cipher = cipher;
		/* the Finished messages were record 0 under these keys */
		tx->seq = rx->seq = 1;
		if (cipher != KTLS_CHACHA20_POLY1305) {
			/* GCM explicit nonce: we choose the record sequence (RFC 5288 allows it);
			 * for RX the kernel reads the peer's from each record */
			for (int i = 0; i < 8; i++)
				tx->iv[4 + i] = (uint8_t)(tx->seq >> (56 - 8 * i));
		}
	}
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(kb, sizeof(kb));
	return rc;
}

int hs_traffic_update(struct hs_traffic *tr, int client, struct ktls_keys *k)
{
	uint8_t next[48];
	uint8_t *sec = client ? tr->client : tr->server;
	const char *md = tr->len == 48 ? "SHA384" : "SHA256";
	size_t keylen = tr->cipher == KTLS_AES_128_GCM ? 16 : 32;
	memset(k, 0, sizeof(*k));
	if (tr->len != 32 && tr->len != 48)
		return -EINVAL;
	/* RFC 8446 7.2: application_traffic_secret_N+1 =
	 *   HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length) */
	int rc = hs_kdf_tls13_expand(md, sec, tr->len, "traffic upd", next, tr->len);
	if (!rc) {
		memcpy(sec, next, tr->len);
		if (hs_kdf_tls13_expand(md, sec, tr->len, "key", k->key, keylen) ||
		    hs_kdf_tls13_expand(md, sec, tr->len, "iv", k->iv, 12))
			rc = -EINVAL;
	}
	OPENSSL_cleanse(next, sizeof(next));
	k->version = 0x0304;
	k->cipher = tr->cipher;
	k->seq = 0;
	return rc;
}

void hs_traffic_wipe(struct hs_traffic *tr)
{
	OPENSSL_cleanse(tr, sizeof(*tr));
}

int hs_conn_export_keys(struct hs_conn *c, struct ktls_keys *tx, struct ktls_keys *rx, struct hs_traffic *tr)
{
	uint8_t cipher;
	size_t keylen;
	const char *md;
	int rc;
	memset(tx, 0, sizeof(*tx));
	memset(rx, 0, sizeof(*rx));
	if (!SSL_is_init_finished(c->ssl))
		rc = -EAGAIN;
	else if (SSL_has_pending(c->ssl) || BIO_ctrl_pending(c->rbio))
		rc = -EBUSY; /* records past the client Finished are buffered here */
	else if ((rc = suite_params(SSL_get_current_cipher(c->ssl), &cipher, &keylen, &md)) == 0)
		rc = SSL_version(c->ssl) == TLS1_3_VERSION ? export13(c, cipher, keylen, md, tx, rx)
		   : SSL_version(c->ssl) == TLS1_2_VERSION ? export12(c, cipher, keylen, md, tx, rx)
							   : -ENOTSUP;
	if (tr) {
		memset(tr, 0, sizeof(*tr));
		if (!rc && tx->version == 0x0304 && c->sec_c_len == c->sec_s_len &&
		    c->sec_c_len <= sizeof(tr->client)) {
			memcpy(tr->client, c->sec_c, c->sec_c_len);
			memcpy(tr->server, c->sec_s, c->sec_s_len);
			tr->len = c->sec_c_len;
			tr->cipher = tx->cipher;
		}
	}
	OPENSSL_cleanse(c->sec_c, sizeof(c->sec_c));
	OPENSSL_cleanse(c->sec_s, sizeof(c->sec_s));
	c->sec_c_len = c->sec_s_len = 0;
	return rc;
}
