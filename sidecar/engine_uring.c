// SPDX-License-Identifier: MIT
// io_uring backend: one ring per worker, created on the worker's own thread so
// SINGLE_ISSUER/DEFER_TASKRUN apply. Multishot accept where the kernel has it
// (5.19+), re-armed single-shot accept on older kernels. Optional, off by default:
// SQPOLL and registered files (ENGINE_SQPOLL, ENGINE_FIXED_FILES).
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <liburing.h>

struct uring_engine {
	struct engine base;
	struct io_uring ring;
	int multishot;  /* 1 until the kernel refuses multishot accept */
	int sqpoll;     /* SQPOLL in use */
	int poll_first; /* IORING_RECVSEND_POLL_FIRST after a recv that emptied the socket */
	const char *setup; /* the setup flags in use, for features */
	uint8_t *fixed; /* fixed[fd]: fd is registered at index fd; NULL without registered files */
	unsigned nfixed;
	struct io_uring_buf_ring *br; /* ENGINE_BUF_RING: provided buffers for recv_pick */
	uint8_t *bufs;
	size_t br_bytes;
};

#define BR_GROUP 0
#define BR_COUNT 64u
#define BR_SIZE 17408u /* 17 KiB: a whole TLS 1.3 record with its header */

#define UE(e) ((struct uring_engine *)(e))

static void features_update(struct uring_engine *u)
{
	const char *on[] = { u->setup, u->multishot ? "multishot-accept" : "", u->fixed ? "fixed-files" : "",
			     u->poll_first ? "poll-first" : "", u->br ? "buf-ring" : "" };
	char *f = u->base.features;
	size_t len = sizeof(u->base.features), at = 0;
	f[0] = 0;
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		if (!on[i][0] || at >= len)
			continue;
		int n = snprintf(f + at, len - at, "%s%s", at ? "," : "", on[i]);
		at += n > 0 ? (size_t)n : 0;
	}
}

/* Whether io_uring_submit(_and_wait) makes the syscall, by the test liburing makes: to
 * submit (with SQPOLL only when the SQ thread sleeps) or to wait for a completion. */
static int enter_needed(struct uring_engine *u, int wait)
{
	if (wait && !io_uring_cq_ready(&u->ring))
		return 1;
	if (!io_uring_sq_ready(&u->ring))
		return 0;
	if (!u->sqpoll)
		return 1;
	return !!(IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_NEED_WAKEUP);
}

