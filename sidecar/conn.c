// SPDX-License-Identifier: MIT
// The connection state machine up to the relay: PostgreSQL startup
// negotiation, the TLS handshake fed record by record, the move to kTLS, the
// first packet inside TLS, the backend connect, and the connection's life and
// death. It runs unchanged on either engine: every I/O is an engine op whose
// completion comes back through conn_complete(). The data path is relay.c.
#include "conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "handshake.h"
#include "ktls.h"
#include "log.h"
#include "pgproto.h"

const char *const close_reason_names[CR__COUNT] = {
	[CR_EOF] = "eof",
	[CR_CLIENT_RESET] = "client_error",
	[CR_BACKEND_RESET] = "backend_error",
	[CR_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[CR_HANDSHAKE_FAILED] = "handshake_failed",
	[CR_PROTOCOL] = "protocol_error",
	[CR_PLAINTEXT_REFUSED] = "plaintext_refused",
	[CR_BACKEND_CONNECT] = "backend_connect_failed",
	[CR_IDLE_TIMEOUT] = "idle_timeout",
	[CR_CANCEL] = "cancel_forwarded",
	[CR_SHUTDOWN] = "shutdown",
	[CR_KEYUPDATE] = "keyupdate_unsupported",
	[CR_INTERNAL] = "internal_error",
	[CR_DRAIN_IDLE] = "drain_idle",
	[CR_IDLE_TX_TIMEOUT] = "idle_in_transaction_timeout",
	[CR_USER_MISMATCH] = "cert_user_mismatch",
};

static void cli_read_exact(struct conn *c);
static void negotiate_more(struct conn *c);
static void drop_unread(struct conn *c);
static void flush_client(struct conn *c);

static int conn_busy(const struct conn *c)
{
	return c->cli_rd.pending || c->cli_wr.pending || c->be_rd.pending || c->be_wr.pending;
}

void conn_log(struct conn *c, enum log_level lvl, const char *msg, const char *extra)
{
	char addr[64];
	net_addr_str(&c->peer, addr, sizeof(addr));
	log_msg(lvl, "conn", msg, "conn=%llu client=%s%s%s", (unsigned long long)c->id, addr, extra && *extra ? " " : "",
		extra ? extra : "");
}

/* Over --max-conns: refuse at once, with no buffers and no handshake work, the way
 * PostgreSQL does when it is full: one FATAL written without reading or waiting (a
 * new socket's send buffer is empty), then close. libpq shows it whether it sent an
 * SSLRequest or a startup packet. Counted always, logged at most every 10 s (by whichever worker). */
static void refuse_full(struct worker *w, int fd)
{
	uint8_t pkt[96];
	STAT_INC(w, refused_max);
	int n = pg_error_response(pkt, sizeof(pkt), "FATAL", "53300", "sorry, too many clients already");
	if (n > 0)
		(void)send(fd, pkt, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL); /* best effort */
	engine_close(w->eng, fd);
	struct sidecar *sc = w->sc;
	atomic_fetch_add(&sc->refused_unlogged, 1);
	uint64_t last = atomic_load(&sc->refuse_logged_ms);
	/* each worker has its own clock reading: one a little behind the last is recent too */
	if ((last && w->now_ms < last + 10000) || !atomic_compare_exchange_strong(&sc->refuse_logged_ms, &last, w->now_ms))
		return; /* said less than 10 s ago, or another worker says it now */
	log_warn("conn", "max-conns reached: refusing new connections", "max_conns=%d refused=%llu", sc->cfg->max_conns,
		 (unsigned long long)atomic_exchange(&sc->refused_unlogged, 0));
}

void conn_accept(struct worker *w, int fd)
{
	struct sidecar *sc = w->sc;
	STAT_INC(w, accepted);
	if (atomic_fetch_add(&sc->nconns, 1) >= sc->cfg->max_conns) {
		atomic_fetch_sub(&sc->nconns, 1);
		refuse_full(w, fd);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (c)
		c->cbuf = bufpool_get(&w->bufs);
	if (!c || !c->cbuf) {
		free(c);
		atomic_fetch_sub(&sc->nconns, 1);
		engine_close(w->eng, fd);
		log_error("conn", "out of memory accepting a connection", "fd=%d", fd);
		return;
	}
	c->w = w;
	c->id = atomic_fetch_add(&sc->next_conn_id, 1) + 1;
	c->cfd = fd;
	c->bfd = -1;
	c->c2b.pipe[0] = c->c2b.pipe[1] = c->b2c.pipe[0] = c->b2c.pipe[1] = -1;
	c->cli_rd.kind = K_CLI_RD;
	c->cli_wr.kind = K_CLI_WR;
	c->be_rd.kind = K_BE_RD;
	c->be_wr.kind = K_BE_WR;
	socklen_t l = sizeof(c->peer);
	getpeername(fd, (struct sockaddr *)&c->peer, &l);
	l = sizeof(c->local);
	getsockname(fd, (struct sockaddr *)&c->local, &l);
	/* TCP_NODELAY: inherited from the listener (net_listen) */
	c->started_ms = c->active_ms = w->now_ms;
	c->deadline_ms = w->now_ms + (uint64_t)sc->cfg->handshake_timeout_ms;
	pthread_mutex_lock(&w->conns_lock);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	pthread_mutex_unlock(&w->conns_lock);
	STAT_INC(w, active);
	c->phase = PH_NEGOTIATE;
	c->have = 0;
	c->need = PG_LEN_HDR; /* a startup packet's length, or a TLS record's first bytes */
	negotiate_more(c);
}

static void conn_free(struct conn *c)
{
	struct worker *w = c->w;
	char extra[900], peer[200], user[140], db[140];
	snprintf(extra, sizeof(extra), "reason=%s tls=%s cipher=%s peer=\"%s\" user=\"%s\" database=\"%s\" "
		 "ktls=%s bytes_in=%llu bytes_out=%llu duration_ms=%llu error=\"%s\"",
		 close_reason_names[c->reason], c->tls_version[0] ? c->tls_version : "none",
		 c->tls_cipher[0] ? c->tls_cipher : "none", log_esc(peer, sizeof(peer), c->tls_peer),
		 log_esc(user, sizeof(user), c->user),
		 log_esc(db, sizeof(db), c->database),
		 c->ktls_tx && c->ktls_rx ? "tx+rx" : c->ktls_tx ? "tx" : c->ktls_rx ? "rx" : "off",
		 (unsigned long long)c->bytes_in,
		 (unsigned long long)c->bytes_out, (unsigned long long)(w->now_ms - c->started_ms),
		 c->err > 0 ? strerror(c->err) : "");
	conn_log(c, LOG_INFO, "closed", extra);
	engine_close(w->eng, c->cfd);
	engine_close(w->eng, c->bfd);
	for (int i = 0; i < 2; i++) {
		if (c->c2b.pipe[i] >= 0)
			close(c->c2b.pipe[i]);
		if (c->b2c.pipe[i] >= 0)
			close(c->b2c.pipe[i]);
	}
	hs_conn_free(c->tls);
	hs_traffic_wipe(&c->traffic);
	bufpool_put(&c->w->bufs, c->cbuf);
	bufpool_put(&c->w->bufs, c->bbuf);
	free(c->pkt);
	free(c->cert_users);
	pthread_mutex_lock(&w->conns_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&w->conns_lock);
	if (c->counted_tls) {
		if (c->ktls_tx)
			STAT_ADD(w, active_ktls_tx, (uint64_t)-1);
		if (c->ktls_rx)
			STAT_ADD(w, active_ktls_rx, (uint64_t)-1);
		if (!c->ktls_tx || !c->ktls_rx)
			STAT_ADD(w, active_user_tls, (uint64_t)-1);
	}
	STAT_INC(w, closed[c->reason]);
	STAT_ADD(w, active, (uint64_t)-1);
	atomic_fetch_sub(&w->sc->nconns, 1);
	free(c);
}

/* Best effort, never blocks: tell a TLS client we are closing on purpose (once). */
static void send_close_notify(struct conn *c)
{
	if (!c->tls_version[0] || c->notify_sent)
		return;
	c->notify_sent = 1;
	if (c->ktls_tx) {
		ktls_send_close_notify(c->cfd);
	} else if (c->tls && !c->cli_wr.pending) {
		hs_conn_close_notify(c->tls);
		/* more than the alert (and a FATAL of our own before it, relay_send_fatal)
		 * queued: cut short, it would garble the stream; a client that is gone or not
		 * reading gets nothing */
		if (hs_conn_pending_out(c->tls) <= 512)
			(void)hs_conn_send_out(c->tls, c->cfd);
	}
}

int conn_tls_side_output(struct conn *c)
{
	if (!c->tls || !hs_conn_pending_out(c->tls))
		return 0;
	/* with the sending keys in the kernel, OpenSSL's records cannot go out: only the cap */
	if (!c->cli_wr.pending && !c->ktls_tx) {
		long n = hs_conn_send_out(c->tls, c->cfd);
		if (n < 0) {
			conn_fail(c, CR_CLIENT_RESET, (int)n);
			return -1;
		}
	}
	if (hs_conn_pending_out(c->tls) > TLS_SIDE_OUT_MAX) {
		conn_log(c, LOG_WARN, "client leaves TLS output unread while sending more (KeyUpdate or "
				      "renegotiation flood?), closing", NULL);
		conn_close(c, CR_PROTOCOL);
		return -1;
	}
	return 0;
}

/* Start closing: cancel what is in flight; the last completion frees. */
void conn_fail(struct conn *c, enum close_reason why, int res)
{
	if (!c->err)
		c->err = -res;
	conn_close(c, why);
}

void conn_close(struct conn *c, enum close_reason why)
{
	if (c->phase == PH_CLOSING)
		return;
	/* PostgreSQL's own words for an idle timeout (inside a transaction or not) and
	 * for a shutdown */
	int told = 0;
	if ((why == CR_IDLE_TIMEOUT || why == CR_IDLE_TX_TIMEOUT) && conn_in_transaction(c))
		told = relay_send_fatal(c, "25P03", "terminating connection due to idle-in-transaction timeout");
	else if (why == CR_IDLE_TIMEOUT)
		told = relay_send_fatal(c, "57P05", "terminating connection due to idle-session timeout");
	else if (why == CR_SHUTDOWN || why == CR_DRAIN_IDLE)
		told = relay_send_fatal(c, "57P01", "terminating connection due to administrator command");
	if (why != CR_CLIENT_RESET)
		send_close_notify(c);
	if (told && !c->ktls_rx)
		drop_unread(c); /* a close with unread bytes is a reset, which may overtake the FATAL */
	c->phase = PH_CLOSING;
	c->reason = (uint8_t)why;
	if (!conn_busy(c)) {
		conn_free(c);
		return;
	}
	/* shutdown wakes blocked recv/send on any kernel; cancel covers the rest */
	shutdown(c->cfd, SHUT_RDWR);
	if (c->bfd >= 0)
		shutdown(c->bfd, SHUT_RDWR);
	engine_cancel(E(c), &c->cli_rd);
	engine_cancel(E(c), &c->cli_wr);
	engine_cancel(E(c), &c->be_rd);
	engine_cancel(E(c), &c->be_wr);
}

/* The final answer (an ErrorResponse) is out: a FIN behind it, and what the client
 * sent that was never read (at most 1 MiB) is dropped, so that close() does not
 * send a reset, which some stacks (Windows) let overtake the answer. */
static void close_gently(struct conn *c)
{
	if (c->cli_rd.pending || c->ktls_rx)
		return;
	send_close_notify(c); /* kTLS TX: the alert goes before the FIN, not after */
	shutdown(c->cfd, SHUT_WR);
	drop_unread(c);
}

/* Discard what the client sent that was never read (at most 1 MiB). Not on a kTLS RX
 * socket, which would try to decrypt it. */
static void drop_unread(struct conn *c)
{
	for (int i = 0; i < 16 && recv(c->cfd, NULL, 65536, MSG_DONTWAIT | MSG_TRUNC) > 0; i++)
		;
}

static void cli_read_exact(struct conn *c)
{
	engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf + c->have, c->need - c->have);
}

/* The negotiation reads at least an SSLRequest or GSSENCRequest and one byte more, so
 * that one recv takes a whole request and shows whether the client sent anything
 * behind it; a longer packet is read exactly. */
#define NEG_READ (PG_LEN_HDR + 4 + 1)

static void negotiate_more(struct conn *c)
{
	unsigned upto = c->need > NEG_READ ? c->need : NEG_READ;
	engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf + c->have, upto - c->have);
}

