// SPDX-License-Identifier: MIT
// The admin unix socket: a line protocol (PgBouncer SHOW / HAProxy stats
// socket style) answered with aligned text tables or JSON. The daemon supplies
// numbers through a snapshot callback; nothing here touches worker state.
#ifndef KS_ADMIN_H
#define KS_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct admin;

#define ADMIN_MAX_REASONS 20
#define ADMIN_MAX_STEPS 8              /* kTLS fallback steps */
#define ADMIN_LINE_MAX 1024            /* longest command line, without its '\n' */

/* Handshake latency histogram: bucket i counts handshakes <= admin_hist_bounds_ms[i];
 * the last bucket is +Inf. Bounds are shared by the daemon and the renderers. */
#define ADMIN_HIST_BUCKETS 12
extern const double admin_hist_bounds_ms[ADMIN_HIST_BUCKETS - 1];

/* Counters of one worker, read with relaxed loads by the snapshot callback. */
struct admin_counters {
	uint64_t accepted, refused_max, active, handshakes_ok, handshakes_failed, cancels;
	uint64_t backend_connect_failed, bytes_c2b, bytes_b2c, plaintext;
	uint64_t tls12, tls13, ktls_tx, ktls_rx, user_tls;   /* per handshake, cumulative */
	uint64_t active_ktls_tx, active_ktls_rx, active_user_tls; /* gauges: open connections */
	uint64_t rekey_rx, rekey_tx;                          /* TLS 1.3 KeyUpdates followed in kTLS */
	uint64_t closed[ADMIN_MAX_REASONS];
	uint64_t ktls_fallback[ADMIN_MAX_STEPS];              /* connections kept out of kTLS, by step */
	uint64_t hs_hist[ADMIN_HIST_BUCKETS];                /* not cumulative: one bucket each */
	uint64_t hs_sum_us;                                  /* sum of handshake durations */
};

struct admin_worker {
	int id;
	int cpu;                       /* --pin-cpus: its CPU; -1 when not pinned */
	const char *engine;            /* "uring" or "epoll" */
	uint64_t loops, enters, completions;
	struct admin_counters c;
};

struct admin_snapshot {
	const char *version, *kernel, *openssl;
	const char *cert;              /* subject of the loaded certificate */
	const char *cert_sans;         /* "DNS:a, IP:b" */
	const char *cert_serial;       /* hex, as openssl x509 -serial prints it */
	const char *cert_not_after;    /* ISO 8601 UTC */
	long long cert_not_after_unix; /* the same as Unix time; 0 if unknown */
	int client_crls;               /* client CRLs loaded (--client-crl) */
	int client_crls_stale;         /* of them, past their nextUpdate: their CAs' clients are refused */
	const char *client_crl_next_update; /* ISO 8601 UTC, the earliest of them; "" if none */
	long long client_crl_next_update_unix;
	const char *client_user_match; /* "none", "cn" or "map": which users a client certificate gives */
	int client_user_map_rules;     /* "map": the rules of the map in service */
	const char *reload_at;         /* "" if never reloaded, else UTC time */
	const char *reload_result;     /* "ok" or the error */
	uint64_t reloads_ok, reloads_failed;
	uint64_t reloads_partial;      /* certificates reloaded, the configuration not re-read */
	int draining;
	double drain_left_s;           /* while draining: seconds to the drain deadline */
	const char *io, *io_why;       /* engine in use and why (empty when uring) */
	const char *io_features;       /* of worker 0's engine, e.g. "sqpoll,multishot-accept" */
	const char *ktls, *ktls_why;   /* "available"/"unavailable"/"off" and why */
	const char *listen, *backend;
	long pid;
	double uptime_s;
	int nworkers;
	struct admin_worker *workers;  /* nworkers entries, owned by the caller */
	const char *const *reason_names;
	int nreasons;
	const char *const *ktls_step_names; /* nsteps names for ktls_fallback[] */
	int nsteps;
};

/* One open client connection, as the daemon sees it (plus the kernel's view, filled by
 * admin_diag_fill from sock_diag). */
struct admin_conn {
	uint64_t id;
	int worker;
	char client[64];               /* "ip:port" of the client */
	char local[64];                /* "ip:port" the client connected to */
	unsigned backend_port;         /* local port of our socket to the pooler; 0 for unix/none */
	char state[16];                /* negotiate|handshake|startup|connect|relay|closing... */
	char txn[20];                  /* relay, where the relay sees the plaintext: login|idle|active|
					* in_transaction|failed_transaction (the pooler's last ReadyForQuery
					* and what was sent since); "" otherwise */
	char tls[12], cipher[48], sni[128], peer[128], user[64], database[64];
	char ktls[8];                  /* "tx+rx", "tx", "rx" or "off" */
	double age_s;
	uint64_t bytes_in, bytes_out;  /* plaintext to / from the pooler */
	/* kernel view (sock_diag INET_DIAG_ULP_INFO / tcp_info) */
	char k_ulp[8];                 /* "tls" or "" */
	char k_version[8], k_cipher[24];
	char k_txconf[40], k_rxconf[40]; /* BASE, SW, HW, HW_RECORD, or "unknown (needs CAP_NET_ADMIN)" */
	uint32_t k_rtt_us, k_retrans;
};

