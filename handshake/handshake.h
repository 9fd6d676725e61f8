// SPDX-License-Identifier: MIT
// TLS termination in user space with OpenSSL over memory BIOs: the caller moves
// ciphertext between the socket and this module, so no call here ever blocks.
// This is the only module that includes OpenSSL headers.
#ifndef KS_HANDSHAKE_H
#define KS_HANDSHAKE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "ktls.h"

struct hs_ctx;
struct hs_conn;

#define PG_USER_MAX 63 /* PostgreSQL's NAMEDATALEN - 1: it cuts longer user names */
#define MAP_IDENT_MAX 1024 /* bytes of a user map identity after its CN=/DN:/DNS:/URI: prefix */

/* --client-user-match: none; the subject CN is the one user; the users of --client-user-map. */
enum hs_user_match { HS_USER_ANY, HS_USER_CN, HS_USER_MAP };

struct hs_settings {
	const char *cert, *key, *client_ca;
	const char *client_crl;     /* PEM CRLs checked against client chains; NULL or "" for none */
	int verify;                 /* 0 none, 1 optional, 2 require */
	int user_match;             /* enum hs_user_match: which users a certificate may log in as */
	const char *user_map;       /* HS_USER_MAP: the map file */
	const struct hs_ctx *keep_map; /* HS_USER_MAP: share this context's map instead of reading the file */
	char *const *allow_cn;
	size_t n_allow_cn;
	char *const *allow_dns;
	size_t n_allow_dns;
	char *const *allow_uri;
	size_t n_allow_uri;
	int min_tls13;              /* 1: TLS 1.3 only */
	const char *ciphers, *ciphersuites;
	int export_keys;            /* capture secrets so keys can move to kTLS */
};

/* Build a server context from s. 0 or -errno with a reason in err. */
int hs_ctx_load(const struct hs_settings *s, struct hs_ctx **out, char *err, size_t errlen);
/* Drop a reference; the context lives while connections use it. */
void hs_ctx_put(struct hs_ctx *ctx);
/* "subject=... notAfter=..." of the loaded certificate, for logs and show info. */
const char *hs_ctx_describe(const struct hs_ctx *ctx);
/* Subject, subjectAltNames, serial (hex) and notAfter (ISO 8601 UTC, and Unix time)
 * of the loaded certificate; 1 if it has expired. */
const char *hs_ctx_subject(const struct hs_ctx *ctx);
const char *hs_ctx_sans(const struct hs_ctx *ctx);
const char *hs_ctx_serial(const struct hs_ctx *ctx);
const char *hs_ctx_not_after(const struct hs_ctx *ctx);
long long hs_ctx_not_after_unix(const struct hs_ctx *ctx);
int hs_ctx_expired(const struct hs_ctx *ctx);
/* How many CAs have a client CRL (the newest of each counts); *stale: how many of
 * those are past their nextUpdate now (OpenSSL then refuses every certificate of that
 * CA); *next_update: the earliest nextUpdate (0 if none). */
int hs_ctx_crls(const struct hs_ctx *ctx, int *stale, long long *next_update);
/* With client CRLs: how many client CAs have none (their clients are all refused),
 * and *first the subject of one of them. */
int hs_ctx_cas_without_crl(const struct hs_ctx *ctx, const char **first);
/* --client-user-match of the context: enum hs_user_match. */
int hs_ctx_user_match(const struct hs_ctx *ctx);
/* --client-user-map: how many rules are in service; -1 without a map. */
int hs_ctx_user_map_rules(const struct hs_ctx *ctx);
/* `ktls-sidecar check --client-cert FILE [--pg-user USER]`: what a handshake would make
 * of the certificate chain in FILE (PEM, the certificate first): its chain against the
 * client CAs and CRLs, the allow-lists, the users it may log in as, and whether USER
 * is one of them. A report on f; 1 admitted, 0 refused, -errno cannot tell. */
int hs_ctx_check_client(struct hs_ctx *ctx, const char *file, const char *user, FILE *f);
/* notBefore (ISO 8601 UTC) if the certificate is not valid yet, else NULL. */
const char *hs_ctx_not_before(const struct hs_ctx *ctx);
/* OpenSSL version string. */
const char *hs_openssl_version(void);

/* New server-side connection. direct: PostgreSQL 17 direct TLS (ALPN required). 0 or -ENOMEM. */
int hs_conn_new(struct hs_ctx *ctx, int direct, struct hs_conn **out);
void hs_conn_free(struct hs_conn *c);
/* Queue ciphertext received from the client. 0 or -ENOMEM. */
int hs_conn_feed(struct hs_conn *c, const void *buf, size_t len);
/* Advance the handshake: 1 done, 0 wants more input, -EPROTO failed (see hs_conn_reason). */
int hs_conn_handshake(struct hs_conn *c);
/* Decrypt up to cap bytes: >0 bytes, 0 wants more input, -EPIPE close_notify, -EPROTO fatal. */
int hs_conn_read(struct hs_conn *c, void *buf, size_t cap);
/* Encrypt len bytes into the output queue. 0 or -EPROTO. */
int hs_conn_write(struct hs_conn *c, const void *buf, size_t len);
/* Queue a close_notify alert. */
void hs_conn_close_notify(struct hs_conn *c);
/* Bytes of ciphertext waiting to be sent. */
size_t hs_conn_pending_out(const struct hs_conn *c);
/* Move up to cap bytes of ciphertext to buf; returns the count. */
size_t hs_conn_drain(struct hs_conn *c, void *buf, size_t cap);
/* Send the queued ciphertext to fd without blocking; what the socket does not take
 * stays queued, in order. Bytes sent, or -errno (not -EAGAIN: that sends 0). */