/* Read more of the TLS handshake. With kTLS the reads stop at record boundaries:
 * nothing past the client's Finished may reach user space, since the kernel decrypts
 * from there on. Without kTLS one read takes whatever has arrived (need 0). */
static void handshake_more(struct conn *c)
{
	if (c->w->sc->ktls) {
		cli_read_exact(c);
		return;
	}
	c->have = c->need = 0;
	engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CBUF_SIZE);
}

/* Send a plaintext ErrorResponse (or over TLS once it is up), then close. */
static void fail_with_error(struct conn *c, enum close_reason why, const char *sqlstate, const char *msg)
{
	uint8_t pkt[512];
	int n = pg_error_response(pkt, sizeof(pkt), "FATAL", sqlstate, msg);
	c->reason = (uint8_t)why;
	if (n < 0 || c->cli_wr.pending) {
		conn_close(c, why);
		return;
	}
	if (!conn_buf(c, &c->bbuf)) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	c->phase = PH_FINAL;
	c->after = AF_CLOSE;
	c->deadline_ms = c->w->now_ms + (uint64_t)CFG(c)->handshake_timeout_ms;
	if (c->tls && !c->ktls_tx) {
		if (hs_conn_write(c->tls, pkt, (size_t)n) < 0) {
			conn_close(c, why);
			return;
		}
		hs_conn_close_notify(c->tls);
		flush_client(c);
		return;
	}
	memcpy(c->bbuf, pkt, (size_t)n);
	dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, (unsigned)n);
}