static struct io_uring_sqe *sqe_get(struct uring_engine *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	while (!sqe) {
		/* SQ full: push what we have to the kernel (or the SQ thread) and retry */
		u->base.st.enters += (uint64_t)enter_needed(u, 0);
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/* Registered files use the fd number as the index. An fd from accept or socket() may
 * reuse the number of one closed behind our back (not through u_close): forget it so
 * that the first use registers the new file over whatever the slot holds. */
static void fixed_forget(struct uring_engine *u, int fd)
{
	if (u->fixed && fd >= 0 && (unsigned)fd < u->nfixed)
		u->fixed[fd] = 0;
}

/* 1 if fd may go in an SQE as a fixed file (registered now if it was not yet). */
static int fixed_use(struct uring_engine *u, int fd)
{
	if (!u->fixed || fd < 0 || (unsigned)fd >= u->nfixed)
		return 0;
	if (!u->fixed[fd] && io_uring_register_files_update(&u->ring, (unsigned)fd, &fd, 1) == 1)
		u->fixed[fd] = 1;
	return u->fixed[fd]; /* a failed update leaves this fd unfixed, which still works */
}

static void fixed_release(struct uring_engine *u, int fd)
{
	int none = -1;
	if (!u->fixed || fd < 0 || (unsigned)fd >= u->nfixed || !u->fixed[fd])
		return;
	/* drop the table's reference, or the socket would outlive close(2) */
	io_uring_register_files_update(&u->ring, (unsigned)fd, &none, 1);
	u->fixed[fd] = 0;
}

/* Point sqe (already prepared with fd) at the registered file when there is one. */
static void sqe_fixed(struct uring_engine *u, struct io_uring_sqe *sqe, int fd)
{
	if (fixed_use(u, fd))
		sqe->flags |= IOSQE_FIXED_FILE;
}

static void prep_accept(struct uring_engine *u, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(u);
	if (u->multishot)
		io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	sqe_fixed(u, sqe, op->fd);
	io_uring_sqe_set_data(sqe, op);
}

static void u_accept(struct engine *e, struct io_op *op, int fd)
{
	(void)fd; /* op->res counts accepts, to tell "no multishot" from real errors */
	prep_accept(UE(e), op);
}

/* A recv into op->buf, or (EOP_RECV_PICK) into a buffer of the ring picked when data
 * arrives. */
static void prep_recv(struct uring_engine *u, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(u);
	io_uring_prep_recv(sqe, op->fd, op->buf, op->len, 0);
	if (op->type == EOP_RECV_PICK) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BR_GROUP;
	}
	/* the last recv took all there was (ping-pong traffic): arm the poll at once
	 * rather than try a recv that finds nothing first */
	if (u->poll_first && op->drained) {
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
		op->res = 1; /* marks the try, for recv_done */
	}
	sqe_fixed(u, sqe, op->fd);
	io_uring_sqe_set_data(sqe, op);
}

static void u_recv(struct engine *e, struct io_op *op) { prep_recv(UE(e), op); }

static void u_recv_pick(struct engine *e, struct io_op *op)
{
	if (op->len > BR_SIZE)
		op->len = BR_SIZE; /* so that a full buffer does not count as "emptied the socket" */
	prep_recv(UE(e), op);
}

/* Recv completions. A kernel older than 5.19 refuses IORING_RECVSEND_POLL_FIRST
 * (EINVAL): retry without it, for good. A picked buffer goes to the owner for the
 * callback, then back to the ring (the callback may have freed op: nothing of it is
 * read afterwards); ENOBUFS (every buffer taken by completions not yet seen): retry. */
static void recv_done(struct uring_engine *u, struct io_op *op, int res, int more, unsigned flags)
{
	if (res == -EINVAL && op->res == 1 && u->poll_first) {
		u->poll_first = 0;
		features_update(u);
		log_warn("engine", "the kernel refuses IORING_RECVSEND_POLL_FIRST, running without it",
			 "error=\"%s\"", strerror(EINVAL));
		prep_recv(u, op);
		return;
	}
	if (op->type == EOP_RECV_PICK && res == -ENOBUFS) {
		prep_recv(u, op);
		return;
	}
	if (op->type != EOP_RECV_PICK || !(flags & IORING_CQE_F_BUFFER)) {
		engine_complete(&u->base, op, res, more);
		return;
	}
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	uint8_t *buf = u->bufs + (size_t)bid * BR_SIZE;
	op->buf = buf;
	engine_complete(&u->base, op, res, more);
	io_uring_buf_ring_add(u->br, buf, BR_SIZE, (unsigned short)bid, io_uring_buf_ring_mask(BR_COUNT), 0);
	io_uring_buf_ring_advance(u->br, 1);
}

static void u_send(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_send(sqe, op->fd, op->buf, op->len, MSG_NOSIGNAL);
	sqe_fixed(UE(e), sqe, op->fd);
	io_uring_sqe_set_data(sqe, op);
}

static void u_connect(struct engine *e, struct io_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(UE(e));
	io_uring_prep_connect(sqe, op->fd, op->addr, op->addrlen);
	fixed_forget(UE(e), op->fd); /* a new socket: connect is its first op */
	sqe_fixed(UE(e), sqe, op->fd);
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
	sqe_fixed(u, sqe, op->fd);
	io_uring_sqe_set_data(sqe, POLL_TAG(op));
	sqe->flags |= IOSQE_IO_LINK;
	/* Only the socket end (op->fd) can be fixed: the pipes are closed outside the engine.
	 * IOSQE_FIXED_FILE names the output fd, SPLICE_F_FD_IN_FIXED the input. */
	unsigned fl = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
	int fix = fixed_use(u, op->fd);
	if (fix && op->gate)
		fl |= SPLICE_F_FD_IN_FIXED;
	sqe = sqe_get(u);
	io_uring_prep_splice(sqe, in, -1, out, -1, op->len, fl);
	if (fix && !op->gate)
		sqe->flags |= IOSQE_FIXED_FILE;
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
	fixed_release(UE(e), fd);
	close(fd);
}

/* Accept completions: keep the accept armed, fall back from multishot once. */
static void accept_done(struct uring_engine *u, struct io_op *op, int res, int more)
{
	if (res == -EINVAL && u->multishot && op->res == 0) {
		u->multishot = 0;
		features_update(u);
		prep_accept(u, op);
		return;
	}
	if (res >= 0) {
		op->res = 1;
		fixed_forget(u, res);
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
	e->st.enters += (uint64_t)enter_needed(u, 1);
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
		else if (op->type == EOP_RECV || op->type == EOP_RECV_PICK)
			recv_done(u, op, res, more, cqe->flags);
		else
			engine_complete(e, op, res, more);
	}
	io_uring_cq_advance(&u->ring, seen);
	return 0;
}

static void u_destroy(struct engine *e)
{
	struct uring_engine *u = UE(e);
	io_uring_queue_exit(&u->ring); /* also drops the registered files and the buffer ring */
	free(u->fixed);
	if (u->br) {
		munmap(u->br, BR_COUNT * sizeof(struct io_uring_buf));
		munmap(u->bufs, u->br_bytes);
	}
	free(e);
}

static const struct engine_ops uring_ops = {
	.accept = u_accept,
	.recv = u_recv,
	.recv_pick = u_recv_pick,
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

struct ring_try {
	unsigned flags;
	const char *name;
};

/* The first setup in tries[] the kernel takes; -EINVAL (unknown flag) moves on. 0 or -errno. */
static int ring_init(struct uring_engine *u, unsigned entries, const struct ring_try *tries, size_t n,
		     size_t *used)
{
	int rc = -EINVAL;
	for (size_t i = 0; i < n; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		p.sq_thread_idle = 50; /* ms the SQ thread spins before it sleeps (SQPOLL only) */
		rc = io_uring_queue_init_params(entries, &u->ring, &p);
		*used = i;
		if (rc != -EINVAL)
			break;
	}
	return rc;
}

/* Registered files, one slot per possible fd: as many as RLIMIT_NOFILE allows, capped. */
static void fixed_init(struct uring_engine *u)
{
	struct rlimit rl;
	unsigned n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
		n = (unsigned)rl.rlim_cur;
	int rc = n ? io_uring_register_files_sparse(&u->ring, n) : -EINVAL;
	if (rc == 0 && !(u->fixed = calloc(n, 1))) {
		io_uring_unregister_files(&u->ring);
		rc = -ENOMEM;
	}
	if (rc) {
		log_warn("engine", "registered files refused, running without them", "slots=%u error=\"%s\"", n,
			 strerror(-rc));
		return;
	}
	u->nfixed = n;
}

/* The provided buffer ring of recv_pick (Linux 5.19+): BR_COUNT buffers of BR_SIZE. */
static void bufring_init(struct uring_engine *u)
{
	size_t rbytes = BR_COUNT * sizeof(struct io_uring_buf);
	u->br_bytes = (size_t)BR_COUNT * BR_SIZE;
	void *r = mmap(NULL, rbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *b = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int rc = -ENOMEM;
	if (r != MAP_FAILED && b != MAP_FAILED) {
		struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)r, .ring_entries = BR_COUNT, .bgid = BR_GROUP };
		rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
	}
	if (rc) {
		if (r != MAP_FAILED)
			munmap(r, rbytes);
		if (b != MAP_FAILED)
			munmap(b, u->br_bytes);
		log_warn("engine", "buffer ring refused, running without it", "error=\"%s\"", strerror(-rc));
		return;
	}
	u->br = r;
	u->bufs = b;
	io_uring_buf_ring_init(u->br);
	for (unsigned i = 0; i < BR_COUNT; i++)
		io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BR_SIZE, BR_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(BR_COUNT), (int)i);
	io_uring_buf_ring_advance(u->br, (int)BR_COUNT);
	u->base.can_pick = 1;
}