long hs_conn_send_out(struct hs_conn *c, int fd);
/* Give back OpenSSL's record buffers of an idle connection (kept while it is busy). */
void hs_conn_release_buffers(struct hs_conn *c);
/* Give back what the ciphertext BIOs grew to beyond what they hold (an idle
 * connection). Safe while sends are in flight: none reads from the BIOs. */
void hs_conn_shrink_bios(struct hs_conn *c);

/* TLS 1.3 application traffic secrets, kept while the kernel holds the keys so that
 * a KeyUpdate (RFC 8446 4.6.3) can be followed. len 0: not TLS 1.3, nothing kept. */
struct hs_traffic {
	uint8_t client[48], server[48];
	uint8_t len;      /* 32 (SHA-256 suites) or 48 (SHA-384) */
	uint8_t cipher;   /* enum ktls_cipher */
};

/* Derive both directions' record state for kTLS after the handshake; for TLS 1.3 also
 * hand over the traffic secrets to tr (may be NULL). 0, -EBUSY (bytes past the client
 * Finished are buffered: stay in user space), -ENOTSUP (suite), -ENOKEY. */
int hs_conn_export_keys(struct hs_conn *c, struct ktls_keys *tx, struct ktls_keys *rx, struct hs_traffic *tr);
/* KeyUpdate: advance one direction's secret ("traffic upd") and derive its next record
 * state (sequence 0) into k. client: the client's (our RX) direction. 0 or -EINVAL. */
int hs_traffic_update(struct hs_traffic *tr, int client, struct ktls_keys *k);
/* Wipe the secrets. */
void hs_traffic_wipe(struct hs_traffic *tr);
/* TLS 1.3 HKDF-Expand-Label(secret, label, "", outlen) with md "SHA256"/"SHA384". 0 or -EINVAL. */
int hs_kdf_tls13_expand(const char *md, const uint8_t *secret, size_t slen, const char *label, uint8_t *out,
			size_t outlen);
/* TLS 1.2 PRF(secret, label, s1 || s2). 0 or -EINVAL. */
int hs_kdf_tls12_prf(const char *md, const uint8_t *secret, size_t slen, const char *label, const uint8_t *s1,
		     size_t s1len, const uint8_t *s2, size_t s2len, uint8_t *out, size_t outlen);

/* Why the handshake or a read failed ("" if it did not). */
const char *hs_conn_reason(const struct hs_conn *c);
/* "TLSv1.3", cipher name, SNI (or ""), ALPN (or ""), client identity (or ""). */
const char *hs_conn_version(const struct hs_conn *c);
const char *hs_conn_cipher(const struct hs_conn *c);
const char *hs_conn_sni(const struct hs_conn *c);
const char *hs_conn_alpn(const struct hs_conn *c);
const char *hs_conn_peer(const struct hs_conn *c);
/* --client-user-match: 0 when c's context lets a client log in as any user. Else 1,
 * and *users gets the users its certificate may log in as, "a\0b\0\0" ("\0" for
 * none), for the caller to free; NULL when out of memory. */
int hs_conn_take_users(struct hs_conn *c, char **users);
/* Client user maps (pure, in usermap.c): one rule a line, an identity (CN=name exact,
 * DN:subject exact in RFC 2253 form, DNS:name or DNS:*.suffix, URI:glob as in
 * --allow-uri; or any of them with a /POSIX-regex, whose first group \1 in a user
 * stands for) then the users it may log in as; '#' starts a comment. */
struct user_map;
/* Parse len bytes of text. 0, -ENOMEM, or -EINVAL with "line N: why" in err. */
int user_map_parse(const char *text, size_t len, struct user_map **out, char *err, size_t errlen);
/* Drop a reference (user_map_parse gives one); user_map_ref takes another. */
void user_map_free(struct user_map *m);
struct user_map *user_map_ref(struct user_map *m);
size_t user_map_rules(const struct user_map *m);
/* The users of every rule the certificate names match, "a\0b\0\0" in a new buffer
 * (*out; "\0" when none). dn: the subject in RFC 2253 form (NULL or "" for none).
 * 0 or -ENOMEM. */
int user_map_users(const struct user_map *m, const char *cn, const char *dn, const char *const *dns, size_t ndns,
		   const char *const *uris, size_t nuris, char **out);
/* 1 if user is in such a list, and no longer than PostgreSQL keeps it whole. */
int user_list_has(const char *list, const char *user);

/* Allow-list matching (pure, in allow.c). */
/* DNS name against "name" or "*.suffix" (one label), case-insensitive. 1 match, 0 not. */
int allow_match_dns(const char *pattern, const char *name);
/* URI against a glob: '*' matches within one path segment, a trailing '*' any rest. */
int allow_match_uri(const char *pattern, const char *uri);
/* 1 if any rule matches (or there are no rules), else 0. */
int allow_check(const struct hs_settings *s, const char *cn, const char *const *dns, size_t ndns,
		const char *const *uris, size_t nuris);
struct x509_st;
/* The allow-lists of s against a client certificate's CN and DNS/URI SANs. 1 admitted,
 * 0 refused with the reason in *why. peer gets the name to log: the first URI SAN, else CN=. */
int hs_identity_check(const struct hs_settings *s, struct x509_st *cert, char *peer, size_t peerlen, const char **why);

#endif