/* Plaintext one-byte answers to SSLRequest ('S') and GSSENCRequest ('N'). */
static void answer_byte(struct conn *c, char b, enum after next)
{
	if (!conn_buf(c, &c->bbuf)) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	c->bbuf[0] = (uint8_t)b;
	c->after = (uint8_t)next;
	dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, 1);
}

/* Validate a TLS record header in cbuf; body length or -1. */
static int tls_record_len(const uint8_t *h, int handshake_only)
{
	unsigned type = h[0], len = (unsigned)h[3] << 8 | h[4];
	if (h[1] != 3 || len == 0 || len > TLS_MAX_RECORD)
		return -1;
	if (handshake_only && type != 0x16)
		return -1;
	if (type < 0x14 || type > 0x17)
		return -1;
	return (int)len;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int start_tls(struct conn *c, int direct)
{
	struct sidecar *sc = c->w->sc;
	c->direct = (uint8_t)direct;
	c->hs_start_us = now_us();
	if (!conn_buf(c, &c->bbuf))
		return -ENOMEM;
	/* the lock only orders us against a certificate reload swapping sc->hs */
	pthread_mutex_lock(&sc->hs_lock);
	int rc = hs_conn_new(sc->hs, direct, &c->tls);
	pthread_mutex_unlock(&sc->hs_lock);
	return rc;
}

/* Count one handshake's duration into the latency histogram. */
static void hs_observe(struct worker *w, uint64_t us)
{
	static const uint64_t bounds_us[HS_HIST_BUCKETS - 1] = { 1000, 2000, 5000, 10000, 25000, 50000,
								 100000, 250000, 500000, 1000000, 2500000 };
	int b = 0;
	while (b < HS_HIST_BUCKETS - 1 && us > bounds_us[b])
		b++;
	STAT_INC(w, hs_hist[b]);
	STAT_ADD(w, hs_sum_us, us);
}

static void connect_backend(struct conn *c);

/* Keep the first packet aside for the backend. */
static int keep_packet(struct conn *c, const uint8_t *p, unsigned len)
{
	free(c->pkt);
	if (!(c->pkt = malloc(len)))
		return -ENOMEM;
	memcpy(c->pkt, p, len);
	c->pkt_len = len;
	return 0;
}

static void note_startup(struct conn *c, const struct pg_startup *st)
{
	pthread_mutex_lock(&c->w->conns_lock); /* published to show conns */
	snprintf(c->user, sizeof(c->user), "%s", st->user ? st->user : "");
	snprintf(c->database, sizeof(c->database), "%s", st->database ? st->database : c->user);
	pthread_mutex_unlock(&c->w->conns_lock);
}

/* Bytes that came behind an SSLRequest or GSSENCRequest were sent before the answer,
 * so no encryption protected them (CVE-2021-23214): 1 if the read took any. Like
 * PostgreSQL, this judges what was read with the request. */
static int unencrypted_queued(struct conn *c, const char *request)
{
	if (c->have <= c->need)
		return 0;
	char what[64];
	snprintf(what, sizeof(what), "refused: unencrypted data after %s", request);
	conn_log(c, LOG_WARN, what, NULL);
	return 1;
}

/* Answer a startup packet pg_startup_parse refused (rc) as PostgreSQL would. */
static void refuse_startup(struct conn *c, int rc, const struct pg_startup *st)
{
	char why[96];
	const char *state = pg_startup_refusal(rc, st, why, sizeof(why));
	fail_with_error(c, CR_PROTOCOL, state, why);
}

/* --client-user-match: the startup packet names a user the certificate does not give
 * (none: no certificate, or a handshake made before a reload turned the option on).
 * PostgreSQL's words for a failed certificate authentication; the users the certificate
 * may log in as go to the log only. */
static void refuse_user(struct conn *c, const char *user)
{
	char msg[160], extra[900], list[300], esc_list[400], esc_user[300], esc_peer[200];
	size_t n = 0;
	for (const char *u = c->cert_users ? c->cert_users : ""; *u && n + 1 < sizeof(list); u += strlen(u) + 1)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? "," : "", u);
	list[n < sizeof(list) ? n : sizeof(list) - 1] = 0;
	snprintf(extra, sizeof(extra), "peer=\"%s\" cert_users=\"%s\" user=\"%s\"",
		 log_esc(esc_peer, sizeof(esc_peer), c->tls_peer), log_esc(esc_list, sizeof(esc_list), list),
		 log_esc(esc_user, sizeof(esc_user), user));
	conn_log(c, LOG_WARN, "refused: this client certificate may not log in as the user", extra);
	snprintf(msg, sizeof(msg), "certificate authentication failed for user \"%.63s\"", user);
	fail_with_error(c, CR_USER_MISMATCH, "28000", msg);
}