int engine_uring_create(unsigned entries, unsigned flags, struct engine **out, char *why, size_t whylen)
{
	/* SQPOLL takes neither DEFER_TASKRUN nor COOP_TASKRUN (the kernel says EINVAL) */
	static const struct ring_try sqpoll[] = {
		{ IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER, "sqpoll,single-issuer" },
		{ IORING_SETUP_SQPOLL, "sqpoll" },
	};
	static const struct ring_try tries[] = {
		{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single-issuer,defer-taskrun" },
		{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, "single-issuer,coop-taskrun" },
		{ IORING_SETUP_COOP_TASKRUN, "coop-taskrun" },
		{ 0, "" },
	};
	struct uring_engine *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	int rc = -EINVAL;
	size_t i = 0;
	if (flags & ENGINE_SQPOLL) {
		rc = ring_init(u, entries, sqpoll, sizeof(sqpoll) / sizeof(sqpoll[0]), &i);
		if (rc == 0) {
			u->sqpoll = 1;
			u->setup = sqpoll[i].name;
		} else {
			/* EPERM: unprivileged before 5.11 */
			log_warn("engine", "SQPOLL refused, running without it", "error=\"%s\"", strerror(-rc));
		}
	}
	if (!u->sqpoll) {
		rc = ring_init(u, entries, tries, sizeof(tries) / sizeof(tries[0]), &i);
		u->setup = tries[i].name;
		/* deferred task work: a socket recv copies its data only in io_uring_enter */
		u->base.bufs_quiet = !!(tries[i].flags & IORING_SETUP_DEFER_TASKRUN);
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
	if (flags & ENGINE_FIXED_FILES)
		fixed_init(u);
	if (flags & ENGINE_BUF_RING)
		bufring_init(u);
	u->poll_first = !!(flags & ENGINE_POLL_FIRST);
	u->multishot = 1;
	u->base.ops = &uring_ops;
	u->base.name = "uring";
	features_update(u);
	*out = &u->base;
	return 0;
}
