// SPDX-License-Identifier: MIT
// Key derivation for kTLS against published vectors: RFC 8448 section 3
// (TLS 1.3 application traffic keys) and the TLS 1.2 PRF (SHA-256) vector.
// KeyUpdate ("traffic upd") has no published vector: OpenSSL rekeys a real
// client, and the record it sends next must open with the key we derive.
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "handshake.h"
#include "selfsigned.h"
#include "tap.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;
	for (; h[0] && h[1];) {
		if (h[0] == ' ') {
			h++;
			continue;
		}
		unsigned v;
		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

static int same(const uint8_t *got, const char *want_hex)
{
	uint8_t w[128];
	size_t n = unhex(want_hex, w);
	return memcmp(got, w, n) == 0;
}

static uint8_t cli_secret[48];
static size_t cli_secret_len;

static void keylog(const SSL *ssl, const char *line)
{
	(void)ssl;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		cli_secret_len = unhex(strrchr(line, ' ') + 1, cli_secret);
}

/* Move what a wrote to b. */
static void pump(SSL *a, SSL *b)
{
	char buf[16384];
	int n;
	while ((n = BIO_read(SSL_get_wbio(a), buf, sizeof(buf))) > 0)
		BIO_write(SSL_get_rbio(b), buf, n);
}

/* Open one TLS 1.3 record (header + ciphertext + tag) with k; plaintext length or -1. */
static int open_record(const struct ktls_keys *k, const uint8_t *rec, size_t len, uint8_t *out)
{
	const EVP_CIPHER *ciph = k->cipher == KTLS_AES_128_GCM ? EVP_aes_128_gcm()
			       : k->cipher == KTLS_AES_256_GCM ? EVP_aes_256_gcm()
							       : EVP_chacha20_poly1305();
	uint8_t nonce[12];
	memcpy(nonce, k->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(k->seq >> (56 - 8 * i));
	if (len < 5 + 16)
		return -1;
	int n = (int)(len - 5 - 16), m = 0, ok = 0;
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	if (x && EVP_DecryptInit_ex(x, ciph, NULL, k->key, nonce) && EVP_DecryptUpdate(x, NULL, &m, rec, 5) &&
	    EVP_DecryptUpdate(x, out, &m, rec + 5, n) &&
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(rec + 5 + n)) &&
	    EVP_DecryptFinal_ex(x, out + m, &m))
		ok = 1;
	EVP_CIPHER_CTX_free(x);
	return ok ? n : -1;
}

/* Handshake a client and a server over memory BIOs with one suite, then let the
 * client send KeyUpdate + data twice; the data must open with our next keys. */
static void keyupdate_suite(const char *suite, uint8_t cipher, uint8_t hashlen, EVP_PKEY *pk, X509 *crt)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_use_certificate(sctx, crt);
	SSL_CTX_use_PrivateKey(sctx, pk);
	SSL_CTX_set_ciphersuites(cctx, suite);
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	SSL_CTX_set_keylog_callback(cctx, keylog);
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	SSL_set_bio(s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	cli_secret_len = 0;
	for (int i = 0; i < 10 && !(SSL_is_init_finished(c) && SSL_is_init_finished(s)); i++) {
		SSL_do_handshake(c);
		pump(c, s);
		SSL_do_handshake(s);
		pump(s, c);
	}
	ok(SSL_is_init_finished(c) && cli_secret_len == hashlen, "%s: handshake done, client secret captured", suite);
	struct hs_traffic tr = { .len = (uint8_t)cli_secret_len, .cipher = cipher };
	memcpy(tr.client, cli_secret, sizeof(tr.client));
	for (int round = 1; round <= 2; round++) {
		uint8_t rec[4096], pt[4096];
		struct ktls_keys k;
		SSL_key_update(c, SSL_KEY_UPDATE_NOT_REQUESTED);
		SSL_write(c, "ping", 4);
		int n = BIO_read(SSL_get_wbio(c), rec, sizeof(rec));
		/* record 1: the KeyUpdate under the old key; record 2: "ping" under the new one */
		size_t r1 = n >= 5 ? 5 + (size_t)(rec[3] << 8 | rec[4]) : 0;
		is(hs_traffic_update(&tr, 1, &k), 0, "%s: update %d derived", suite, round);
		int m = r1 && (size_t)n > r1 ? open_record(&k, rec + r1, (size_t)n - r1, pt) : -1;
		ok(m == 5 && memcmp(pt, "ping\x17", 5) == 0 && k.seq == 0,
		   "%s: after KeyUpdate %d the client's next record opens with the derived key (seq 0)", suite, round);
		ktls_keys_wipe(&k);
	}
	struct ktls_keys k;
	is(hs_traffic_update(&(struct hs_traffic){ .len = 0 }, 1, &k), -EINVAL, "%s: no secrets -> -EINVAL", suite);
	hs_traffic_wipe(&tr);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

int main(void)
{
	uint8_t sec[64], out[128];
	size_t n = unhex("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
			 sec);
	is(hs_kdf_tls13_expand("SHA256", sec, n, "key", out, 16), 0, "TLS 1.3 expand (server key) runs");
	ok(same(out, "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"), "RFC 8448 server application key");
	is(hs_kdf_tls13_expand("SHA256", sec, n, "iv", out, 12), 0, "TLS 1.3 expand (server iv) runs");
	ok(same(out, "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"), "RFC 8448 server application iv");
	n = unhex("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5", sec);
	hs_kdf_tls13_expand("SHA256", sec, n, "key", out, 16);
	ok(same(out, "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"), "RFC 8448 client application key");
	hs_kdf_tls13_expand("SHA256", sec, n, "iv", out, 12);
	ok(same(out, "5b 78 92 3d ee 08 57 90 33 e5 23 d9"), "RFC 8448 client application iv");
	is(hs_kdf_tls13_expand("NOPE", sec, n, "iv", out, 12), -EINVAL, "unknown digest refused");

	/* TLS 1.2 PRF with SHA-256: the widely used "test label" vector */
	uint8_t s[16], seed[16];
	unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35", s);
	unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c", seed);
	is(hs_kdf_tls12_prf("SHA256", s, 16, "test label", seed, 16, seed, 0, out, 100), 0, "TLS 1.2 PRF runs");
	ok(same(out, "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a"),
	   "TLS 1.2 PRF SHA-256 vector (first 32 bytes)");
	/* s1 || s2 must equal one concatenated seed */
	uint8_t a[100], b[100];
	hs_kdf_tls12_prf("SHA256", s, 16, "key expansion", seed, 8, seed + 8, 8, a, 100);
	hs_kdf_tls12_prf("SHA256", s, 16, "key expansion", seed, 16, seed, 0, b, 100);
	ok(memcmp(a, b, 100) == 0, "split seed equals the concatenated seed");

	EVP_PKEY *pk = NULL;
	X509 *crt = NULL;
	ok(selfsigned_make(&pk, &crt) == 0, "test certificate made");
	keyupdate_suite("TLS_AES_128_GCM_SHA256", KTLS_AES_128_GCM, 32, pk, crt);
	keyupdate_suite("TLS_AES_256_GCM_SHA384", KTLS_AES_256_GCM, 48, pk, crt);
	keyupdate_suite("TLS_CHACHA20_POLY1305_SHA256", KTLS_CHACHA20_POLY1305, 32, pk, crt);
	X509_free(crt);
	EVP_PKEY_free(pk);
	return done_testing();
}