/* A complete plaintext startup packet sits in cbuf[0..need). */
static void negotiate_packet(struct conn *c)
{
	struct pg_startup st;
	int rc = pg_startup_parse(c->cbuf, c->need, &st);
	if (rc) {
		refuse_startup(c, rc, &st);
		return;
	}
	switch (st.kind) {
	case PG_SSL_REQUEST: {
		if (c->saw_ssl) {
			fail_with_error(c, CR_PROTOCOL, "08P01", "duplicate SSLRequest");
			return;
		}
		c->saw_ssl = 1;
		if (unencrypted_queued(c, "SSLRequest")) {
			fail_with_error(c, CR_PROTOCOL, "08P01", "received unencrypted data after SSL request");
			return;
		}
		if (start_tls(c, 0)) {
			conn_close(c, CR_INTERNAL);
			return;
		}
		answer_byte(c, 'S', AF_HANDSHAKE_READ);
		return;
	}
	case PG_GSSENC_REQUEST:
		if (c->saw_gss) {
			fail_with_error(c, CR_PROTOCOL, "08P01", "duplicate GSSENCRequest");
			return;
		}
		c->saw_gss = 1;
		if (unencrypted_queued(c, "GSSENCRequest")) {
			fail_with_error(c, CR_PROTOCOL, "08P01", "received unencrypted data after GSSAPI encryption request");
			return;
		}
		answer_byte(c, 'N', AF_NEGOTIATE);
		return;
	case PG_CANCEL_REQUEST:
		if (!CFG(c)->plain_cancel) {
			conn_log(c, LOG_INFO, "plaintext CancelRequest refused (plain-cancel=false)", NULL);
			conn_close(c, CR_PROTOCOL);
			return;
		}
		c->cancel = 1;
		break;
	case PG_STARTUP:
		if (!CFG(c)->allow_plaintext) {
			note_startup(c, &st);
			conn_log(c, LOG_INFO, "refused plaintext startup", "sqlstate=28000");
			fail_with_error(c, CR_PLAINTEXT_REFUSED, "28000",
					"ktls-sidecar: SSL is required (connect with sslmode=require)");
			return;
		}
		note_startup(c, &st);
		if (atomic_load_explicit(&c->w->sc->users_bound, memory_order_relaxed)) {
			refuse_user(c, st.user);
			return;
		}
		c->plain = 1;
		STAT_INC(c->w, plaintext);
		break;
	}
	if (c->have > c->need) { /* only a packet shorter than NEG_READ, which none is */
		fail_with_error(c, CR_PROTOCOL, "08P01", "invalid startup packet layout");
		return;
	}
	if (keep_packet(c, c->cbuf, c->need)) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	connect_backend(c);
}

static void handshake_step(struct conn *c);

/* The direct-TLS ClientHello's record header is in cbuf[0..have): start the handshake. */
static void direct_tls(struct conn *c)
{
	int len = tls_record_len(c->cbuf, 1);
	if (len < 0 || start_tls(c, 1)) {
		conn_log(c, LOG_INFO, "refused: malformed TLS record header", NULL);
		conn_close(c, CR_PROTOCOL);
		return;
	}
	c->phase = PH_HANDSHAKE;
	c->need = TLS_HDR + (unsigned)len;
	if (c->w->sc->ktls && c->have < c->need) { /* the rest of the record, exactly */
		cli_read_exact(c);
		return;
	}
	/* Without kTLS everything goes in. With kTLS, a first record shorter than the first
	 * read (a ClientHello cut into tiny records) goes in alone, and what followed it,
	 * the start of the next record's header, stays for the exact reads. */
	unsigned take = c->w->sc->ktls ? c->need : c->have;
	if (hs_conn_feed(c->tls, c->cbuf, take)) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	memmove(c->cbuf, c->cbuf + take, c->have - take);
	c->have -= take;
	handshake_step(c);
}

static void negotiate_read(struct conn *c, int res)
{
	c->have += (unsigned)res;
	if (c->have < c->need) {
		negotiate_more(c);
		return;
	}
	/* PostgreSQL 17 direct TLS, only as the connection's first bytes: a ClientHello
	 * record header, of which the first read may have taken fewer than 5 bytes */
	if (c->need <= TLS_HDR && !c->saw_ssl && !c->saw_gss && c->cbuf[0] == PG_TLS_HANDSHAKE) {
		if (c->have < TLS_HDR) {
			c->need = TLS_HDR;
			negotiate_more(c);
			return;
		}
		direct_tls(c);
		return;
	}
	if (c->need == PG_LEN_HDR) { /* judged at once: a bad length is not waited on */
		uint32_t len;
		int rc = pg_startup_len(c->cbuf, &len);
		if (rc) {
			conn_log(c, LOG_INFO, "refused: invalid startup packet length", NULL);
			fail_with_error(c, CR_PROTOCOL, "08P01", "invalid length of startup packet");
			return;
		}
		c->need = len;
		if (c->have < c->need) {
			negotiate_more(c);
			return;
		}
	}
	negotiate_packet(c);
}

static void handshake_read(struct conn *c, int res)
{
	if (!c->need) { /* no kTLS: feed whatever came */
		if (hs_conn_feed(c->tls, c->cbuf, (size_t)res)) {
			conn_close(c, CR_INTERNAL);
			return;
		}
		handshake_step(c);
		return;
	}
	c->have += (unsigned)res;
	if (c->have < c->need) {
		cli_read_exact(c);
		return;
	}
	if (c->need == TLS_HDR) {
		int len = tls_record_len(c->cbuf, 0);
		/* TLS 1.3 wraps encrypted handshake messages in type 23 records */
		if (len < 0) {
			conn_log(c, LOG_INFO, "handshake failed", "reason=\"not a TLS handshake record\"");
			STAT_INC(c->w, handshakes_failed);
			conn_close(c, CR_HANDSHAKE_FAILED);
			return;
		}
		c->need = TLS_HDR + (unsigned)len;
		cli_read_exact(c);
		return;
	}
	if (hs_conn_feed(c->tls, c->cbuf, c->need)) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	c->have = 0;
	handshake_step(c);
}

