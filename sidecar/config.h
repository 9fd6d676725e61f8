// SPDX-License-Identifier: MIT
// Daemon configuration: one option table drives the config file, environment
// variables (KTLS_SIDECAR_*), command-line flags and --help. The parser does no
// I/O in config_line/config_finish, so it can be unit-tested and fuzzed.
#ifndef KS_CONFIG_H
#define KS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum io_mode { IO_AUTO, IO_URING, IO_EPOLL };
enum verify_mode { VERIFY_NONE, VERIFY_OPTIONAL, VERIFY_REQUIRE };
enum ktls_mode { KTLS_AUTO, KTLS_ON, KTLS_OFF };
enum relay_mode { RELAY_AUTO, RELAY_SPLICE, RELAY_COPY };
enum user_match { USER_MATCH_NONE, USER_MATCH_CN, USER_MATCH_MAP };

struct strlist {
	char **v;
	size_t n;
	int level; /* precedence level that filled it: a higher level replaces it */
};

struct config {
	char *listen;
	char *backend;
	char *cert;
	char *key;
	char *client_ca;
	char *client_crl;
	int verify;               /* enum verify_mode */
	struct strlist allow_cn;
	struct strlist allow_dns;
	struct strlist allow_uri;
	int client_user_match;    /* enum user_match */
	char *client_user_map;    /* USER_MATCH_MAP: the map file */
	char *min_tls;            /* "1.2" or "1.3" */
	char *ciphers;            /* TLS 1.2 cipher list */
	char *ciphersuites;       /* TLS 1.3 suites */
	int workers;              /* 0 = number of CPUs */
	int pin_cpus;
	int handshake_timeout_ms;
	int connect_timeout_ms;
	int idle_timeout_ms;      /* 0 = none */
	int idle_tx_timeout_ms;   /* idle inside a transaction; 0 = none */
	int max_conns;
	int tcp_keepalive_ms;     /* client sockets: idle time before probes; 0 = off */
	int tcp_keepalive_intvl_ms;
	int tcp_keepalive_cnt;
	int io;                   /* enum io_mode */
	int ktls;                 /* enum ktls_mode */
	int relay;                /* enum relay_mode */
	int uring_sqpoll;         /* io_uring: SQ polling thread per ring */
	int uring_fixed_files;    /* io_uring: registered files */
	int uring_buf_ring;       /* recv_pick through a provided buffer ring */
	int poll_first;           /* a recv after one that emptied the socket waits for readiness */
	int allow_plaintext;
	int plain_cancel;
	char *admin_socket;       /* "" disables */
	char *metrics_listen;     /* "" disables */
	char *admin_group;        /* "" = owner (and root) only */
	int drain_timeout_ms;
	int drain_close_idle;     /* draining: close a session once it waits between transactions */
	int watch_certs;
	char *user;               /* drop to this user after binding; "" = stay */
	char *log_level;
	char *log_format;         /* "logfmt" or "json" */
	char *config_file;
	int level;                /* precedence level of the current source */
};

#define CONFIG_ERR_LEN 256

/* Fill defaults. */
void config_init(struct config *c);
/* Release everything config_init/config_set allocated. */
void config_free(struct config *c);
/* Set option key (long name, e.g. "max-conns") to val. 0 or -EINVAL/-ENOENT with err filled. */
int config_set(struct config *c, const char *key, const char *val, char *err, size_t errlen);
/* Parse one config-file line ("key = value", '#' comments, blank lines). 0 or -errno with err. */
int config_line(struct config *c, const char *line, char *err, size_t errlen);
/* Cross-option validation after all sources are applied. 0 or -EINVAL with err. */
int config_finish(struct config *c, char *err, size_t errlen);
/* Load a file line by line; errors name path:line. 0 or -errno with err. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);
/* Apply KTLS_SIDECAR_* variables from envp. 0 or -EINVAL with err naming the variable. */
int config_load_env(struct config *c, char **envp, char *err, size_t errlen);
/* Apply flags argv[0..argc); returns 0, or -EINVAL with err. "--help" returns -EAGAIN. */
int config_load_args(struct config *c, int argc, char **argv, char *err, size_t errlen);
/* Full precedence chain: file (from --config/env) < environment < flags. */
int config_load_all(struct config *c, int argc, char **argv, char **envp, char *err, size_t errlen);
/* Names of the options whose values differ between a and b, except those in the
 * NULL-terminated skip list, comma-separated into out. Returns how many differ. */
size_t config_diff(const struct config *a, const struct config *b, const char *const *skip, char *out,
		   size_t outlen);
/* Print the option reference for --help. */
void config_usage(FILE *f);
/* Parse "10", "10s", "1.5s", "500ms" into milliseconds. 0 or -EINVAL. */
int config_parse_duration(const char *s, int *ms);
/* Split "host:port", "[v6]:port" or ":port" into host (may be "") and port. 0 or -EINVAL. */
int config_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port);

#endif
