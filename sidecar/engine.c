// SPDX-License-Identifier: MIT
// Engine front end: argument recording and dispatch to the chosen backend.
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>

int engine_create(enum engine_kind kind, unsigned entries, unsigned flags, engine_cb cb, void *ctx,
		  struct engine **out, char *why, size_t whylen)
{
	int rc = kind == ENGINE_URING ? engine_uring_create(entries, flags, out, why, whylen)
				      : engine_epoll_create(entries, flags, out, why, whylen);
	if (rc)
		return rc;
	(*out)->cb = cb;
	(*out)->ctx = ctx;
	return 0;
}

void engine_destroy(struct engine *e)
{
	if (e)
		e->ops->destroy(e);
}

const char *engine_name(const struct engine *e) { return e->name; }
const char *engine_features(const struct engine *e) { return e->features; }
const struct engine_stats *engine_stats(const struct engine *e) { return &e->st; }
int engine_bufs_quiet(const struct engine *e) { return e->bufs_quiet; }

static void op_arm(struct io_op *op, int type, int fd, void *buf, unsigned len)
{
	op->pending = 1;
	op->type = (uint8_t)type;
	op->res = 0;
	op->fd = fd;
	op->buf = buf;
	op->len = len;
}

void engine_accept(struct engine *e, struct io_op *op, int listen_fd)
{
	op_arm(op, EOP_ACCEPT, listen_fd, NULL, 0);
	e->ops->accept(e, op, listen_fd);
}

void engine_recv(struct engine *e, struct io_op *op, int fd, void *buf, unsigned len)
{
	op_arm(op, EOP_RECV, fd, buf, len);
	e->ops->recv(e, op);
}

int engine_can_pick(const struct engine *e)
{
	return e->can_pick; /* set only by an engine whose recv_pick is ready */
}

void engine_recv_pick(struct engine *e, struct io_op *op, int fd, unsigned len)
{
	op_arm(op, EOP_RECV_PICK, fd, NULL, len);
	e->ops->recv_pick(e, op);
}

void engine_send(struct engine *e, struct io_op *op, int fd, const void *buf, unsigned len)
{
	op_arm(op, EOP_SEND, fd, (void *)buf, len);
	e->ops->send(e, op);
}

void engine_connect(struct engine *e, struct io_op *op, int fd, const struct sockaddr *sa, socklen_t len)
{
	op_arm(op, EOP_CONNECT, fd, NULL, 0);
	op->addr = sa;
	op->addrlen = len;
	e->ops->connect(e, op);
}

void engine_splice(struct engine *e, struct io_op *op, int fd_in, int fd_out, unsigned len, int gate_in)
{
	/* op->fd is the descriptor to wait on: the source when gated, else the sink */
	op_arm(op, EOP_SPLICE, gate_in ? fd_in : fd_out, NULL, len);
	op->fd2 = gate_in ? fd_out : fd_in;
	op->gate = (uint8_t)!!gate_in;
	e->ops->splice(e, op);
}

void engine_cancel(struct engine *e, struct io_op *op)
{
	if (op->pending)
		e->ops->cancel(e, op);
}

void engine_close(struct engine *e, int fd)
{
	if (fd >= 0)
		e->ops->close(e, fd);
}

int engine_run(struct engine *e, int timeout_ms)
{
	e->st.loops++;
	return e->ops->run(e, timeout_ms);
}
