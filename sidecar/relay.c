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
	free(c->cbuf);
	free(c->bbuf);
	c->cbuf = c->bbuf = NULL;
	return 0;
}

static void b2c_splice_in(struct conn *c)
{
	c->b2c.spl_in = 1;
	engine_splice(E(c), &c->be_rd, c->bfd, c->b2c.pipe[1], PIPE_CHUNK, 1);
}

void relay_start(struct conn *c)
{
	c->phase = PH_RELAY;
	uint64_t idle = (uint64_t)CFG(c)->idle_timeout_ms;
	c->deadline_ms = idle ? c->w->now_ms + idle : 0;
	int rc = -1;
	if (CFG(c)->relay == RELAY_SPLICE && c->ktls_tx && c->ktls_rx && (rc = start_splice(c)))
		conn_ktls_fallback("create splice pipes (using copy relay)", rc);
	if (c->splice) {
		b2c_splice_in(c);
	} else {
		if (!c->bbuf && !(c->bbuf = malloc(BBUF_SIZE))) {
			conn_close(c, CR_INTERNAL);
			return;
		}
		engine_recv(E(c), &c->be_rd, c->bfd, c->bbuf, BBUF_SIZE);
	}
	relay_c2b_pump(c);
}

static void check_done(struct conn *c)
{
	if (c->c2b.done && c->b2c.done)
		conn_close(c, CR_EOF);
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
		engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CBUF_SIZE);
		return;
	}
	int r = hs_conn_read(c->tls, c->cbuf, CBUF_SIZE);
	if (r > 0) {
		dir_send(c, &c->be_wr, &c->c2b, c->bfd, c->cbuf, (unsigned)r);
		return;
	}
	if (r == 0) {
		engine_recv(E(c), &c->cli_rd, c->cfd, c->cbuf, CBUF_SIZE);
		return;
	}
	if (r == -EPIPE) { /* close_notify: half-close toward the pooler */
		c->c2b.done = 1;
		shutdown(c->bfd, SHUT_WR);
		check_done(c);
		return;
	}
	char extra[512], why[400];
	snprintf(extra, sizeof(extra), "reason=\"%s\"", log_esc(why, sizeof(why), hs_conn_reason(c->tls)));
	conn_log(c, LOG_INFO, "TLS error from client", extra);
	conn_close(c, CR_CLIENT_RESET);
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
		dir_send(c, &c->be_wr, &c->c2b, c->bfd, c->cbuf, (unsigned)res);
		return;
	}
	if (hs_conn_feed(c->tls, c->cbuf, (size_t)res)) {
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

/* kTLS RX stopped at a non-data record: read it with its type and act on it. */
void relay_ktls_record(struct conn *c)
{
	uint8_t type;
	char extra[96];
	if (!c->cbuf && !(c->cbuf = malloc(CBUF_SIZE))) { /* a splice relay has none */
		conn_close(c, CR_INTERNAL);
		return;
	}
	uint8_t *buf = c->phase == PH_STARTUP ? c->pkt + c->have : c->cbuf;
	size_t cap = c->phase == PH_STARTUP ? c->need - c->have : CBUF_SIZE;
	int n = ktls_recv_record(c->cfd, buf, cap, &type);
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
	if (type == KTLS_REC_HANDSHAKE && n >= 1 && buf[0] == 24) {
		/* TLS 1.3 KeyUpdate: kernels before 6.14 cannot rekey RX, and the next
		 * records would not decrypt. Close cleanly instead of passing garbage. */
		conn_log(c, LOG_WARN, "client KeyUpdate: this kernel cannot rekey kTLS RX, closing",
			 "reason=keyupdate_unsupported");
		conn_close(c, CR_KEYUPDATE);
		return;
	}
	/* other handshake messages (e.g. tickets) carry nothing for the pooler */
	cli_plain_read(c);
}

/* Backend -> client: encrypt, then push ciphertext out in bbuf-sized chunks. */
void relay_b2c_flush(struct conn *c)
{
	if (!c->plain && !c->ktls_tx) {
		size_t n = hs_conn_drain(c->tls, c->bbuf, BBUF_SIZE);
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
	else
		engine_recv(E(c), &c->be_rd, c->bfd, c->bbuf, BBUF_SIZE);
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
	if (c->plain || c->ktls_tx) {
		dir_send(c, &c->cli_wr, &c->b2c, c->cfd, c->bbuf, (unsigned)res);
		return;
	}
	if (hs_conn_write(c->tls, c->bbuf, (size_t)res)) {
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
