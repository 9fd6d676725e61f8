// SPDX-License-Identifier: MIT
// Worker threads: each owns an engine (its own io_uring ring, or epoll set)
// and its own SO_REUSEPORT listener, and runs the connections it accepted.
// The only cross-thread traffic is the stop flag and the connection count.
#include "sidecar.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define TICK_MS 100
#define ACCEPT_BACKOFF_MS 100

uint64_t now_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_accept(struct worker *w, int res, int more)
{
	if (res >= 0) {
		w->accept_failing = 0;
		conn_accept(w, res);
		return;
	}
	if (more || atomic_load(&w->sc->stopping))
		return;
	/* the accept ended (EMFILE, ENFILE, ENOMEM...): back off instead of spinning,
	 * and say so once per episode rather than every retry */
	if (res != -ECANCELED && !w->accept_failing++)
		log_warn("worker", "accept failed, pausing", "worker=%d error=\"%s\" pause_ms=%d", w->id,
			 strerror(-res), ACCEPT_BACKOFF_MS);
	w->accept_resume_ms = w->now_ms + ACCEPT_BACKOFF_MS;
}

static void on_completion(void *ctx, struct io_op *op, int res, int more)
{
	struct worker *w = ctx;
	if (op->kind == K_ACCEPT)
		on_accept(w, res, more);
	else
		conn_complete(w, op, res);
}

static void pin(struct worker *w)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc)
		log_warn("worker", "cannot pin to CPU", "worker=%d cpu=%d error=\"%s\"", w->id, w->cpu, strerror(rc));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sidecar *sc = w->sc;
	char why[160] = "";
	if (w->cpu >= 0)
		pin(w);
	unsigned eflags = (sc->cfg->uring_sqpoll ? ENGINE_SQPOLL : 0) |
			  (sc->cfg->uring_fixed_files ? ENGINE_FIXED_FILES : 0) |
			  (sc->cfg->poll_first ? ENGINE_POLL_FIRST : 0) |
			  (sc->cfg->uring_buf_ring ? ENGINE_BUF_RING : 0);
	int rc = engine_create(sc->engine_kind, 4096, eflags, on_completion, w, &w->eng, why, sizeof(why));
	if (rc) {
		log_error("worker", "cannot create engine", "worker=%d reason=\"%s\"", w->id, why);
		atomic_store(&sc->stopping, 1);
		__atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
		return NULL;
	}
	w->accept_op.kind = K_ACCEPT;
	w->now_ms = now_monotonic_ms();
	engine_accept(w->eng, &w->accept_op, w->listen_fd);
	int draining = 0, closed_all = 0;
	for (;;) {
		if ((rc = engine_run(w->eng, TICK_MS)) < 0) {
			log_error("worker", "engine failed", "worker=%d error=\"%s\"", w->id, strerror(-rc));
			atomic_store(&sc->stopping, 1);
			break;
		}
		w->now_ms = now_monotonic_ms();
		if (w->accept_resume_ms && w->now_ms >= w->accept_resume_ms && !draining) {
			w->accept_resume_ms = 0;
			engine_accept(w->eng, &w->accept_op, w->listen_fd);
		}
		if (w->now_ms >= w->next_scan_ms) {
			w->next_scan_ms = w->now_ms + TICK_MS;
			conn_scan(w);
		}
		if (!draining && (atomic_load_explicit(&sc->draining, memory_order_relaxed) ||
				  atomic_load_explicit(&sc->stopping, memory_order_relaxed))) {
			draining = 1; /* stop accepting; the listener closes once its accept is back */
			w->accept_resume_ms = 0;
			engine_cancel(w->eng, &w->accept_op);
		}
		if (draining && w->listen_fd >= 0 && !w->accept_op.pending) {
			engine_close(w->eng, w->listen_fd); /* new connections are now refused */
			w->listen_fd = -1;
		}
		if (draining && !closed_all && (atomic_load(&sc->stopping) || w->now_ms >= atomic_load(&sc->drain_deadline_ms))) {
			closed_all = 1;
			conn_close_all(w);
		}
		if (draining && !w->conns && w->listen_fd < 0)
			break;
	}
	engine_close(w->eng, w->listen_fd);
	w->listen_fd = -1;
	struct engine *e = w->eng;
	__atomic_store_n(&w->eng, NULL, __ATOMIC_RELEASE); /* the admin thread reads it */
	engine_destroy(e);
	if (!w->conns)
		bufpool_destroy(&w->bufs);
	__atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
	return NULL;
}

int worker_start_all(struct sidecar *sc)
{
	for (int i = 0; i < sc->nworkers; i++) {
		struct worker *w = &sc->workers[i];
		int rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			log_error("worker", "pthread_create failed", "error=\"%s\"", strerror(rc));
			atomic_store(&sc->stopping, 1);
			sc->nworkers = i;
			return -rc;
		}
		char name[16];
		snprintf(name, sizeof(name), "ktls-w%u", (unsigned)i & 0xffffu);
		pthread_setname_np(w->thread, name);
	}
	return 0;
}

void worker_join_all(struct sidecar *sc)
{
	for (int i = 0; i < sc->nworkers; i++)
		pthread_join(sc->workers[i].thread, NULL);
}
