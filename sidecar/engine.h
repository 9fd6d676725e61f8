// SPDX-License-Identifier: MIT
// The event engine interface: completion-style operations (accept, recv, send,
// connect) with one callback per completion. engine_uring.c implements it on
// io_uring, engine_epoll.c emulates it on epoll; callers cannot tell which runs.
#ifndef KS_ENGINE_H
#define KS_ENGINE_H

#include <stdint.h>
#include <sys/socket.h>

struct engine;

/* An operation lives inside the object that owns it; user_data points at it. */
struct io_op {
	uint8_t kind;       /* owner-defined dispatch tag; 0 is reserved */
	uint8_t pending;    /* submitted and not finally completed */
	uint8_t type;       /* private to the engines: which call this is */
	int fd;
	int fd2;            /* splice: the other end */
	uint8_t gate;       /* splice: wait for fd (the source) to be readable first */
	void *buf;
	unsigned len;
	const struct sockaddr *addr;
	socklen_t addrlen;
	int res;            /* private to the engines */
	uint8_t drained;    /* private to the engines: the last recv emptied the socket */
	struct io_op *next; /* private to engine_epoll.c: completion queue */
};

/* res: like cqe->res (bytes, fd or -errno). more: another completion follows (multishot). */
typedef void (*engine_cb)(void *ctx, struct io_op *op, int res, int more);

enum engine_kind { ENGINE_URING, ENGINE_EPOLL };

struct engine_stats {
	uint64_t loops;       /* engine_run passes */
	uint64_t enters;      /* io_uring_enter or epoll_wait calls */
	uint64_t completions;
};

/* engine_create flags: io_uring techniques, off by default; the epoll engine takes only
 * ENGINE_POLL_FIRST. */
#define ENGINE_SQPOLL 0x1u      /* a kernel thread polls the SQ; falls back (logged) if refused */
#define ENGINE_FIXED_FILES 0x2u /* registered files, indexed by fd number */
#define ENGINE_POLL_FIRST 0x4u  /* a recv after one that emptied the socket waits for data first */
#define ENGINE_BUF_RING 0x8u    /* io_uring: engine_recv_pick reads into a provided buffer ring */

/* Create an engine. 0 or -errno (-EPERM/-ENOSYS: io_uring blocked). why: reason text. */
int engine_create(enum engine_kind kind, unsigned entries, unsigned flags, engine_cb cb, void *ctx,
		  struct engine **out, char *why, size_t whylen);
void engine_destroy(struct engine *e);
const char *engine_name(const struct engine *e);
/* Features in use, e.g. "single-issuer,defer-taskrun,multishot-accept,fixed-files". */
const char *engine_features(const struct engine *e);
const struct engine_stats *engine_stats(const struct engine *e);
/* 1 if the buffer of a pending recv is written only inside engine_run, on the owner's
 * thread (epoll; io_uring with DEFER_TASKRUN): outside it, the owner may drop the
 * buffer's pages (madvise) while the recv waits. */
int engine_bufs_quiet(const struct engine *e);

/* Accept repeatedly on listen_fd: each completion carries a new fd (nonblocking, cloexec). */
void engine_accept(struct engine *e, struct io_op *op, int listen_fd);
void engine_recv(struct engine *e, struct io_op *op, int fd, void *buf, unsigned len);
/* 1 if engine_recv_pick is there (io_uring with ENGINE_BUF_RING, on a kernel with buffer rings). */
int engine_can_pick(const struct engine *e);
/* recv up to len bytes into a buffer the engine picks when data arrives (a provided buffer
 * ring): the connection holds no buffer while it waits. On completion op->buf points at the
 * data, valid only inside the callback, which must consume it. */
void engine_recv_pick(struct engine *e, struct io_op *op, int fd, unsigned len);
void engine_send(struct engine *e, struct io_op *op, int fd, const void *buf, unsigned len);
void engine_connect(struct engine *e, struct io_op *op, int fd, const struct sockaddr *sa, socklen_t len);
/* splice(2) up to len bytes from fd_in to fd_out (one of them a pipe), once the socket side is
 * ready: gate_in waits for fd_in (a socket source) to be readable, else for fd_out to be
 * writable. May complete with -EAGAIN on a spurious wakeup: submit again. */
void engine_splice(struct engine *e, struct io_op *op, int fd_in, int fd_out, unsigned len, int gate_in);
/* Ask a pending op to finish early; its completion (maybe -ECANCELED) still arrives. */
void engine_cancel(struct engine *e, struct io_op *op);
/* Close fd; no op on it may be pending. */
void engine_close(struct engine *e, int fd);
/* Submit queued work, wait up to timeout_ms for completions and dispatch them. 0 or -errno. */
int engine_run(struct engine *e, int timeout_ms);

#endif