static void handshake_failed(struct conn *c)
{
	char extra[720], why[400], peer[260];
	/* the certificate's name, unverified where its chain was refused: which client to chase */
	snprintf(c->tls_peer, sizeof(c->tls_peer), "%s", hs_conn_peer(c->tls));
	snprintf(extra, sizeof(extra), "reason=\"%s\"%s%s%s", log_esc(why, sizeof(why), hs_conn_reason(c->tls)),
		 c->tls_peer[0] ? " peer=\"" : "", c->tls_peer[0] ? log_esc(peer, sizeof(peer), c->tls_peer) : "",
		 c->tls_peer[0] ? "\"" : "");
	conn_log(c, LOG_WARN, "handshake failed", extra);
	STAT_INC(c->w, handshakes_failed);
	c->reason = CR_HANDSHAKE_FAILED;
	c->phase = PH_FINAL;
	c->after = AF_CLOSE;
	flush_client(c); /* deliver the alert OpenSSL queued */
}

static void handshake_step(struct conn *c)
{
	int r = hs_conn_handshake(c->tls);
	if (r < 0) {
		handshake_failed(c);
		return;
	}
	c->after = r == 1 ? AF_HANDSHAKE_DONE : AF_HANDSHAKE_READ;
	flush_client(c);
}

/* Log each kind of kTLS fallback once per process, not per connection. */
const char *const ktls_step_names[KS_NSTEPS] = {
	[KS_BUFFERED] = "buffered", [KS_SUITE] = "suite", [KS_EXPORT] = "export", [KS_ULP] = "ulp",
	[KS_TX] = "tx",		    [KS_RX] = "rx",	  [KS_PIPES] = "pipes",
};

void conn_ktls_fallback(struct conn *c, enum ktls_step step, int err)
{
	static const char *const what[KS_NSTEPS] = {
		[KS_BUFFERED] = "bytes buffered past Finished", [KS_SUITE] = "suite not offloadable",
		[KS_EXPORT] = "key export",			[KS_ULP] = "attach TCP_ULP tls",
		[KS_TX] = "install TLS_TX",			[KS_RX] = "install TLS_RX",
		[KS_PIPES] = "create splice pipes (using copy relay)",
	};
	static _Atomic unsigned seen;
	unsigned bit = 1u << step;
	_Static_assert(KS_NSTEPS <= 32, "one bit per step");
	STAT_INC(c->w, ktls_fallback[step]);
	if (atomic_fetch_or(&seen, bit) & bit)
		return;
	log_warn("ktls", "kTLS not used for this connection, staying in userspace TLS (logged once)",
		 "step=\"%s\" error=\"%s\"", what[step], strerror(-err));
}

/* Move the record keys into the kernel: TX first, then RX if nothing is buffered. */
static void try_ktls(struct conn *c)
{
	struct ktls_keys tx, rx;
	int rc = hs_conn_export_keys(c->tls, &tx, &rx, &c->traffic);
	if (rc)
		conn_ktls_fallback(c, rc == -EBUSY ? KS_BUFFERED : rc == -ENOTSUP ? KS_SUITE : KS_EXPORT, rc);
	else if ((rc = ktls_attach(c->cfd)))
		conn_ktls_fallback(c, KS_ULP, rc);
	else if ((rc = ktls_install(c->cfd, KTLS_TX, &tx)))
		conn_ktls_fallback(c, KS_TX, rc);
	else if ((c->ktls_tx = 1, rc = ktls_install(c->cfd, KTLS_RX, &rx)))
		conn_ktls_fallback(c, KS_RX, rc);
	else
		c->ktls_rx = 1;
	ktls_keys_wipe(&tx);
	ktls_keys_wipe(&rx);
	if (c->ktls_tx && c->ktls_rx) {
		/* the kernel owns the session now: an idle connection keeps no SSL */
		hs_conn_free(c->tls);
		c->tls = NULL;
	} else {
		hs_traffic_wipe(&c->traffic); /* OpenSSL follows KeyUpdates itself */
	}
}

static void handshake_done(struct conn *c)
{
	struct worker *w = c->w;
	STAT_INC(w, handshakes_ok);
	hs_observe(w, now_us() - c->hs_start_us);
	pthread_mutex_lock(&w->conns_lock); /* published to show conns */
	snprintf(c->tls_version, sizeof(c->tls_version), "%s", hs_conn_version(c->tls));
	snprintf(c->tls_cipher, sizeof(c->tls_cipher), "%s", hs_conn_cipher(c->tls));
	snprintf(c->tls_peer, sizeof(c->tls_peer), "%s", hs_conn_peer(c->tls));
	snprintf(c->tls_sni, sizeof(c->tls_sni), "%s", hs_conn_sni(c->tls));
	pthread_mutex_unlock(&w->conns_lock);
	if (hs_conn_take_users(c->tls, &c->cert_users) && !c->cert_users) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	if (strcmp(c->tls_version, "TLSv1.3") == 0)
		STAT_INC(w, tls13);
	else
		STAT_INC(w, tls12);
	if (log_enabled(LOG_DEBUG)) {
		char extra[512], sni[300];
		snprintf(extra, sizeof(extra), "tls=%s cipher=%s alpn=%s sni=\"%s\" direct=%d",
			 hs_conn_version(c->tls), hs_conn_cipher(c->tls), hs_conn_alpn(c->tls),
			 log_esc(sni, sizeof(sni), hs_conn_sni(c->tls)), c->direct);
		conn_log(c, LOG_DEBUG, "handshake done", extra);
	}
	if (w->sc->ktls)
		try_ktls(c);
	if (c->ktls_tx) {
		STAT_INC(w, ktls_tx);
		STAT_INC(w, active_ktls_tx);
	}
	if (c->ktls_rx) {
		STAT_INC(w, ktls_rx);
		STAT_INC(w, active_ktls_rx);
	}
	if (!c->ktls_tx || !c->ktls_rx) {
		STAT_INC(w, user_tls);
		STAT_INC(w, active_user_tls);
	}
	c->counted_tls = 1;
	c->phase = PH_STARTUP;
	if (!(c->pkt = malloc(PG_STARTUP_MAX))) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	c->have = 0;
	c->need = 4;
	conn_startup_pump(c);
}