/* What the admin thread may ask of the daemon. Every callback runs on the admin thread. */
struct admin_ops {
	/* Counters and facts; workers array allocated by the callee, freed with free(). 0 or -errno. */
	int (*snapshot)(void *ctx, struct admin_snapshot *out);
	/* Open connections; *out allocated by the callee, freed with free(). 0 or -errno. */
	int (*conns)(void *ctx, struct admin_conn **out, size_t *n);
	/* Reload certificates; msg says what happened. 0 or -errno (old certificate stays). */
	int (*reload)(void *ctx, char *msg, size_t msglen);
	/* Stop accepting; close each connection when it finishes, the rest after timeout_ms
	 * (-1: the configured default; an earlier, sooner deadline stands); the process then
	 * exits 0. The milliseconds left until the deadline in force, or -errno. */
	int (*drain)(void *ctx, int timeout_ms);
	/* /readyz: 0 ready; -EINPROGRESS with *probe set to a non-blocking connect to the
	 * pooler, whose outcome goes to ready_done once the socket is writable (or
	 * -ETIMEDOUT); else -errno with why (draining, backend down). */
	int (*ready)(void *ctx, int *probe, char *why, size_t whylen);
	/* The answer for a probe's outcome rc (0 or -errno): 0, else -errno with why; or
	 * -EINPROGRESS with *probe set to the next probe (another address of the pooler),
	 * whose outcome comes here in turn. */
	int (*ready_done)(void *ctx, int rc, int *probe, char *why, size_t whylen);
};

enum admin_cmd_kind { ADM_HELP, ADM_SHOW_INFO, ADM_SHOW_STATS, ADM_SHOW_WORKERS, ADM_SHOW_CONNS,
		      ADM_RELOAD, ADM_DRAIN };
struct admin_cmd {
	enum admin_cmd_kind kind;
	int json;
	int timeout_ms;                /* drain [TIMEOUT]: -1 = the daemon's default */
};

#define ADMIN_DRAIN_MAX_S 86400        /* drain SECONDS: 0..ADMIN_DRAIN_MAX_S */

/* Parse one command line ("show stats json", "drain 30"). 0 or -EINVAL. Pure. */
int admin_parse(const char *line, struct admin_cmd *out);
/* Whether a line (parsed or not) asks for a JSON answer: its last word is "json". */
int admin_wants_json(const char *line);
/* Render the answer to cmd from snap into f (not ADM_SHOW_CONNS, ADM_RELOAD, ADM_DRAIN:
 * -EINVAL). 0 or -errno. Pure. */
int admin_render(const struct admin_cmd *cmd, const struct admin_snapshot *snap, FILE *f);
/* Render n connections as a table or {"conns":[...]}. 0 or -errno. Pure. */
int admin_render_conns(const struct admin_conn *c, size_t n, int json, FILE *f);
/* Render snap in the Prometheus text exposition format 0.0.4. 0 or -errno. Pure. */
int admin_metrics_render(const struct admin_snapshot *snap, FILE *f);
/* The q-quantile (0 < q <= 1) of a handshake histogram in ms, interpolated linearly
 * within its bucket (the +Inf bucket answers its lower bound); NAN if empty. Pure. */
double admin_hist_quantile(const uint64_t hist[ADMIN_HIST_BUCKETS], double q);

/* Fill the kernel view (k_*) of each connection from one sock_diag dump, matching
 * (local, client). Unmatched ones keep k_* empty; no ULP gives k_txconf "none"; ULP info
 * hidden for lack of CAP_NET_ADMIN gives "unknown (needs CAP_NET_ADMIN)". 0 or -errno. */
int admin_diag_fill(struct admin_conn *c, size_t n);

#define ADMIN_HTTP_HEAD_MAX 4096       /* request line and headers, with the empty line */
/* Parse an HTTP/1.x request head in buf: 0 with the path (query removed) in path for a
 * complete GET head; -EAGAIN if more bytes are needed; -EOPNOTSUPP for another method;
 * -E2BIG if the head or the path does not fit; -EINVAL if malformed. Pure. */
int admin_http_parse(const char *buf, size_t len, char *path, size_t pathlen);

/* Create the socket at path (mode 0600, parent made 0750 if missing; NULL or "" = none) and,
 * if metrics_listen is set ("ADDR:PORT", "[v6]:PORT", ":PORT"; numeric, port 0 = any), the
 * HTTP listener for /metrics, /healthz and /readyz; serve both on a thread of its own.
 * Neither set: 0 and *out = NULL. 0 or -errno; the error is logged. */
int admin_start(const char *path, const char *metrics_listen, const struct admin_ops *ops, void *ctx,
		struct admin **out);
/* The TCP port the metrics listener is bound to (useful with port 0); 0 if none. */
unsigned admin_metrics_port(const struct admin *a);
/* Let members of gid in as well: the socket becomes group gid, mode 0660 (and so does
 * the directory if admin_start created it), and a peer with gid as its primary or a
 * supplementary group (SO_PEERCRED, SO_PEERGROUPS) passes the check. 0 or -errno. */
int admin_set_group(struct admin *a, gid_t gid);
/* Hand the socket (and the directory admin_start created) to uid, before dropping
 * root to it: it may then use ctl and remove the socket when it stops. 0 or -errno. */
int admin_set_owner(struct admin *a, uid_t uid);
/* Stop the thread, unlink the socket. */
void admin_stop(struct admin *a);
/* Client side (ktls-sidecar ctl): send cmd, copy the answer to out. 0, or -errno. */
int admin_ctl(const char *path, const char *cmd, FILE *out);

#endif
