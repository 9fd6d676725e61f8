// SPDX-License-Identifier: MIT
// One TLS server connection over memory BIOs. Where keys may move to the kernel,
// the caller feeds whole records during the handshake (never more), so nothing
// beyond the client Finished is buffered here when they do.
#include "hs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/buffer.h>
#include <openssl/err.h>

void hs_conn_set_reason(struct hs_conn *c, const char *r)
{
	if (!c->reason[0])
		snprintf(c->reason, sizeof(c->reason), "%.*s", (int)sizeof(c->reason) - 1, r);
}

int hs_conn_new(struct hs_ctx *ctx, int direct, struct hs_conn **out)
{
	struct hs_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ssl = SSL_new(ctx->ssl);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return -ENOMEM;
	}
	/* an empty input BIO means "retry later", not EOF */
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_accept_state(c->ssl);
	SSL_set_ex_data(c->ssl, hs_ssl_index, c);
	hs_ctx_get(ctx);
	c->ctx = ctx;
	c->direct = direct;
	*out = c;
	return 0;
}

void hs_conn_free(struct hs_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl); /* frees both BIOs */
	hs_ctx_put(c->ctx);
	free(c->users);
	OPENSSL_cleanse(c, sizeof(*c)); /* traffic secrets, if never exported */
	free(c);
}

int hs_conn_feed(struct hs_conn *c, const void *buf, size_t len)
{
	if (len && BIO_write(c->rbio, buf, (int)len) != (int)len) {
		ERR_clear_error();
		return -ENOMEM;
	}
	return 0;
}

/* SSL_get_error() needs an empty error queue before each I/O call; emptying a queue
 * that is already empty costs ~400 instructions a call in OpenSSL 3.0, so look first. */
static void err_reset(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

/* Whether the input BIO holds at least one whole TLS record. */
static int whole_record_buffered(struct hs_conn *c)
{
	char *p = NULL;
	long n = BIO_get_mem_data(c->rbio, &p);
	if (n < 5 || !p)
		return 0;
	const unsigned char *h = (const unsigned char *)p;
	return n >= 5 + ((long)h[3] << 8 | h[4]);
}

/* Map an SSL_* failure to our errno contract and remember why. */
static int ssl_fail(struct hs_conn *c, int ret)
{
	int e = SSL_get_error(c->ssl, ret);
	char ossl[256];
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -EPIPE;
	default:
		hs_err_drain(ossl, sizeof(ossl));
		hs_conn_set_reason(c, ossl[0] ? ossl : "TLS protocol error");
		return -EPROTO;
	}
}

int hs_conn_handshake(struct hs_conn *c)
{
	err_reset();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return 1;
	r = ssl_fail(c, r);
	return r == -EPIPE ? -EPROTO : r;
}

int hs_conn_read(struct hs_conn *c, void *buf, size_t cap)
{
	size_t n = 0;
	/* Right after a record was read, OpenSSL (read-ahead off) holds nothing of the next
	 * one: without a whole record in the BIO the call could only say "want read". */
	if (c->at_boundary && !SSL_pending(c->ssl) && !whole_record_buffered(c))
		return 0;
	err_reset();
	if (SSL_read_ex(c->ssl, buf, cap, &n)) {
		c->at_boundary = 1;
		return (int)n;
	}
	c->at_boundary = 0;
	return ssl_fail(c, 0);
}

int hs_conn_write(struct hs_conn *c, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		size_t n = 0;
		err_reset();
		/* memory BIOs never push back, so a write completes unless fatal */
		if (!SSL_write_ex(c->ssl, (const char *)buf + done, len - done, &n))
		{
			ssl_fail(c, 0);
			return -EPROTO;
		}
		done += n;
	}
	return 0;
}

void hs_conn_close_notify(struct hs_conn *c)
{
	ERR_clear_error();
	if (SSL_is_init_finished(c->ssl))
		SSL_shutdown(c->ssl);
	ERR_clear_error();
}

/* Written minus read: two counters the BIO keeps, cheaper than a BIO_ctrl round trip
 * on the relay's every read. */
size_t hs_conn_pending_out(const struct hs_conn *c)
{
	return (size_t)(BIO_number_written(c->wbio) - BIO_number_read(c->wbio));
}

size_t hs_conn_drain(struct hs_conn *c, void *buf, size_t cap)
{
	int n = BIO_read(c->wbio, buf, (int)cap);
	return n > 0 ? (size_t)n : 0;
}

long hs_conn_send_out(struct hs_conn *c, int fd)
{
	char *p = NULL, junk[256];
	long len = BIO_get_mem_data(c->wbio, &p); /* the unread part, in place */
	if (len <= 0 || !p)
		return 0;
	ssize_t n = send(fd, p, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (ssize_t left = n; left > 0;) { /* then consume what went out */
		int r = BIO_read(c->wbio, junk, left < (ssize_t)sizeof(junk) ? (int)left : (int)sizeof(junk));
		if (r <= 0)
			break;
		left -= r;
	}
	return (long)n;
}

void hs_conn_release_buffers(struct hs_conn *c)
{
	SSL_free_buffers(c->ssl); /* refuses, harmlessly, while part of a record is held */
}

/* A memory BIO's buffer only grows, to the largest burst it ever held (a 64 KiB relay
 * write: over 80 KiB). Where that is over 4 KiB and at least twice what it holds, a
 * new BIO takes the bytes held (part of a record in, records not yet sent out) and
 * replaces it; NULL keeps b. */
static BIO *compacted(BIO *b)
{
	BUF_MEM *bm = NULL;
	char *p = NULL;
	BIO_get_mem_ptr(b, &bm); /* first: it moves what is held to the buffer's start */
	long n = BIO_get_mem_data(b, &p);
	if (!bm || n < 0 || bm->max <= 4096 || (size_t)n > bm->max / 2)
		return NULL;
	BIO *nb = BIO_new(BIO_s_mem());
	if (nb && n && BIO_write(nb, p, (int)n) != (int)n) {
		BIO_free(nb);
		nb = NULL;
	}
	return nb;
}

void hs_conn_shrink_bios(struct hs_conn *c)
{
	BIO *b = compacted(c->wbio);
	if (b) {
		SSL_set0_wbio(c->ssl, b); /* frees the old one */
		c->wbio = b;
	}
	if ((b = compacted(c->rbio))) {
		BIO_set_mem_eof_return(b, -1);
		SSL_set0_rbio(c->ssl, b);
		c->rbio = b;
	}
	ERR_clear_error();
}

const char *hs_conn_reason(const struct hs_conn *c) { return c->reason; }
const char *hs_conn_version(const struct hs_conn *c) { return SSL_get_version(c->ssl); }

const char *hs_conn_cipher(const struct hs_conn *c)
{
	const char *n = SSL_get_cipher_name(c->ssl);
	return n ? n : "";
}

const char *hs_conn_sni(const struct hs_conn *c)
{
	const char *n = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
	return n ? n : "";
}

const char *hs_conn_alpn(const struct hs_conn *c)
{
	const unsigned char *p;
	unsigned n;
	SSL_get0_alpn_selected(c->ssl, &p, &n);
	return n == 10 ? "postgresql" : "";
}

const char *hs_conn_peer(const struct hs_conn *c) { return c->peer; }

int hs_conn_take_users(struct hs_conn *c, char **users)
{
	*users = NULL;
	if (c->ctx->s.user_match == HS_USER_ANY)
		return 0;
	/* no verify callback ran (no certificate): no user */
	*users = c->users ? c->users : calloc(2, 1);
	c->users = NULL;
	return 1;
}