/* The first packet inside TLS: StartupMessage or CancelRequest. */
static void startup_packet(struct conn *c)
{
	struct pg_startup st;
	int rc = pg_startup_parse(c->pkt, c->need, &st);
	if (rc || (st.kind != PG_STARTUP && st.kind != PG_CANCEL_REQUEST)) {
		conn_log(c, LOG_INFO, "refused: invalid startup packet inside TLS", NULL);
		refuse_startup(c, rc ? rc : -EPROTO, &st);
		return;
	}
	c->pkt_len = c->need;
	if (st.kind == PG_CANCEL_REQUEST) {
		c->cancel = 1;
	} else {
		note_startup(c, &st);
		if ((c->cert_users || atomic_load_explicit(&c->w->sc->users_bound, memory_order_relaxed)) &&
		    !user_list_has(c->cert_users ? c->cert_users : "", st.user)) {
			refuse_user(c, st.user);
			return;
		}
		free(c->cert_users); /* checked: an idle session keeps nothing of it */
		c->cert_users = NULL;
	}
	connect_backend(c);
}

/* Bytes were added to pkt: 1 if more are needed, 0 once the packet was handled. */
static int startup_progress(struct conn *c)
{
	if (c->have < c->need)
		return 1;
	if (c->need == 4) {
		uint32_t len;
		if (pg_startup_len(c->pkt, &len)) {
			fail_with_error(c, CR_PROTOCOL, "08P01", "invalid length of startup packet");
			return 0;
		}
		c->need = len;
		if (c->have < c->need)
			return 1;
	}
	startup_packet(c);
	return 0;
}

void conn_startup_pump(struct conn *c)
{
	for (;;) {
		if (c->ktls_rx) { /* the kernel decrypts: read the packet exactly */
			engine_recv(E(c), &c->cli_rd, c->cfd, c->pkt + c->have, c->need - c->have);
			return;
		}
		int r = hs_conn_read(c->tls, c->pkt + c->have, c->need - c->have);
		if (conn_tls_side_output(c))
			return;
		if (r == 0) {
			engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CBUF_SIZE);
			return;
		}
		if (r < 0) {
			conn_close(c, r == -EPIPE ? CR_EOF : CR_CLIENT_RESET);
			return;
		}
		c->have += (unsigned)r;
		if (!startup_progress(c))
			return;
	}
}

static void backend_connect_failed(struct conn *c, int err);

/* Connect to the backend's address c->be_idx, the first try at the address that took
 * the last connection. Each address has its own --connect-timeout, as each host has
 * in libpq. */
static void connect_backend(struct conn *c)
{
	struct sidecar *sc = c->w->sc;
	if (!c->be_tried)
		c->be_idx = (uint8_t)atomic_load_explicit(&sc->backend_pref, memory_order_relaxed);
	c->phase = PH_CONNECT;
	const struct backend_addr *a;
	for (;;) {
		a = &sc->backends[c->be_idx];
		c->be_tried++;
		c->bfd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->bfd >= 0)
			break;
		if (errno != EAFNOSUPPORT) {
			c->err = errno; /* EMFILE: the open-files limit */
			conn_log(c, LOG_ERROR, "backend socket failed", NULL);
			fail_with_error(c, CR_BACKEND_CONNECT, "08006", "ktls-sidecar: cannot create backend socket");
			return;
		}
		c->be_errs[c->be_idx] = EAFNOSUPPORT; /* IPv6 turned off since the start */
		if (c->be_tried >= sc->nbackends) {
			backend_connect_failed(c, EAFNOSUPPORT);
			return;
		}
		c->be_idx = (uint8_t)((c->be_idx + 1) % sc->nbackends);
	}
	if (a->ss.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	c->deadline_ms = c->w->now_ms + (uint64_t)sc->cfg->connect_timeout_ms;
	c->connecting = 1;
	c->connect_timed_out = 0;
	engine_connect(E(c), &c->be_wr, c->bfd, (const struct sockaddr *)&a->ss, a->len);
}

static void backend_connect_failed(struct conn *c, int err)
{
	struct sidecar *sc = c->w->sc;
	char msg[256], extra[768], addr[64];
	STAT_INC(c->w, backend_connect_failed);
	int n = snprintf(extra, sizeof(extra), "backend=%s error=\"%s\"", sc->backend_desc, strerror(err));
	const char *sep = " address_errors=\"";
	for (int i = 0; i < sc->nbackends && sc->nbackends > 1 && n > 0 && (size_t)n < sizeof(extra); i++) {
		if (!c->be_errs[i])
			continue;
		net_addr_str(&sc->backends[i].ss, addr, sizeof(addr));
		n += snprintf(extra + n, sizeof(extra) - (size_t)n, "%s%s %s", sep, addr, strerror(c->be_errs[i]));
		sep = "; ";
	}
	if (n > 0 && (size_t)n < sizeof(extra) - 1 && sep[0] == ';')
		extra[n++] = '"', extra[n] = 0;
	conn_log(c, LOG_WARN, "backend connect failed", extra);
	if (c->cancel) {
		conn_close(c, CR_BACKEND_CONNECT);
		return;
	}
	snprintf(msg, sizeof(msg), "ktls-sidecar: could not connect to backend %s: %s", sc->backend_desc,
		 strerror(err));
	fail_with_error(c, CR_BACKEND_CONNECT, "08006", msg);
}

static void connected(struct conn *c, int res)
{
	struct sidecar *sc = c->w->sc;
	char extra[256], addr[64];
	c->connecting = 0;
	if (res < 0)
		c->be_errs[c->be_idx] = (uint8_t)(c->connect_timed_out ? ETIMEDOUT : -res);
	if (res < 0 && c->be_tried < sc->nbackends) { /* the host name's next address */
		net_addr_str(&sc->backends[c->be_idx].ss, addr, sizeof(addr));
		snprintf(extra, sizeof(extra), "address=%s error=\"%s\"", addr, strerror(c->be_errs[c->be_idx]));
		conn_log(c, LOG_DEBUG, "backend address failed: trying the next", extra);
		engine_close(E(c), c->bfd);
		c->bfd = -1;
		c->be_idx = (uint8_t)((c->be_idx + 1) % sc->nbackends);
		connect_backend(c);
		return;
	}
	if (res < 0) {
		backend_connect_failed(c, c->connect_timed_out ? ETIMEDOUT : -res);
		return;
	}
	int pref = atomic_load_explicit(&sc->backend_pref, memory_order_relaxed);
	if (pref != c->be_idx &&
	    atomic_compare_exchange_strong_explicit(&sc->backend_pref, &pref, c->be_idx, memory_order_relaxed,
						    memory_order_relaxed)) {
		net_addr_str(&sc->backends[c->be_idx].ss, addr, sizeof(addr));
		snprintf(extra, sizeof(extra), "backend=%s address=%s", sc->backend_desc, addr);
		log_info("conn", "backend reached at another of its addresses: connections try it first", "%s", extra);
	}
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(c->bfd, (struct sockaddr *)&ss, &l) == 0 && ss.ss_family != AF_UNIX)
		__atomic_store_n(&c->backend_port, net_port(&ss), __ATOMIC_RELAXED);
	c->deadline_ms = 0;
	dir_send(c, &c->be_wr, &c->c2b, c->bfd, c->pkt, c->pkt_len);
}

