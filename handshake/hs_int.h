// SPDX-License-Identifier: MIT
// Private to handshake/: the context and connection structs.
#ifndef KS_HS_INT_H
#define KS_HS_INT_H

#include "handshake.h"

#include <stdatomic.h>
#include <openssl/ssl.h>

struct hs_ctx {
	SSL_CTX *ssl;
	atomic_int refs;
	struct hs_settings s;      /* allow-lists point at the copies below */
	char **cn, **dns, **uri;
	struct user_map *user_map;  /* --client-user-map, parsed */
	char desc[512];
	char subject[256], sans[512], not_after[64], not_before[64], serial[100];
	long long not_after_unix;   /* 0 if unknown */
	int expired, not_yet_valid;
	/* client CRLs: the newest nextUpdate (Unix time, 0 if it has none) of each issuer
	 * that has one, as OpenSSL uses the newest; and the client CAs without a CRL */
	long long *crl_next;
	int crl_issuers;
	int cas_without_crl;
	char ca_without_crl[256];   /* the subject of the first of them */
};

struct hs_conn {
	SSL *ssl;
	BIO *rbio, *wbio;          /* memory BIOs: ciphertext in / out */
	struct hs_ctx *ctx;
	int direct;
	char reason[192];
	char peer[192];
	char *users;               /* --client-user-match: set by the verify callback */
	uint8_t sec_c[64], sec_s[64];   /* TLS 1.3 application traffic secrets, until exported */
	uint8_t sec_c_len, sec_s_len;
	uint32_t tx_app_records;        /* records sent under application keys */
	uint8_t at_boundary;            /* the last SSL_read returned data: OpenSSL holds no
	                                   part of a record beyond SSL_pending() */
};

extern int hs_ssl_index;
void hs_err_drain(char *buf, size_t len);
void hs_conn_set_reason(struct hs_conn *c, const char *r);
void hs_ctx_get(struct hs_ctx *ctx);
void hs_keys_setup_ctx(SSL_CTX *ctx);

#endif
