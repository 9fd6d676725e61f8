// SPDX-License-Identifier: MIT
// Private to the engine implementations: the vtable both backends fill in.
#ifndef KS_ENGINE_INT_H
#define KS_ENGINE_INT_H

#include "engine.h"

#include <stddef.h>

enum engine_op_type { EOP_ACCEPT = 1, EOP_RECV, EOP_SEND, EOP_CONNECT, EOP_SPLICE, EOP_RECV_PICK };

struct engine_ops {
	void (*accept)(struct engine *e, struct io_op *op, int fd);
	void (*recv)(struct engine *e, struct io_op *op);
	void (*recv_pick)(struct engine *e, struct io_op *op); /* NULL: not offered */
	void (*send)(struct engine *e, struct io_op *op);
	void (*connect)(struct engine *e, struct io_op *op);
	void (*splice)(struct engine *e, struct io_op *op);
	void (*cancel)(struct engine *e, struct io_op *op);
	void (*close)(struct engine *e, int fd);
	int (*run)(struct engine *e, int timeout_ms);
	void (*destroy)(struct engine *e);
};

struct engine {
	const struct engine_ops *ops;
	const char *name;
	engine_cb cb;
	void *ctx;
	struct engine_stats st;
	char features[160];
	int bufs_quiet;  /* see engine_bufs_quiet() */
	int can_pick;    /* recv_pick is set up */
};

int engine_uring_create(unsigned entries, unsigned flags, struct engine **out, char *why, size_t whylen);
int engine_epoll_create(unsigned entries, unsigned flags, struct engine **out, char *why, size_t whylen);

/* Deliver a completion to the owner. */
static inline void engine_complete(struct engine *e, struct io_op *op, int res, int more)
{
	if (!more)
		op->pending = 0;
	/* for ENGINE_POLL_FIRST: a short read emptied the socket */
	if (op->type == EOP_RECV || op->type == EOP_RECV_PICK)
		op->drained = res >= 0 && (unsigned)res < op->len;
	e->st.completions++;
	e->cb(e->ctx, op, res, more);
}

#endif