/* The forwarded first packet is out: relay, or finish a cancel. */
static void first_packet_sent(struct conn *c)
{
	free(c->pkt);
	c->pkt = NULL;
	if (c->cancel) {
		/* like libpq, wait for the pooler to hang up: PgBouncer drops a
		 * cancel whose client disconnected before it was passed on */
		STAT_INC(c->w, cancels);
		conn_log(c, LOG_DEBUG, "cancel forwarded", NULL);
		if (!conn_buf(c, &c->bbuf)) {
			conn_close(c, CR_CANCEL);
			return;
		}
		c->phase = PH_CANCEL_WAIT;
		c->deadline_ms = c->w->now_ms + (uint64_t)CFG(c)->connect_timeout_ms;
		engine_recv(E(c), &c->be_rd, c->bfd, c->bbuf, BBUF_SIZE);
		return;
	}
	relay_start(c);
}

/* Send the TLS output queue to the client, then run c->after. */
static void flush_client(struct conn *c)
{
	size_t n = c->tls && !c->ktls_tx ? hs_conn_drain(c->tls, c->bbuf, BBUF_OUT) : 0;
	if (n) {
		dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, (unsigned)n);
		return;
	}
	enum after a = (enum after)c->after;
	c->after = AF_NONE;
	switch (a) {
	case AF_NONE:
		break;
	case AF_NEGOTIATE:
		c->phase = PH_NEGOTIATE;
		c->have = 0;
		c->need = PG_LEN_HDR;
		negotiate_more(c);
		break;
	case AF_HANDSHAKE_READ:
		if (c->phase != PH_HANDSHAKE) /* after 'S'; within the handshake have keeps */
			c->have = 0;          /* what direct_tls left of a record header */
		c->phase = PH_HANDSHAKE;
		c->need = TLS_HDR;
		handshake_more(c);
		break;
	case AF_HANDSHAKE_DONE:
		handshake_done(c);
		break;
	case AF_CLOSE:
		close_gently(c);
		conn_close(c, (enum close_reason)c->reason);
		break;
	}
}

static void on_cli_write(struct conn *c, int res)
{
	int r = relay_send_progress(c, &c->cli_wr, &c->b2c, res, c->cfd);
	if (r > 0)
		return;
	if (r < 0) {
		conn_fail(c, c->phase == PH_FINAL ? (enum close_reason)c->reason : CR_CLIENT_RESET, r);
		return;
	}
	if (c->tx_rekey && relay_tx_rekey(c))
		return;
	if (c->phase == PH_RELAY)
		relay_b2c_flush(c);
	else
		flush_client(c);
}

static void on_be_write(struct conn *c, int res)
{
	if (c->connecting) {
		connected(c, res);
		return;
	}
	int r = relay_send_progress(c, &c->be_wr, &c->c2b, res, c->bfd);
	if (res > 0 && c->phase == PH_RELAY) { /* plaintext delivered to the pooler */
		c->bytes_in += (unsigned)res;
		STAT_ADD(c->w, bytes_c2b, (unsigned)res);
	}
	if (r > 0)
		return;
	if (r < 0) {
		conn_fail(c, CR_BACKEND_RESET, r);
		return;
	}
	if (c->phase == PH_CONNECT)
		first_packet_sent(c);
	else
		relay_c2b_pump(c);
}

void conn_on_cli_read(struct conn *c, int res)
{
	switch ((enum phase)c->phase) {
	case PH_NEGOTIATE:
	case PH_HANDSHAKE:
		if (res <= 0) {
			if (c->phase == PH_HANDSHAKE)
				STAT_INC(c->w, handshakes_failed);
			conn_close(c, res == 0 ? CR_EOF : CR_CLIENT_RESET);
		} else if (c->phase == PH_NEGOTIATE) {
			negotiate_read(c, res);
		} else {
			handshake_read(c, res);
		}
		break;
	case PH_STARTUP:
		if (res == -EIO && c->ktls_rx) {
			relay_ktls_record(c);
			return;
		}
		if (res <= 0) {
			conn_close(c, res == 0 ? CR_EOF : CR_CLIENT_RESET);
			return;
		}
		if (c->ktls_rx) {
			c->have += (unsigned)res;
			if (startup_progress(c))
				conn_startup_pump(c);
			return;
		}
		if (hs_conn_feed(c->tls, c->cbuf, (size_t)res)) {
			conn_close(c, CR_INTERNAL);
			return;
		}
		conn_startup_pump(c);
		break;
	case PH_RELAY:
		if (c->c2b.spl_in) {
			c->c2b.spl_in = 0;
			relay_cli_spliced(c, res);
		} else {
			relay_cli_read(c, res);
		}
		break;
	case PH_CONNECT:
	case PH_CANCEL_WAIT:
	case PH_FINAL:
	case PH_CLOSING:
		break;
	}
}

void conn_complete(struct worker *w, struct io_op *op, int res)
{
	struct conn *c = NULL;
	switch ((enum op_kind)op->kind) {
	case K_CLI_RD:
		c = (struct conn *)((char *)op - offsetof(struct conn, cli_rd));
		break;
	case K_CLI_WR:
		c = (struct conn *)((char *)op - offsetof(struct conn, cli_wr));
		break;
	case K_BE_RD:
		c = (struct conn *)((char *)op - offsetof(struct conn, be_rd));
		break;
	case K_BE_WR:
		c = (struct conn *)((char *)op - offsetof(struct conn, be_wr));
		break;
	case K_ACCEPT:
		return;
	}
	if (c->phase == PH_CLOSING) {
		if (!conn_busy(c))
			conn_free(c);
		return;
	}
	c->active_ms = w->now_ms;
	c->bufs_released = 0;
	uint64_t idle;
	if (c->phase == PH_RELAY && (idle = relay_idle_first_ms(c)))
		c->deadline_ms = w->now_ms + idle;
	switch ((enum op_kind)op->kind) {
	case K_CLI_RD:
		conn_on_cli_read(c, res);
		break;
	case K_CLI_WR:
		on_cli_write(c, res);
		break;
	case K_BE_RD:
		c->b2c.spl_in = 0;
		if (c->phase == PH_RELAY)
			relay_be_read(c, res);
		else if (c->phase == PH_CANCEL_WAIT && res > 0)
			engine_recv(E(c), &c->be_rd, c->bfd, c->bbuf, BBUF_SIZE);
		else if (c->phase == PH_CANCEL_WAIT)
			conn_close(c, CR_CANCEL);
		break;
	case K_BE_WR:
		on_be_write(c, res);
		break;
	case K_ACCEPT:
		break;
	}
}

