// SPDX-License-Identifier: MIT
// Private to sidecar/: process-wide state, workers, connections and their
// per-worker counters. Workers share nothing on the hot path but the
// connection limit counter.
#ifndef KS_SIDECAR_H
#define KS_SIDECAR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "bufpool.h"
#include "engine.h"

struct hs_ctx;
struct conn;
struct admin_conn;
struct admin_ops;

#define CACHELINE 64
#define KS_MAX_BACKENDS 8 /* addresses of a --backend host name, tried in turn */

struct backend_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};
#define HS_HIST_BUCKETS 12 /* = ADMIN_HIST_BUCKETS */

/* Why a connection ended; one counter each. Keep close_reason_names in sync. */
enum close_reason {
	CR_EOF,              /* both sides finished normally */
	CR_CLIENT_RESET,
	CR_BACKEND_RESET,
	CR_HANDSHAKE_TIMEOUT,
	CR_HANDSHAKE_FAILED,
	CR_PROTOCOL,         /* malformed or refused startup traffic */
	CR_PLAINTEXT_REFUSED,
	CR_BACKEND_CONNECT,
	CR_IDLE_TIMEOUT,
	CR_CANCEL,           /* CancelRequest forwarded */
	CR_SHUTDOWN,
	CR_KEYUPDATE,        /* client rekeyed; this kernel cannot follow in kTLS RX */
	CR_INTERNAL,
	CR_DRAIN_IDLE,       /* --drain-close-idle: draining, and between transactions */
	CR_IDLE_TX_TIMEOUT,  /* --idle-in-transaction-timeout */
	CR_USER_MISMATCH,    /* --client-user-match: the startup user is not the certificate's */
	CR__COUNT
};
extern const char *const close_reason_names[CR__COUNT];

/* Where a connection's way into kTLS stopped (it stays in userspace TLS; KS_PIPES:
 * kTLS kept, the copy relay instead of splice); one counter each. Keep
 * ktls_step_names in sync. */
enum ktls_step { KS_BUFFERED, KS_SUITE, KS_EXPORT, KS_ULP, KS_TX, KS_RX, KS_PIPES, KS_NSTEPS };
extern const char *const ktls_step_names[KS_NSTEPS];

/* Written only by the owning worker (relaxed); read by the admin thread. */
struct worker_stats {
	_Atomic uint64_t accepted, refused_max, active, handshakes_ok, handshakes_failed, cancels;
	_Atomic uint64_t backend_connect_failed, bytes_c2b, bytes_b2c, plaintext;
	_Atomic uint64_t tls12, tls13, ktls_tx, ktls_rx, user_tls;
	_Atomic uint64_t active_ktls_tx, active_ktls_rx, active_user_tls;
	_Atomic uint64_t rekey_rx, rekey_tx;
	_Atomic uint64_t closed[CR__COUNT];
	_Atomic uint64_t ktls_fallback[KS_NSTEPS];
	_Atomic uint64_t hs_hist[HS_HIST_BUCKETS], hs_sum_us;
} __attribute__((aligned(CACHELINE)));

