// SPDX-License-Identifier: MIT
// The data path once the first packet reached the pooler: copy relay (recv and
// send, through OpenSSL when the keys stayed in user space) or splice relay
// (kTLS both ways: pipes, the plaintext never enters user space), half-close
// propagation, and the non-data records kTLS hands back.
#include "conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "handshake.h"
#include "ktls.h"

/* Both directions in the kernel: relay through a pipe per direction, so the
 * plaintext never enters user space, and drop the copy buffers. */
static int start_splice(struct conn *c)
{
	if (pipe2(c->c2b.pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (pipe2(c->b2c.pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		int rc = -errno;
		close(c->c2b.pipe[0]);
		close(c->c2b.pipe[1]);
		c->c2b.pipe[0] = c->c2b.pipe[1] = -1;
		return rc;
	}
	c->splice = 1;
	bufpool_put(&c->w->bufs, c->cbuf);
	bufpool_put(&c->w->bufs, c->bbuf);
	c->cbuf = c->bbuf = NULL;
	return 0;
}

/* Userspace TLS reads: into the worker's buffer ring where the engine has one (the
 * callback consumes the bytes at once: OpenSSL copies them), else into cbuf / bbuf. */
static void cli_recv_tls(struct conn *c)
{
	if (engine_can_pick(E(c)))
		engine_recv_pick(E(c), &c->cli_rd, c->cfd, CBUF_SIZE);
	else
		engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CLI_READ);
}

static void be_recv(struct conn *c)
{
	if (!c->plain && !c->ktls_tx && engine_can_pick(E(c)))
		engine_recv_pick(E(c), &c->be_rd, c->bfd, BBUF_SIZE);
	else
		engine_recv(E(c), &c->be_rd, c->bfd, c->bbuf, BBUF_SIZE);
}

static void b2c_splice_in(struct conn *c)
{
	c->b2c.spl_in = 1;
	engine_splice(E(c), &c->be_rd, c->bfd, c->b2c.pipe[1], PIPE_CHUNK, 1);
}

/* The plaintext p[0..n) went (c2b) or came (b2c) through the relay: count the answers
 * the pooler owes. Every Query, Sync and FunctionCall is answered by one ReadyForQuery,
 * but for the Syncs that reach the backend during a COPY FROM STDIN, which it ignores
 * (libpq sends one after Execute and one after CopyDone): a ReadyForQuery that ends a
 * copy-in settles everything. */
static void track_owed(struct conn *c, int c2b, const uint8_t *p, size_t n)
{
	int t;
	const uint8_t *start = p;
	if (!c->track_owed)
		return;
	while ((t = pg_frames_next(c2b ? &c->c2b_frames : &c->b2c_frames, &p, &n))) {
		if (!c2b && t == 'Z') /* its one-byte body, the transaction status, ends at p */
			c->tx_status = p > start ? p[-1] : 0;
		if (c2b && (t == 'Q' || t == 'S' || t == 'F') && c->owed < UINT32_MAX)
			c->owed++, c->unsynced = 0;
		else if (c2b && (t == 'P' || t == 'B' || t == 'E' || t == 'D'))
			c->unsynced = 1; /* an implicit transaction may be open until the Sync (a
					  * Flush or a Close alone starts none; a Flush is ignored
					  * in a COPY) */
		else if (!c2b && (t == 'G' || t == 'W')) /* CopyInResponse, CopyBothResponse */
			c->copy_in = 1;
		else if (!c2b && t == 'Z' && c->copy_in)
			c->owed = 0, c->copy_in = 0;
		else if (!c2b && t == 'Z' && c->owed)
			c->owed--;
	}
	if (c->c2b_frames.broken || c->b2c_frames.broken)
		c->track_owed = 0; /* not PostgreSQL's framing: plain idle rules */
}

/* An answer is owed, or may be: extended-protocol messages with no Sync behind them
 * yet (pipeline mode's Execute and Flush) count as a query running: only a Sync's
 * ReadyForQuery is followed here, so a client that stops inside such a batch is kept.
 * Not while the pooler has hung up, nor while a send to the client has made no
 * progress for a whole idle period: a client that stops reading its answer is not
 * running a query. A send to the pooler that waits is a busy server (a COPY whose
 * rows wait on a lock): still running. */
int relay_owed(const struct conn *c)
{
	return c->track_owed && (c->owed || c->unsynced) && !c->b2c.eof_pending && !c->b2c.done && !c->cli_wr.pending;
}

/* Nothing of the pooler's answer is cut short or still going out to the client. */
static int b2c_at_boundary(const struct conn *c)
{
	const struct pg_frames *f = &c->b2c_frames;
	return c->phase == PH_RELAY && c->track_owed && !f->left && !f->have && !c->b2c.eof_pending &&
	       !c->b2c.done && !c->cli_wr.pending && !c->notify_sent;
}

/* The kernel sent the client all it was given (the client reads) and holds little of
 * it unacknowledged: a message of ours goes out whole in one non-blocking send, not
 * cut short behind data the client does not read. */
static int client_takes_more(const struct conn *c)
{
	int unsent = -1, queued = -1;
	return ioctl(c->cfd, SIOCOUTQNSD, &unsent) == 0 && unsent == 0 && ioctl(c->cfd, SIOCOUTQ, &queued) == 0 &&
	       queued <= 4096;
}

int relay_between_transactions(const struct conn *c)
{
	const struct pg_frames *f = &c->c2b_frames;
	return b2c_at_boundary(c) && c->tx_status == 'I' && !c->owed && !c->unsynced && !c->copy_in && !f->left &&
	       !f->have && !c->be_wr.pending && !(c->tls && hs_conn_pending_out(c->tls));
}

const char *relay_txn_state(const struct conn *c)
{
	uint8_t st = __atomic_load_n(&c->tx_status, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&c->track_owed, __ATOMIC_RELAXED))
		return "";
	if (__atomic_load_n(&c->owed, __ATOMIC_RELAXED) || __atomic_load_n(&c->unsynced, __ATOMIC_RELAXED))
		return st ? "active" : "login";
	return st == 'I' ? "idle" : st == 'T' ? "in_transaction" : st == 'E' ? "failed_transaction" : "login";
}

/* --drain-close-idle, as the pooler's answer has just gone out: a session that now
 * waits between transactions ends here, before its client sends the next one. 1 if
 * c is closing. */
static int drain_close_idle(struct conn *c)
{
	if (!CFG(c)->drain_close_idle || !atomic_load_explicit(&c->w->sc->draining, memory_order_relaxed) ||
	    !relay_between_transactions(c))
		return 0;
	conn_close(c, CR_DRAIN_IDLE);
	return 1;
}

int relay_send_fatal(struct conn *c, const char *sqlstate, const char *msg)
{
	uint8_t pkt[256];
	if (!b2c_at_boundary(c) || !client_takes_more(c))
		return 0;
	int n = pg_error_response(pkt, sizeof(pkt), "FATAL", sqlstate, msg);
	if (n < 0)
		return 0;
	if (c->plain || c->ktls_tx)
		return send(c->cfd, pkt, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n;
	if (hs_conn_pending_out(c->tls) || hs_conn_write(c->tls, pkt, (size_t)n))
		return 0;
	return 1; /* sent with the close_notify behind it */
}

uint64_t relay_idle_limit(const struct conn *c, int *in_tx_limit)
{
	const struct config *cfg = c->w->sc->cfg;
	uint64_t idle = (uint64_t)cfg->idle_timeout_ms, tx = (uint64_t)cfg->idle_tx_timeout_ms;
	*in_tx_limit = 0;
	/* a send that makes no progress is a stall, not a client idle in its transaction
	 * (a COPY whose server stopped reading on a lock, a result read slowly): only
	 * --idle-timeout applies to it */
	if (!c->track_owed || !conn_in_transaction(c) || !tx || c->cli_wr.pending ||
	    c->be_wr.pending)
		return idle;
	*in_tx_limit = !idle || tx <= idle;
	return *in_tx_limit ? tx : idle;
}

void relay_start(struct conn *c)
{
	c->phase = PH_RELAY;
	int rc = -1;
	if (CFG(c)->relay == RELAY_SPLICE && c->ktls_tx && c->ktls_rx && (rc = start_splice(c)))
		conn_ktls_fallback(c, KS_PIPES, rc);
	/* the boundaries are walked whenever the relay sees the plaintext: the idle rules
	 * count answers owed from the first Query on (the login exchange counts as idle),
	 * and a close of the sidecar's own sends its FATAL only between two messages */
	c->track_owed = !c->splice;
	uint64_t idle = relay_idle_first_ms(c);
	c->deadline_ms = idle ? c->w->now_ms + idle : 0;
	if (c->splice) {
		b2c_splice_in(c);
	} else {
		if (!conn_buf(c, &c->bbuf)) {
			conn_close(c, CR_INTERNAL);
			return;
		}
		be_recv(c);
	}
	relay_c2b_pump(c);
}

static void check_done(struct conn *c)
{
	if (c->c2b.done && c->b2c.done)
		conn_close(c, CR_EOF);
}

static void tls_read_failed(struct conn *c)
{
	char extra[512], why[400];
	snprintf(extra, sizeof(extra), "reason=\"%s\"", log_esc(why, sizeof(why), hs_conn_reason(c->tls)));
	conn_log(c, LOG_INFO, "TLS error from client", extra);
	conn_close(c, CR_CLIENT_RESET);
}

/* Client -> backend: decrypt what is buffered, or read more. */
void relay_c2b_pump(struct conn *c)
{
	if (c->splice) {
		c->c2b.spl_in = 1;
		engine_splice(E(c), &c->cli_rd, c->cfd, c->c2b.pipe[1], PIPE_CHUNK, 1);
		return;
	}
	if (c->plain || c->ktls_rx) {
		engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CLI_READ);
		return;
	}
	/* the plaintext of the records at hand, up to CLI_READ, goes out in one send */
	size_t got = 0;
	int r;
	do {
		r = hs_conn_read(c->tls, c->cbuf + got, CLI_READ - got);
		if (r > 0)
			got += (size_t)r;
	} while (r > 0 && got < CLI_READ);
	/* once what was received is used up (r <= 0): the output of one recv is bounded */
	if (r <= 0 && conn_tls_side_output(c))
		return;
	if (got) {
		/* a bad record after good ones: they go out first, the error is met again on
		 * the next call, and OpenSSL refuses to write meanwhile */
		c->tls_rd_failed = r < 0 && r != -EPIPE;
		track_owed(c, 1, c->cbuf, got);
		dir_send(c, &c->be_wr, &c->c2b, c->bfd, c->cbuf, (unsigned)got);
		return;
	}
	if (r == 0) {
		cli_recv_tls(c);
		return;
	}
	if (r == -EPIPE) { /* close_notify: half-close toward the pooler */
		c->c2b.done = 1;
		shutdown(c->bfd, SHUT_WR);
		check_done(c);
		return;
	}
	tls_read_failed(c);
}


static void c2b_eof(struct conn *c)
{
	c->c2b.done = 1;
	shutdown(c->bfd, SHUT_WR);
	check_done(c);
}

/* A splice from the client into the pipe finished: push the bytes on to the pooler. */
void relay_cli_spliced(struct conn *c, int res)
{
	if (res == -EAGAIN) {
		relay_c2b_pump(c);
	} else if (res == -EINVAL || res == -EIO) { /* kTLS: the next record is not data */
		relay_ktls_record(c);
	} else if (res < 0) {
		conn_fail(c, CR_CLIENT_RESET, res);
	} else if (res == 0) {
		c2b_eof(c);
	} else {
		dir_splice_out(c, &c->be_wr, &c->c2b, c->bfd, (unsigned)res);
	}
}

void relay_cli_read(struct conn *c, int res)
{
	if (res == -EIO && c->ktls_rx) { /* the next record is not application data */
		relay_ktls_record(c);
		return;
	}
	if (res < 0) {
		conn_fail(c, CR_CLIENT_RESET, res);
		return;
	}
	if (res == 0) {
		c2b_eof(c);
		return;
	}
	if (c->plain || c->ktls_rx) {
		track_owed(c, 1, c->cbuf, (size_t)res);
		dir_send(c, &c->be_wr, &c->c2b, c->bfd, c->cbuf, (unsigned)res);
		return;
	}
	if (hs_conn_feed(c->tls, c->cli_rd.buf, (size_t)res)) { /* cbuf, or a ring buffer */
		conn_close(c, CR_INTERNAL);
		return;
	}
	relay_c2b_pump(c); /* may free c */
}


/* Read more client plaintext in the current phase. */
static void cli_plain_read(struct conn *c)
{
	if (c->phase == PH_STARTUP)
		conn_startup_pump(c);
	else
		relay_c2b_pump(c);
}

/* Close because a KeyUpdate cannot be followed in the kernel; rc says why. */
static void rekey_failed(struct conn *c, const char *msg, int rc)
{
	char extra[160];
	snprintf(extra, sizeof(extra), "reason=keyupdate_unsupported error=\"%s\"", strerror(-rc));
	conn_log(c, LOG_WARN, msg, extra);
	conn_close(c, CR_KEYUPDATE);
}

int relay_tx_rekey(struct conn *c)
{
	static const uint8_t ku[5] = { 24, 0, 0, 1, 0 }; /* KeyUpdate(update_not_requested) */
	struct ktls_keys tx;
	c->tx_rekey = 0;
	if (c->phase >= PH_FINAL || c->notify_sent)
		return 0; /* closing anyway */
	/* the KeyUpdate goes out under the old key, every record after it under the new */
	int rc = ktls_send_record(c->cfd, KTLS_REC_HANDSHAKE, ku, sizeof(ku));
	if (rc) {
		rekey_failed(c, "could not send our KeyUpdate to the client, closing", rc);
		return 1;
	}
	rc = hs_traffic_update(&c->traffic, 0, &tx);
	if (!rc)
		rc = ktls_install(c->cfd, KTLS_TX, &tx);
	ktls_keys_wipe(&tx);
	if (rc) {
		c->notify_sent = 1; /* it would go out under the old key, which the client dropped */
		rekey_failed(c, "this kernel cannot rekey kTLS TX, closing", rc);
		return 1;
	}
	STAT_INC(c->w, rekey_tx);
	return 0;
}

/* TLS 1.3 KeyUpdate from the client (RFC 8446 4.6.3): the records after it are
 * protected with the client's next traffic secret. Kernels from 6.14 stop RX at it
 * until that key is installed; older ones refuse a second TLS_RX (EBUSY) and would
 * fail on the next record, so the connection closes cleanly, with the reason.
 * msg: the handshake message, n bytes. 0, or 1 if c is closing. */
static int key_update(struct conn *c, const uint8_t *msg, int n)
{
	struct ktls_keys rx;
	/* type 24, 24-bit length 1, request_update: 0 update_not_requested, 1 requested */
	if (n != 5 || msg[1] || msg[2] || msg[3] != 1 || msg[4] > 1) {
		conn_log(c, LOG_INFO, "malformed KeyUpdate from client, closing", NULL);
		conn_close(c, CR_PROTOCOL);
		return 1;
	}
	int rc = c->traffic.len ? hs_traffic_update(&c->traffic, 1, &rx) : -ENOKEY;
	if (!rc)
		rc = ktls_install(c->cfd, KTLS_RX, &rx);
	ktls_keys_wipe(&rx);
	if (rc) {
		rekey_failed(c, "client KeyUpdate: this kernel cannot rekey kTLS RX, closing", rc);
		return 1;
	}
	STAT_INC(c->w, rekey_rx);
	if (log_enabled(LOG_DEBUG))
		conn_log(c, LOG_DEBUG, "client KeyUpdate: kTLS RX rekeyed", msg[4] ? "update_requested=1" : NULL);
	if (msg[4]) {
		c->tx_rekey = 1; /* answered as soon as nothing else is being sent */
		if (!c->cli_wr.pending)
			return relay_tx_rekey(c);
	}
	return 0;
}

/* kTLS RX stopped at a non-data record: read it with its type and act on it. */
void relay_ktls_record(struct conn *c)
{
	uint8_t type;
	char extra[96];
	if (!conn_buf(c, &c->cbuf)) { /* a splice relay has none */
		conn_close(c, CR_INTERNAL);
		return;
	}
	/* a whole record, whatever the phase: a control record must not be cut short */
	uint8_t *buf = c->cbuf;
	int n = ktls_recv_record(c->cfd, buf, CBUF_SIZE, &type);
	if (n == -EAGAIN) {
		cli_plain_read(c);
		return;
	}
	if (n < 0) {
		snprintf(extra, sizeof(extra), "error=\"%s\"", strerror(-n));
		conn_log(c, LOG_INFO, "kTLS receive failed", extra);
		conn_fail(c, CR_CLIENT_RESET, n);
		return;
	}
	if (type == KTLS_REC_DATA) { /* raced with a data record: take it as read */
		if (c->phase == PH_STARTUP) { /* exact reads into pkt: more is a pipelining client */
			if ((unsigned)n > c->need - c->have) {
				conn_log(c, LOG_INFO, "refused: data after the startup packet", NULL);
				conn_close(c, CR_PROTOCOL);
				return;
			}
			memcpy(c->pkt + c->have, buf, (size_t)n);
		}
		conn_on_cli_read(c, n);
		return;
	}
	if (type == KTLS_REC_ALERT && n >= 2 && buf[1] == 0) { /* close_notify */
		conn_on_cli_read(c, 0);
		return;
	}
	if (type == KTLS_REC_ALERT) {
		snprintf(extra, sizeof(extra), "alert=%d level=%d", n >= 2 ? buf[1] : -1, buf[0]);
		conn_log(c, LOG_INFO, "fatal alert from client", extra);
		conn_close(c, CR_CLIENT_RESET);
		return;
	}
	if (type == KTLS_REC_HANDSHAKE && n >= 1 && buf[0] == 24 && key_update(c, buf, n))
		return;
	/* other handshake messages (e.g. tickets) carry nothing for the pooler */
	cli_plain_read(c);
}

void relay_release_idle(struct conn *c, int pool_too)
{
	c->bufs_released = 1;
	if (c->tls) /* even with a send in flight: it is from bbuf, not from a BIO */
		hs_conn_shrink_bios(c->tls);
	/* only the reads may be waiting: nothing is being sent out of the buffers, and
	 * OpenSSL holds no output that still has to go through bbuf */
	if (c->cli_wr.pending || c->be_wr.pending || (c->tls && hs_conn_pending_out(c->tls)))
		return;
	if (c->tls)
		hs_conn_release_buffers(c->tls);
	if (pool_too) {
		bufpool_release(c->cbuf);
		bufpool_release(c->bbuf);
	}
}

/* Backend -> client: encrypt, then push ciphertext out in chunks of up to BBUF_OUT. */
void relay_b2c_flush(struct conn *c)
{
	if (!c->plain && !c->ktls_tx) {
		size_t n = hs_conn_drain(c->tls, c->bbuf, BBUF_OUT);
		if (n) {
			dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, (unsigned)n);
			return;
		}
	}
	if (c->b2c.eof_pending) {
		c->b2c.done = 1;
		if (c->ktls_tx && !c->notify_sent) {
			c->notify_sent = 1;
			ktls_send_close_notify(c->cfd);
		}
		shutdown(c->cfd, SHUT_WR);
		check_done(c);
		return;
	}
	if (c->splice)
		b2c_splice_in(c);
	else if (!drain_close_idle(c))
		be_recv(c);
}