void conn_scan(struct worker *w)
{
	struct conn *c = w->conns, *next;
	int quiet = engine_bufs_quiet(w->eng);
	int close_idle = w->sc->cfg->drain_close_idle && atomic_load_explicit(&w->sc->draining, memory_order_relaxed);
	if (w->now_ms >= w->next_trim_ms) {
		/* the free slots kept for the next connections go back after a second without one */
		w->next_trim_ms = w->now_ms + IDLE_RELEASE_MS;
		bufpool_trim(&w->bufs);
	}
	for (; c; c = next) {
		next = c->next;
		if (close_idle && c->phase == PH_RELAY && relay_between_transactions(c)) {
			conn_close(c, CR_DRAIN_IDLE); /* quiet since the drain began */
			continue;
		}
		if (c->phase == PH_RELAY && !c->bufs_released && w->now_ms - c->active_ms >= IDLE_RELEASE_MS)
			relay_release_idle(c, quiet);
		if (!c->deadline_ms || w->now_ms < c->deadline_ms || c->phase == PH_CLOSING)
			continue;
		switch ((enum phase)c->phase) {
		case PH_NEGOTIATE:
		case PH_HANDSHAKE:
		case PH_STARTUP:
			conn_log(c, LOG_INFO, "handshake timeout", NULL);
			if (c->phase == PH_HANDSHAKE)
				STAT_INC(w, handshakes_failed);
			conn_close(c, CR_HANDSHAKE_TIMEOUT);
			break;
		case PH_CONNECT:
			c->connect_timed_out = 1;
			c->deadline_ms = 0;
			engine_cancel(w->eng, &c->be_wr); /* completes with -ECANCELED */
			break;
		case PH_RELAY: {
			int in_tx;
			uint64_t limit = relay_idle_limit(c, &in_tx);
			if (relay_owed(c)) { /* a query is running: not idle */
				c->deadline_ms = w->now_ms + relay_idle_first_ms(c);
			} else if (!limit) { /* idle between transactions, and only the in-transaction limit set */
				c->deadline_ms = 0;
			} else if (c->active_ms + limit > w->now_ms) { /* the longer limit applies now */
				c->deadline_ms = c->active_ms + limit;
			} else {
				conn_log(c, LOG_INFO, in_tx ? "idle in transaction timeout" : "idle timeout", NULL);
				conn_close(c, in_tx ? CR_IDLE_TX_TIMEOUT : CR_IDLE_TIMEOUT);
			}
			break;
		}
		case PH_CANCEL_WAIT:
			conn_close(c, CR_CANCEL);
			break;
		case PH_FINAL:
		case PH_CLOSING:
			conn_close(c, (enum close_reason)c->reason);
			break;
		}
	}
}

static const char *const phase_names[] = {
	[PH_NEGOTIATE] = "negotiate", [PH_HANDSHAKE] = "handshake", [PH_STARTUP] = "startup",
	[PH_CONNECT] = "connect", [PH_CANCEL_WAIT] = "cancel", [PH_RELAY] = "relay",
	[PH_FINAL] = "refusing", [PH_CLOSING] = "closing",
};

size_t conn_snapshot(struct worker *w, struct admin_conn *out, size_t cap)
{
	size_t n = 0;
	uint64_t now = now_monotonic_ms();
	pthread_mutex_lock(&w->conns_lock);
	for (struct conn *c = w->conns; c && n < cap; c = c->next, n++) {
		/* strings are published under the lock; the rest are single-word reads */
		struct admin_conn *a = &out[n];
		memset(a, 0, sizeof(*a));
		a->id = c->id;
		a->worker = w->id;
		net_addr_str(&c->peer, a->client, sizeof(a->client));
		net_addr_str(&c->local, a->local, sizeof(a->local));
		a->backend_port = __atomic_load_n(&c->backend_port, __ATOMIC_RELAXED);
		uint8_t ph = __atomic_load_n(&c->phase, __ATOMIC_RELAXED);
		snprintf(a->state, sizeof(a->state), "%s", ph <= PH_CLOSING ? phase_names[ph] : "?");
		snprintf(a->txn, sizeof(a->txn), "%s", ph == PH_RELAY ? relay_txn_state(c) : "");
		snprintf(a->tls, sizeof(a->tls), "%s", c->tls_version);
		snprintf(a->cipher, sizeof(a->cipher), "%s", c->tls_cipher);
		snprintf(a->sni, sizeof(a->sni), "%s", c->tls_sni);
		snprintf(a->peer, sizeof(a->peer), "%s", c->tls_peer);
		snprintf(a->user, sizeof(a->user), "%s", c->user);
		snprintf(a->database, sizeof(a->database), "%s", c->database);
		uint8_t tx = __atomic_load_n(&c->ktls_tx, __ATOMIC_RELAXED), rx = __atomic_load_n(&c->ktls_rx, __ATOMIC_RELAXED);
		snprintf(a->ktls, sizeof(a->ktls), "%s", tx && rx ? "tx+rx" : tx ? "tx" : rx ? "rx" : "off");
		a->age_s = (double)(now - c->started_ms) / 1000.0;
		a->bytes_in = __atomic_load_n(&c->bytes_in, __ATOMIC_RELAXED);
		a->bytes_out = __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&w->conns_lock);
	return n;
}

void conn_close_all(struct worker *w)
{
	struct conn *c = w->conns, *next;
	for (; c; c = next) {
		next = c->next;
		conn_close(c, CR_SHUTDOWN);
	}
}
