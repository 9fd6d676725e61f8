// SPDX-License-Identifier: MIT
// The admin unix socket: a line protocol (PgBouncer SHOW / HAProxy stats
// socket style) answered with aligned text tables or JSON. The daemon supplies
// numbers through a snapshot callback; nothing here touches worker state.
#ifndef KS_ADMIN_H
#define KS_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct admin;

#define ADMIN_MAX_REASONS 16
#define ADMIN_LINE_MAX 1024            /* longest command line, without its '\n' */

/* Counters of one worker, read with relaxed loads by the snapshot callback. */
struct admin_counters {
	uint64_t accepted, refused_max, active, handshakes_ok, handshakes_failed, cancels;
	uint64_t backend_connect_failed, bytes_c2b, bytes_b2c, plaintext;
	uint64_t tls12, tls13, ktls_tx, ktls_rx, user_tls;
	uint64_t closed[ADMIN_MAX_REASONS];
};

struct admin_worker {
	int id;
	const char *engine;            /* "uring" or "epoll" */
	uint64_t loops, enters, completions;
	struct admin_counters c;
};

struct admin_snapshot {
	const char *version, *kernel, *openssl, *cert;
	const char *io, *io_why;       /* engine in use and why (empty when uring) */
	const char *ktls, *ktls_why;   /* "available"/"unavailable"/"off" and why */
	const char *listen, *backend;
	long pid;
	double uptime_s;
	int nworkers;
	struct admin_worker *workers;  /* nworkers entries, owned by the caller */
	const char *const *reason_names;
	int nreasons;
};

/* Fill out (workers array allocated by the callee, freed by admin via free()). 0 or -errno. */
typedef int (*admin_snapshot_fn)(void *ctx, struct admin_snapshot *out);

enum admin_cmd_kind { ADM_HELP, ADM_SHOW_INFO, ADM_SHOW_STATS, ADM_SHOW_WORKERS };
struct admin_cmd {
	enum admin_cmd_kind kind;
	int json;
};

/* Parse one command line ("show stats json"). 0 or -EINVAL. Pure. */
int admin_parse(const char *line, struct admin_cmd *out);
/* Render the answer to cmd from snap into f. 0 or -errno. */
int admin_render(const struct admin_cmd *cmd, const struct admin_snapshot *snap, FILE *f);

/* Create the socket at path (mode 0600, parent made 0750 if missing) and serve it on a
 * thread of its own. 0 or -errno; the error is logged. */
int admin_start(const char *path, admin_snapshot_fn fn, void *ctx, struct admin **out);
/* Stop the thread, unlink the socket. */
void admin_stop(struct admin *a);
/* Client side (ktls-sidecar ctl): send cmd, copy the answer to out. 0, or -errno. */
int admin_ctl(const char *path, const char *cmd, FILE *out);

#endif
