// SPDX-License-Identifier: MIT
// io_uring backend: one ring per worker, created on the worker's own thread so
// SINGLE_ISSUER/DEFER_TASKRUN apply. Multishot accept where the kernel has it
// (5.19+), re-armed single-shot accept on older kernels.
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include <liburing.h>

struct uring_engine {
	struct engine base;
	struct io_uring ring;
	int multishot;  /* 1 until the kernel refuses multishot accept */
	int defer;      /* DEFER_TASKRUN in use */
};

#define UE(e) ((struct uring_engine *)(e))

static struct io_uring_sqe *sqe_get(struct uring_engine *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	while (!sqe) {
		/* SQ full: push what we have to the kernel and retry */
		io_uring_submit(&u->ring);
		u->base.st.enters++;
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static void prep_accept(struct uring_engine *u, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(u);
	if (u->multishot)
		io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, op);
}

static void u_accept(struct engine *e, struct io_op *op, int fd)
{
	(void)fd; /* op->res counts accepts, to tell "no multishot" from real errors */
	prep_accept(UE(e), op);
}

static void u_recv(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_recv(sqe, op->fd, op->buf, op->len, 0);
	io_uring_sqe_set_data(sqe, op);
}

static void u_send(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_send(sqe, op->fd, op->buf, op->len, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op);
}

static void u_connect(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_connect(sqe, op->fd, op->addr, op->addrlen);
	io_uring_sqe_set_data(sqe, op);
}

/* The gating poll carries op's address with the low bit set; its CQE is not reported. */
#define POLL_TAG(op) ((void *)((uintptr_t)(op) | 1))

static void u_splice(struct engine *e, struct io_op *op)
{
	struct uring_engine *u = UE(e);
	int in = op->gate ? op->fd : op->fd2, out = op->gate ? op->fd2 : op->fd;
	/* splice always runs on an io-wq worker, and our sockets are nonblocking:
	 * start it only once the socket side is ready (source readable, sink writable) */
	struct io_uring_sqe *sqe = sqe_get(u);
	io_uring_prep_poll_add(sqe, op->fd, op->gate ? POLLIN : POLLOUT);
	io_uring_sqe_set_data(sqe, POLL_TAG(op));
	sqe->flags |= IOSQE_IO_LINK;
	sqe = sqe_get(u);
	io_uring_prep_splice(sqe, in, -1, out, -1, op->len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	io_uring_sqe_set_data(sqe, op);
}

static void u_cancel(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_cancel(sqe, op, 0);
	io_uring_sqe_set_data(sqe, NULL); /* untracked */
	if (op->type == EOP_SPLICE) {
		sqe = sqe_get(UE(e));
		io_uring_prep_cancel(sqe, POLL_TAG(op), 0);
		io_uring_sqe_set_data(sqe, NULL);
	}
}

static void u_close(struct engine *e, int fd)
{
	(void)e;
	close(fd);
}

/* Accept completions: keep the accept armed, fall back from multishot once. */
static void accept_done(struct uring_engine *u, struct io_op *op, int res, int more)
{
	if (res == -EINVAL && u->multishot && op->res == 0) {
		u->multishot = 0;
		snprintf(u->base.features, sizeof(u->base.features), "%s", u->defer ? "defer-taskrun" : "");
		prep_accept(u, op);
		return;
	}
	if (res >= 0) {
		op->res = 1;
		if (!more)
			prep_accept(u, op);
		engine_complete(&u->base, op, res, 1);
		return;
	}
	if (more) /* a transient error inside a live multishot */
		engine_complete(&u->base, op, res, 1);
	else
		engine_complete(&u->base, op, res, 0);
}

static int u_run(struct engine *e, int timeout_ms)
{
	struct uring_engine *u = UE(e);
	struct __kernel_timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe;
	e->st.enters++;
	int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return rc;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		seen++;
		struct io_op *op = io_uring_cqe_get_data(cqe);
		if (!op || ((uintptr_t)op & 1))
			continue; /* untracked, or a splice's gating poll */
		int res = cqe->res, more = !!(cqe->flags & IORING_CQE_F_MORE);
		if (op->type == EOP_ACCEPT)
			accept_done(u, op, res, more);
		else
			engine_complete(e, op, res, more);
	}
	io_uring_cq_advance(&u->ring, seen);
	return 0;
}

static void u_destroy(struct engine *e)
{
	io_uring_queue_exit(&UE(e)->ring);
	free(e);
}

static const struct engine_ops uring_ops = {
	.accept = u_accept,
	.recv = u_recv,
	.send = u_send,
	.connect = u_connect,
	.splice = u_splice,
	.cancel = u_cancel,
	.close = u_close,
	.run = u_run,
	.destroy = u_destroy,
};

/* Probe the opcodes we rely on; 0 or -EOPNOTSUPP naming the missing one. */
static int probe_ops(struct io_uring *ring, char *why, size_t whylen)
{
	static const struct { int op; const char *name; } need[] = {
		{ IORING_OP_ACCEPT, "accept" }, { IORING_OP_RECV, "recv" }, { IORING_OP_SEND, "send" },
		{ IORING_OP_CONNECT, "connect" }, { IORING_OP_ASYNC_CANCEL, "async-cancel" },
		{ IORING_OP_SPLICE, "splice" }, { IORING_OP_POLL_ADD, "poll" },
	};
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p) {
		snprintf(why, whylen, "io_uring probe unsupported (kernel older than 5.6)");
		return -EOPNOTSUPP;
	}
	int rc = 0;
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]) && !rc; i++) {
		if (!io_uring_opcode_supported(p, need[i].op)) {
			snprintf(why, whylen, "io_uring lacks opcode %s", need[i].name);
			rc = -EOPNOTSUPP;
		}
	}
	io_uring_free_probe(p);
	return rc;
}

int engine_uring_create(unsigned entries, struct engine **out, char *why, size_t whylen)
{
	static const struct { unsigned flags; const char *name; } tries[] = {
		{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single-issuer,defer-taskrun" },
		{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, "single-issuer,coop-taskrun" },
		{ IORING_SETUP_COOP_TASKRUN, "coop-taskrun" },
		{ 0, "" },
	};
	struct uring_engine *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	int rc = -EINVAL;
	size_t i;
	for (i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &u->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	if (rc) {
		snprintf(why, whylen, "io_uring_setup: %s", strerror(-rc));
		free(u);
		return rc;
	}
	if ((rc = probe_ops(&u->ring, why, whylen))) {
		io_uring_queue_exit(&u->ring);
		free(u);
		return rc;
	}
	/* splices run on io-wq: a few workers per ring, not one per idle connection */
	unsigned iowq[2] = { 4, 4 };
	io_uring_register_iowq_max_workers(&u->ring, iowq);
	u->multishot = 1;
	u->defer = (tries[i].flags & IORING_SETUP_DEFER_TASKRUN) != 0;
	u->base.ops = &uring_ops;
	u->base.name = "uring";
	snprintf(u->base.features, sizeof(u->base.features), "%s%smultishot-accept", tries[i].name,
		 tries[i].name[0] ? "," : "");
	*out = &u->base;
	return 0;
}
