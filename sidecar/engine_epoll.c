// SPDX-License-Identifier: MIT
// epoll backend emulating completions: an op is tried at once and, on EAGAIN,
// parked on its fd until an edge-triggered event makes it retry (a recv on a
// socket not watched yet is parked without trying). Finished ops
// go through a queue so completions never run inside the submitting call.
#include "engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct fd_slot {
	struct io_op *rd, *wr; /* parked ops: recv/accept, send/connect */
	uint8_t registered;
	uint8_t level;         /* listening socket: level-triggered */
	uint8_t rd_edge;       /* a read event came while no recv was parked */
	uint8_t rd_hup;        /* the peer closed or reset: its event was the last */
};

struct epoll_engine {
	struct engine base;
	int epfd;
	int poll_first;        /* ENGINE_POLL_FIRST */
	struct fd_slot *slots;
	size_t nslots;
	struct io_op *done_head, *done_tail;
};

#define EE(e) ((struct epoll_engine *)(e))

static struct fd_slot *slot(struct epoll_engine *p, int fd)
{
	if ((size_t)fd >= p->nslots) {
		size_t n = p->nslots ? p->nslots : 1024;
		while (n <= (size_t)fd)
			n *= 2;
		struct fd_slot *ns = realloc(p->slots, n * sizeof(*ns));
		if (!ns)
			return NULL;
		memset(ns + p->nslots, 0, (n - p->nslots) * sizeof(*ns));
		p->slots = ns;
		p->nslots = n;
	}
	return &p->slots[fd];
}

static void push_done(struct epoll_engine *p, struct io_op *op, int res)
{
	op->res = res;
	op->next = NULL;
	if (p->done_tail)
		p->done_tail->next = op;
	else
		p->done_head = op;
	p->done_tail = op;
}

/* Park op on its fd; registers the fd with epoll on first use. */
static void park(struct epoll_engine *p, struct io_op *op, int write)
{
	struct fd_slot *s = slot(p, op->fd);
	if (!s) {
		push_done(p, op, -ENOMEM);
		return;
	}
	if (write)
		s->wr = op;
	else
		s->rd = op;
	if (s->registered)
		return;
	struct epoll_event ev = { .data.fd = op->fd };
	ev.events = op->type == EOP_ACCEPT ? EPOLLIN : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, op->fd, &ev) < 0) {
		int err = -errno;
		if (write)
			s->wr = NULL;
		else
			s->rd = NULL;
		push_done(p, op, err);
		return;
	}
	s->registered = 1;
	s->level = op->type == EOP_ACCEPT;
}

/* A connect that failed with EAGAIN (a unix socket's full accept queue): a result to
 * deliver, not a reason to wait, since no event will say when to try again. */
#define CONNECT_EAGAIN INT_MIN

