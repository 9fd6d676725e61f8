// SPDX-License-Identifier: MIT
// Private to admin/: the metrics HTTP listener that the admin thread polls next
// to the unix socket, and small helpers the admin files share.
#ifndef KS_ADMIN_INT_H
#define KS_ADMIN_INT_H

#include "admin.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
/* A path escaped for a quoted log value; the buffer lives until the end of the block. */
#define ESC_PATH(p) log_esc((char[2 * SUN_PATH_MAX + 1]){ 0 }, 2 * SUN_PATH_MAX + 1, p)

#define ADMIN_HTTP_MAX_CLIENTS 16
#define ADMIN_HTTP_TIMEOUT_MS 5000     /* to receive the head, then again to send the answer */
#define ADMIN_HTTP_LINGER_MS 1000      /* reading what the peer still sends before closing */
#define ADMIN_HTTP_PROBE_MS 1000       /* /readyz: the pooler must accept a connection within it */
#define ADMIN_HTTP_NFDS (2 + ADMIN_HTTP_MAX_CLIENTS) /* pollfds: the listener, the clients, the probe */

/* HTTP_PROBE: a /readyz request waiting for the pooler probe, which it may share */
enum http_state { HTTP_FREE, HTTP_READ, HTTP_PROBE, HTTP_WRITE, HTTP_LINGER };

struct admin_http_client {
	int fd;
	enum http_state state;
	uint64_t since;                /* accepted at (ms): the oldest gives way when all are taken */
	uint64_t deadline;             /* the client is dropped when it passes */
	size_t len;
	char buf[ADMIN_HTTP_HEAD_MAX];
	char *out;                     /* the whole answer, sent from outoff on */
	size_t outlen, outoff;
};

struct admin_http {
	int lfd;                       /* -1: no listener */
	unsigned port;
	const struct admin_ops *ops;
	void *ctx;
	struct admin_http_client cl[ADMIN_HTTP_MAX_CLIENTS];
	int probe_fd;                  /* /readyz's connect to the pooler in flight, or -1 */
	uint64_t probe_deadline;
};

uint64_t admin_now_ms(void);
/* A unix address for path (shorter than SUN_PATH_MAX, checked by the caller). */
void admin_sun_fill(struct sockaddr_un *sun, const char *path);

/* Lower *timeout (ms, -1 = none) so poll wakes at deadline. */
static inline void admin_timeout_min(int *timeout, uint64_t deadline, uint64_t now)
{
	uint64_t d = deadline > now ? deadline - now : 0;
	if (d > 60000)
		d = 60000;
	if (*timeout < 0 || d < (uint64_t)*timeout)
		*timeout = (int)d;
}

/* "ADDR:PORT", "[v6]:PORT", ":PORT" or "*:PORT" (numeric only) into ss. 0 or -EINVAL. Pure. */
int admin_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* s as a JSON string: NULL is "", invalid UTF-8 becomes U+FFFD. */
void admin_json_str(FILE *f, const char *s);
/* The counters of all workers summed into t. */
void admin_counters_sum(const struct admin_snapshot *s, struct admin_counters *t);
/* names[i], or "<prefix>_<i>" (written into buf) where the daemon gave none: a close
 * reason or a kTLS fallback step. */
const char *admin_name(const char *const *names, int i, const char *prefix, char *buf, size_t len);
/* How many of a snapshot's names to show: n within [0, max]. */
static inline int admin_count(int n, int max) { return n < 0 ? 0 : n > max ? max : n; }

/* Bind and listen on addr (NULL or "" = no listener). 0 or -errno, logged. */
int admin_http_open(struct admin_http *h, const char *addr, const struct admin_ops *ops, void *ctx);
/* Fill ADMIN_HTTP_NFDS pollfds (fd -1 where unused), drop clients past their deadline. */
void admin_http_poll_setup(struct admin_http *h, struct pollfd *pfd, uint64_t now, int *timeout);
/* Serve what poll reported on the pollfds filled by admin_http_poll_setup. */
void admin_http_poll_done(struct admin_http *h, const struct pollfd *pfd);
/* Close the listener and every client. */
void admin_http_close(struct admin_http *h);

#endif