#define STAT_ADD(w, field, n) \
	atomic_store_explicit(&(w)->stats.field, \
			      atomic_load_explicit(&(w)->stats.field, memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define STAT_INC(w, field) STAT_ADD(w, field, 1)
#define STAT_GET(w, field) atomic_load_explicit(&(w)->stats.field, memory_order_relaxed)

struct sidecar;

struct worker {
	struct worker_stats stats;
	struct sidecar *sc;
	int id;
	int cpu;                   /* --pin-cpus: the CPU it runs on and takes connections from; -1 */
	pthread_t thread;
	struct engine *eng;
	int listen_fd;
	struct io_op accept_op;
	uint64_t accept_resume_ms; /* re-arm accept at this time; 0 = armed */
	unsigned accept_failing;   /* consecutive failed accepts (EMFILE...) */
	struct conn *conns;      /* doubly linked, owned by this worker */
	struct bufpool bufs;     /* the relay buffers of its connections */
	pthread_mutex_t conns_lock; /* taken to link/unlink and to publish strings; never per I/O */
	uint64_t now_ms;
	uint64_t next_scan_ms;
	uint64_t next_trim_ms;     /* next bufpool_trim() */
	int exited;
} __attribute__((aligned(CACHELINE)));

struct sidecar {
	struct config *cfg;                /* as read at startup: what the process runs with */
	int argc;                          /* the flags, for a reload to read the config again */
	char **argv;
	pthread_mutex_t reload_lock;       /* one reload at a time; guards tls_cfg */
	struct config *tls_cfg;            /* the TLS settings in service: cfg, or a reload's */
	_Atomic int watch_dirty;           /* a reload was tried: watch the files again */
	struct hs_ctx *hs;                 /* current TLS context, swapped under hs_lock */
	pthread_mutex_t hs_lock;
	char reload_at[32], reload_result[768];
	uint64_t reloads_ok, reloads_failed; /* under hs_lock */
	uint64_t reloads_partial;          /* certificates reloaded, configuration not re-read */
	struct backend_addr backends[KS_MAX_BACKENDS]; /* --backend, resolved at start */
	int nbackends;
	_Atomic int backend_pref;          /* the address tried first: the last that took a connection */
	int ready_probe, ready_tried;      /* the address /readyz is probing, how many it tried (admin thread) */
	_Atomic int crl_stale_warned;      /* stale client CRLs last warned about; 0 after a reload */
	_Atomic int users_bound;           /* sc->hs binds users to certificates (--client-user-match); kept
	                                      beside it so that a startup packet asks without hs_lock */
	char backend_desc[160];
	struct sockaddr_storage listen;
	socklen_t listen_len;
	enum engine_kind engine_kind;
	char engine_why[160];              /* why epoll was chosen, if it was */
	int ktls;                          /* kTLS usable and wanted */
	char ktls_why[160];                /* why not, if not */
	struct worker *workers;
	int nworkers;
	_Atomic int nconns;
	_Atomic uint64_t refused_unlogged;  /* refused over max-conns since the last warning */
	_Atomic uint64_t refuse_logged_ms;  /* when that warning was given (monotonic ms) */
	_Atomic uint64_t next_conn_id;
	_Atomic int stopping;
	_Atomic int draining;              /* stop accepting; close idle... then exit */
	_Atomic uint64_t drain_deadline_ms;
	uint64_t started_ms;
};

enum op_kind { K_ACCEPT = 1, K_CLI_RD, K_CLI_WR, K_BE_RD, K_BE_WR };

/* conn.c */
/* Take ownership of an accepted fd. */
void conn_accept(struct worker *w, int fd);
/* Dispatch one completion that belongs to a connection. */
void conn_complete(struct worker *w, struct io_op *op, int res);
/* Enforce deadlines; called every few hundred ms. */
void conn_scan(struct worker *w);
/* Close every connection (shutdown), with a close_notify where TLS is up. */
void conn_close_all(struct worker *w);
/* Copy the open connections of w into out (at most cap). Returns the count. */
size_t conn_snapshot(struct worker *w, struct admin_conn *out, size_t cap);

/* worker.c */
int worker_start_all(struct sidecar *sc);
void worker_join_all(struct sidecar *sc);
uint64_t now_monotonic_ms(void);

/* control.c: what the admin socket and signals may ask of the daemon */
extern const struct admin_ops control_ops;
/* Build a TLS context from the configuration. 0 or -errno with err. */
/* The TLS context for configuration c; keep_map: share its user map rather than read
 * the file again (NULL: read it). */
int control_load_tls(struct sidecar *sc, const struct config *c, const struct hs_ctx *keep_map, struct hs_ctx **out,
		     char *err, size_t errlen);
/* Warn (as WHO) when a client CA of hs has no CRL in --client-crl. */
void control_warn_crls(const struct hs_ctx *hs, const char *who);
/* Warn when a client CRL in service has gone past its nextUpdate (main thread, each
 * second): once each time more of them are. */
void control_check_crls(struct sidecar *sc);
/* Read the configuration file again and swap in freshly loaded certificates and TLS
 * settings; a broken configuration or an unusable or expired certificate is refused
 * and the old ones stay. 0 or -errno. */
int control_reload(struct sidecar *sc, char *msg, size_t msglen);
/* Stop accepting; close what is still open after timeout_ms (a sooner deadline set
 * before stands). The milliseconds left until the deadline in force. */
int control_drain(struct sidecar *sc, int timeout_ms);

/* cpus.c */
/* The CPU limit of the cgroup named in proc_cgroup (/proc/self/cgroup), with the
 * hierarchy mounted at root (/sys/fs/cgroup): cgroup v2's cpu.max or v1's CFS quota,
 * rounded up. 0 when there is none or it cannot be read. */
int cpus_cgroup_limit(const char *proc_cgroup, const char *root);
/* Workers for --workers 0: the CPUs in this process's affinity mask, capped by the
 * cgroup limit; at least 1. */
int cpus_default_workers(void);

/* net.c */
/* Resolve "host:port" or "unix:/path". 0 or -errno with err. */
int net_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen);
int net_resolve_all(const char *spec, struct backend_addr *out, int max, char *err, size_t errlen);
/* Bound, listening SO_REUSEPORT socket. fd or -errno. */
int net_listen(const struct sockaddr_storage *ss, socklen_t len);
/* TCP keepalive on fd (a listener: its accepted sockets inherit it); idle_s 0 = off. */
int net_keepalive(int fd, int idle_s, int intvl_s, int cnt);
/* Would a connection to backend reach the listener at listen? Same port, and the same
 * address, or listen on a wildcard and backend on a loopback or wildcard address. */
int net_same_endpoint(const struct sockaddr_storage *listen, const struct sockaddr_storage *backend);
/* The port of an IPv4 or IPv6 address, in host order. */
unsigned net_port(const struct sockaddr_storage *ss);
/* 0 if nothing listens on the address: a bind without SO_REUSEPORT succeeds. Else -errno
 * (EADDRINUSE): SO_REUSEPORT alone would quietly share the port with another process. */
int net_port_free(const struct sockaddr_storage *ss, socklen_t len);
/* "ip:port" of an address. */
void net_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