/* Try the syscall behind op: result, or -EAGAIN to keep waiting. */
static int attempt(struct io_op *op)
{
	ssize_t r = -1;
	int err = 0;
	socklen_t l = sizeof(err);
	struct sockaddr_storage ss;
	switch ((enum engine_op_type)op->type) {
	case EOP_ACCEPT:
		r = accept4(op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		break;
	case EOP_RECV:
		r = recv(op->fd, op->buf, op->len, MSG_DONTWAIT);
		break;
	case EOP_SEND:
		r = send(op->fd, op->buf, op->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	case EOP_RECV_PICK: /* not offered by this engine */
		errno = EOPNOTSUPP;
		break;
	case EOP_SPLICE:
		r = splice(op->gate ? op->fd : op->fd2, NULL, op->gate ? op->fd2 : op->fd, NULL, op->len,
			   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		break;
	case EOP_CONNECT:
		if (op->res == 1) { /* connect already started: read its outcome */
			if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
				return -errno;
			if (err)
				return -err;
			l = sizeof(ss);
			return getpeername(op->fd, (struct sockaddr *)&ss, &l) == 0 ? 0 : -EAGAIN;
		}
		op->res = 1;
		r = connect(op->fd, op->addr, op->addrlen);
		if (r < 0 && errno == EINPROGRESS)
			return -EAGAIN;
		if (r < 0 && errno == EAGAIN)
			return CONNECT_EAGAIN;
		break;
	}
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (int)r;
}

static void submit(struct epoll_engine *p, struct io_op *op, int write)
{
	int r = attempt(op);
	if (r == -EAGAIN)
		park(p, op, write);
	else
		push_done(p, op, r == CONNECT_EAGAIN ? -EAGAIN : r);
}

static void e_accept(struct engine *e, struct io_op *op, int fd)
{
	(void)fd;
	park(EE(e), op, 0);
}

/* After a recv that emptied the socket, a new recv waits for the next read event
 * instead of trying first, unless one came since (rd_edge): edge-triggered epoll
 * reports each arrival once. After a hangup it always tries: a FIN or reset that
 * came with the last data was reported with it, and no further event will come. */
static void e_recv(struct engine *e, struct io_op *op)
{
	struct epoll_engine *p = EE(e);
	struct fd_slot *s = (size_t)op->fd < p->nslots ? &p->slots[op->fd] : NULL;
	if (s && p->poll_first && op->drained && s->registered && !s->rd_edge && !s->rd_hup && !s->rd) {
		s->rd = op;
		return;
	}
	/* A socket not watched yet (just accepted, or connected at once): watch it and
	 * wait, since EPOLL_CTL_ADD reports data that is already there. A client that
	 * was just accepted has rarely sent anything yet: this saves a recv that would
	 * find nothing. */
	if (!s || !s->registered) {
		park(p, op, 0);
		return;
	}
	s->rd_edge = 0;
	submit(p, op, 0);
}
static void e_send(struct engine *e, struct io_op *op) { submit(EE(e), op, 1); }
static void e_connect(struct engine *e, struct io_op *op) { submit(EE(e), op, 1); }
/* a gated splice waits for its source to be readable, an ungated one for its sink */
static void e_splice(struct engine *e, struct io_op *op) { submit(EE(e), op, !op->gate); }

static void e_cancel(struct engine *e, struct io_op *op)
{
	struct epoll_engine *p = EE(e);
	struct fd_slot *s = (size_t)op->fd < p->nslots ? &p->slots[op->fd] : NULL;
	if (!s || (s->rd != op && s->wr != op))
		return; /* already queued for completion */
	if (s->rd == op)
		s->rd = NULL;
	else
		s->wr = NULL;
	if (op->type == EOP_ACCEPT && s->registered) {
		/* a level-triggered listener would spin: stop watching it */
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, op->fd, NULL);
		s->registered = 0;
	}
	push_done(p, op, -ECANCELED);
}

static void e_close(struct engine *e, int fd)
{
	struct epoll_engine *p = EE(e);
	if ((size_t)fd < p->nslots) {
		/* no EPOLL_CTL_DEL: closing the last descriptor of a file takes it out of
		 * the epoll set, and the engine never duplicates one */
		memset(&p->slots[fd], 0, sizeof(p->slots[fd]));
	}
	close(fd);
}

/* An fd became ready: retry whatever is parked on it. */
static void on_event(struct epoll_engine *p, int fd, uint32_t ev)
{
	struct fd_slot *s = &p->slots[fd];
	if (!s->rd && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
		s->rd_edge = 1;
	if (ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
		s->rd_hup = 1;
	if (s->rd && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))) {
		struct io_op *op = s->rd;
		if (op->type == EOP_ACCEPT) {
			/* at most a batch per wakeup; level-triggered brings us back */
			for (int i = 0; i < 32 && s->rd == op; i++) {
				int r = attempt(op);
				if (r == -EAGAIN)
					break;
				if (r < 0 && r != -ECONNABORTED && r != -EPERM) {
					/* EMFILE and friends: end the accept; the owner re-arms later */
					s->rd = NULL;
					epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
					s->registered = 0;
					engine_complete(&p->base, op, r, 0);
					break;
				}
				if (r >= 0)
					engine_complete(&p->base, op, r, 1);
				s = &p->slots[fd]; /* the callback may have grown the table */
			}
		} else {
			int r = attempt(op);
			if (r != -EAGAIN) {
				s->rd = NULL;
				push_done(p, op, r);
			}
		}
	}
	s = &p->slots[fd];
	if (s->wr && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		struct io_op *op = s->wr;
		int r = attempt(op);
		if (r != -EAGAIN) {
			s->wr = NULL;
			push_done(p, op, r);
		}
	}
}

/* Deliver queued completions; new ones queued meanwhile wait for the next pass. */
static void drain(struct epoll_engine *p)
{
	struct io_op *op = p->done_head, *last = p->done_tail;
	p->done_head = p->done_tail = NULL;
	while (op) {
		struct io_op *next = op->next;
		engine_complete(&p->base, op, op->res, 0);
		if (op == last)
			break;
		op = next;
	}
}

static int e_run(struct engine *e, int timeout_ms)
{
	struct epoll_engine *p = EE(e);
	struct epoll_event evs[128];
	drain(p);
	e->st.enters++;
	int n = epoll_wait(p->epfd, evs, 128, p->done_head ? 0 : timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++)
		on_event(p, evs[i].data.fd, evs[i].events);
	drain(p);
	return 0;
}

static void e_destroy(struct engine *e)
{
	struct epoll_engine *p = EE(e);
	close(p->epfd);
	free(p->slots);
	free(p);
}

static const struct engine_ops epoll_ops = {
	.accept = e_accept,
	.recv = e_recv,
	.send = e_send,
	.connect = e_connect,
	.splice = e_splice,
	.cancel = e_cancel,
	.close = e_close,
	.run = e_run,
	.destroy = e_destroy,
};

int engine_epoll_create(unsigned entries, unsigned flags, struct engine **out, char *why, size_t whylen)
{
	(void)entries;
	struct epoll_engine *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		int rc = -errno;
		snprintf(why, whylen, "epoll_create1: %s", strerror(errno));
		free(p);
		return rc;
	}
	p->base.ops = &epoll_ops;
	p->base.name = "epoll";
	p->base.bufs_quiet = 1; /* recv runs on readiness, in engine_run */
	p->poll_first = !!(flags & ENGINE_POLL_FIRST);
	snprintf(p->base.features, sizeof(p->base.features), "edge-triggered%s", p->poll_first ? ",poll-first" : "");
	*out = &p->base;
	return 0;
}