void relay_be_read(struct conn *c, int res)
{
	if (res == -EAGAIN && c->splice) {
		b2c_splice_in(c);
		return;
	}
	if (res < 0) {
		conn_fail(c, CR_BACKEND_RESET, res);
		return;
	}
	if (res == 0) {
		c->b2c.eof_pending = 1;
		if (!c->plain && !c->ktls_tx) {
			hs_conn_close_notify(c->tls);
			c->notify_sent = 1;
		}
		relay_b2c_flush(c);
		return;
	}
	c->bytes_out += (unsigned)res;
	STAT_ADD(c->w, bytes_b2c, (unsigned)res);
	if (c->splice) { /* the bytes sit in the pipe */
		dir_splice_out(c, &c->cli_wr, &c->b2c, c->cfd, (unsigned)res);
		return;
	}
	track_owed(c, 0, c->be_rd.buf, (size_t)res);
	if (c->plain || c->ktls_tx) {
		dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, (unsigned)res);
		return;
	}
	if (hs_conn_write(c->tls, c->be_rd.buf, (size_t)res)) { /* bbuf, or a ring buffer */
		if (c->tls_rd_failed)
			tls_read_failed(c);
		else
			conn_close(c, CR_INTERNAL);
		return;
	}
	relay_b2c_flush(c);
}

/* A send (or splice out of d's pipe) finished: continue a partial one, else 0. */
int relay_send_progress(struct conn *c, struct io_op *op, struct dir *d, int res, int fd)
{
	if (res == -EAGAIN && d->splicing)
		res = 0; /* woken early: try again */
	if (res < 0)
		return res;
	d->off += (unsigned)res;
	if (d->off < d->len) {
		if (d->splicing)
			engine_splice(E(c), op, d->pipe[0], fd, d->len - d->off, 0);
		else
			engine_send(E(c), op, fd, (uint8_t *)op->buf + res, d->len - d->off);
		return 1;
	}
	d->splicing = 0;
	return 0;
}
