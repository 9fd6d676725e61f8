// SPDX-License-Identifier: MIT
// Option table and parsers for the file, environment and flags. Precedence is
// file < environment < flags: each source raises c->level, and list options
// filled at a lower level are replaced rather than appended to.
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_CIPHERS                                                       \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"          \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"          \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

enum opt_type { T_STR, T_INT, T_BOOL, T_DUR, T_ENUM, T_LIST };

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;
	const char *const *choices; /* T_ENUM: index = stored value */
	int min, max;               /* T_INT / T_DUR (ms) bounds */
	const char *help;
};

static const char *const io_choices[] = { "auto", "uring", "epoll", NULL };
static const char *const verify_choices[] = { "none", "optional", "require", NULL };
static const char *const ktls_choices[] = { "auto", "on", "off", NULL };
static const char *const relay_choices[] = { "auto", "splice", "copy", NULL };
static const char *const user_match_choices[] = { "none", "cn", "map", NULL };

#define O(f) offsetof(struct config, f)
static const struct opt opts[] = {
	{ "listen", T_STR, O(listen), "0.0.0.0:5433", NULL, 0, 0,
	  "address:port to accept PostgreSQL clients on ([::]:5433 for IPv6)" },
	{ "backend", T_STR, O(backend), "127.0.0.1:6432", NULL, 0, 0,
	  "pooler address: host:port or unix:/path/.s.PGSQL.6432" },
	{ "cert", T_STR, O(cert), NULL, NULL, 0, 0, "server certificate chain (PEM, RSA or ECDSA)" },
	{ "key", T_STR, O(key), NULL, NULL, 0, 0, "server private key (PEM)" },
	{ "client-ca", T_STR, O(client_ca), NULL, NULL, 0, 0, "CA bundle for client certificates (mTLS)" },
	{ "client-crl", T_STR, O(client_crl), NULL, NULL, 0, 0,
	  "revocation lists (PEM) for client certificates, one for each CA of their chains, as PostgreSQL's ssl_crl_file" },
	{ "verify", T_ENUM, O(verify), "none", verify_choices, 0, 0,
	  "client certificate policy: none|optional|require" },
	{ "allow-cn", T_LIST, O(allow_cn), NULL, NULL, 0, 0, "allowed client subject CN (repeatable)" },
	{ "allow-dns", T_LIST, O(allow_dns), NULL, NULL, 0, 0,
	  "allowed client DNS SAN, '*.example.com' wildcards (repeatable)" },
	{ "allow-uri", T_LIST, O(allow_uri), NULL, NULL, 0, 0,
	  "allowed client URI SAN, e.g. spiffe://td/ns/app/* (repeatable)" },
	{ "client-user-match", T_ENUM, O(client_user_match), "none", user_match_choices, 0, 0,
	  "none | cn: the PostgreSQL user must be the client certificate's subject CN (PostgreSQL's "
	  "clientcert=verify-full, PgBouncer's auth_type=cert) | map: one of the users --client-user-map gives "
	  "the certificate; else FATAL 28000. Needs --verify require" },
	{ "client-user-map", T_STR, O(client_user_map), NULL, NULL, 0, 0,
	  "for --client-user-match map: lines of a certificate identity (CN=name, DN:subject, DNS:name, URI:pattern as "
	  "--allow-uri, or CN=/regex and the like) and the PostgreSQL users it may log in as (\\1: the regex's first "
	  "group), like pg_ident.conf" },
	{ "min-tls-version", T_STR, O(min_tls), "1.2", NULL, 0, 0, "minimum TLS version: 1.2 or 1.3" },
	{ "ciphers", T_STR, O(ciphers), DEFAULT_CIPHERS, NULL, 0, 0,
	  "TLS 1.2 cipher list (OpenSSL syntax); default: the kTLS-offloadable ECDHE AEADs" },
	{ "ciphersuites", T_STR, O(ciphersuites), DEFAULT_CIPHERSUITES, NULL, 0, 0, "TLS 1.3 cipher suites" },
	{ "workers", T_INT, O(workers), "0", NULL, 0, 1024, "worker threads (0 = the CPUs this process may use: its cpuset, capped by its cgroup CPU limit)" },
	{ "pin-cpus", T_BOOL, O(pin_cpus), "false", NULL, 0, 0,
	  "pin worker N to the Nth allowed CPU; its listener takes the connections processed on that CPU (SO_INCOMING_CPU)" },
	{ "handshake-timeout", T_DUR, O(handshake_timeout_ms), "10s", NULL, 1, 3600000,
	  "limit for startup negotiation + TLS handshake (e.g. 10s, 500ms)" },
	{ "connect-timeout", T_DUR, O(connect_timeout_ms), "5s", NULL, 1, 3600000, "backend connect limit" },
	{ "idle-timeout", T_DUR, O(idle_timeout_ms), "0", NULL, 0, INT_MAX,
	  "close sessions idle this long with no query running (0 = never)" },
	{ "idle-in-transaction-timeout", T_DUR, O(idle_tx_timeout_ms), "0", NULL, 0, INT_MAX,
	  "close sessions idle this long inside a transaction (FATAL 25P03; 0 = never)" },
	{ "max-conns", T_INT, O(max_conns), "10000", NULL, 1, 1000000,
	  "client connections per process; more are refused at once (FATAL 53300)" },
	{ "tcp-keepalive", T_DUR, O(tcp_keepalive_ms), "60s", NULL, 0, 32767000,
	  "client sockets: TCP keepalive probes after this much silence, so that a vanished client "
	  "frees its pooler session (0 = off; whole seconds)" },
	{ "tcp-keepalive-interval", T_DUR, O(tcp_keepalive_intvl_ms), "10s", NULL, 1000, 32767000,
	  "time between unanswered keepalive probes (whole seconds)" },
	{ "tcp-keepalive-count", T_INT, O(tcp_keepalive_cnt), "6", NULL, 1, 127,
	  "unanswered probes before the client is declared gone" },
	{ "io", T_ENUM, O(io), "auto", io_choices, 0, 0,
	  "event engine: auto (io_uring, else epoll) | uring | epoll" },
	{ "ktls", T_ENUM, O(ktls), "auto", ktls_choices, 0, 0,
	  "kernel TLS: auto (use when available) | on (required) | off" },
	{ "relay", T_ENUM, O(relay), "auto", relay_choices, 0, 0,
	  "kTLS relay: auto | splice (pipes, zero copy) | copy (recv/send)" },
	{ "uring-sqpoll", T_BOOL, O(uring_sqpoll), "false", NULL, 0, 0,
	  "io_uring: a kernel thread per worker polls for submissions (IORING_SETUP_SQPOLL, 50 ms idle)" },
	{ "uring-fixed-files", T_BOOL, O(uring_fixed_files), "false", NULL, 0, 0,
	  "io_uring: registered files (IOSQE_FIXED_FILE) for the sockets" },
	{ "uring-buf-ring", T_BOOL, O(uring_buf_ring), "false", NULL, 0, 0,
	  "io_uring: userspace TLS reads into a per-worker provided buffer ring (IOSQE_BUFFER_SELECT)" },
	{ "poll-first", T_BOOL, O(poll_first), "false", NULL, 0, 0,
	  "a recv after one that emptied the socket waits for data instead of trying first "
	  "(io_uring: IORING_RECVSEND_POLL_FIRST; epoll: no speculative recv)" },
	{ "allow-plaintext", T_BOOL, O(allow_plaintext), "false", NULL, 0, 0,
	  "relay clients that start without TLS (default: refuse with SQLSTATE 28000)" },
	{ "plain-cancel", T_BOOL, O(plain_cancel), "true", NULL, 0, 0,
	  "forward CancelRequests sent before TLS (legacy libpq PQcancel)" },
	{ "admin-socket", T_STR, O(admin_socket), "/run/ktls-sidecar/admin.sock", NULL, 0, 0,
	  "admin unix socket path (\"\" disables)" },
	{ "admin-group", T_STR, O(admin_group), "", NULL, 0, 0,
	  "also let this group use the admin socket (mode 0660)" },
	{ "metrics-listen", T_STR, O(metrics_listen), "", NULL, 0, 0,
	  "HTTP listener for /metrics, /healthz, /readyz, e.g. 0.0.0.0:9187 (\"\" = off)" },
	{ "drain-timeout", T_DUR, O(drain_timeout_ms), "30s", NULL, 0, 86400000,
	  "on SIGTERM or 'drain': how long open sessions may finish before they are closed" },
	{ "drain-close-idle", T_BOOL, O(drain_close_idle), "false", NULL, 0, 0,
	  "while draining, close each session as soon as it waits between transactions (FATAL 57P01), "
	  "not at the drain timeout" },
	{ "watch-certs", T_BOOL, O(watch_certs), "true", NULL, 0, 0,
	  "reload when the certificate, key, client CA, client CRL or config file changes (Kubernetes Secret and "
	  "ConfigMap updates)" },
	{ "user", T_STR, O(user), "", NULL, 0, 0,
	  "switch to this user after binding and reading the key (privileged ports)" },
	{ "log-level", T_STR, O(log_level), "info", NULL, 0, 0, "error|warn|info|debug" },
	{ "log-format", T_STR, O(log_format), "logfmt", NULL, 0, 0, "logfmt|json" },
	{ "config", T_STR, O(config_file), NULL, NULL, 0, 0, "config file (key = value lines)" },
};
#undef O

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static const struct opt *opt_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static void strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int strlist_add(struct strlist *l, const char *s)
{
	char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	if (!(l->v[l->n] = strdup(s)))
		return -ENOMEM;
	l->n++;
	return 0;
}

int config_parse_duration(const char *s, int *ms)
{
	static const struct { const char *unit; double ms; } units[] = {
		{ "ms", 1.0 }, { "s", 1000.0 }, { "m", 60000.0 }, { "h", 3600000.0 },
	};
	double total = 0;
	int parts = 0;
	size_t last = sizeof(units) / sizeof(units[0]); /* units must come largest first */
	if (!*s)
		return -EINVAL;
	while (*s) { /* "10s", "500ms", ".5s", "1m30s", "2h"; a bare number alone is seconds */
		char *end;
		if (!(*s >= '0' && *s <= '9') && !(*s == '.' && s[1] >= '0' && s[1] <= '9'))
			return -EINVAL;
		errno = 0;
		double v = strtod(s, &end);
		/* digits and one point only: strtod also takes 1e3, 0x10 and inf */
		if (end == s || errno || v != v || end != s + strspn(s, "0123456789."))
			return -EINVAL;
		size_t i = 0, n = sizeof(units) / sizeof(units[0]);
		while (i < n && strncmp(end, units[i].unit, strlen(units[i].unit)) != 0)
			i++;
		if (i == n) {
			if (*end || parts)
				return -EINVAL;
			total = v * 1000.0;
			break;
		}
		if (parts && units[i].ms >= units[last].ms)
			return -EINVAL; /* 30s1m, 1s1s */
		last = i;
		total += v * units[i].ms;
		s = end + strlen(units[i].unit);
		parts++;
	}
	if (total > INT_MAX)
		return -ERANGE;
	*ms = (int)total;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const t[] = { "1", "true", "yes", "on" }, *const f[] = { "0", "false", "no", "off" };
	for (unsigned i = 0; i < 4; i++) {
		if (strcasecmp(s, t[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, f[i]) == 0)
			return *out = 0, 0;
	}
	return -EINVAL;
}

static int parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int set_opt(struct config *c, const struct opt *o, const char *val, char *err, size_t errlen)
{
	void *p = (char *)c + o->off;
	int rc = 0;
	switch (o->type) {
	case T_STR: {
		char *dup = strdup(val);
		if (!dup)
			return fail(err, errlen, -ENOMEM, "out of memory");
		free(*(char **)p);
		*(char **)p = dup;
		return 0;
	}
	case T_INT:
		rc = parse_int(val, o->min, o->max, p);
		if (rc)
			return fail(err, errlen, rc, "%s: '%s' is not an integer in [%d, %d]", o->name, val,
				    o->min, o->max);
		return 0;
	case T_BOOL:
		if (parse_bool(val, p))
			return fail(err, errlen, -EINVAL, "%s: '%s' is not a boolean (true/false)", o->name, val);
		return 0;
	case T_DUR: {
		int ms;
		rc = config_parse_duration(val, &ms);
		if (rc && rc != -ERANGE)
			return fail(err, errlen, -EINVAL, "%s: '%s' is not a duration (e.g. 10s, 500ms, 1m30s)",
				    o->name, val);
		if (rc || ms < o->min || ms > o->max)
			return fail(err, errlen, -EINVAL, "%s: '%s' is out of range: %dms..%ds", o->name, val, o->min,
				    o->max / 1000);
		*(int *)p = ms;
		return 0;
	}
	case T_ENUM: {
		char allowed[128] = "";
		size_t at = 0;
		for (int i = 0; o->choices[i]; i++) {
			if (strcmp(val, o->choices[i]) == 0) {
				*(int *)p = i;
				return 0;
			}
			if (at < sizeof(allowed)) {
				int n = snprintf(allowed + at, sizeof(allowed) - at, "%s%s", i ? "|" : "", o->choices[i]);
				at += n > 0 ? (size_t)n : 0;
			}
		}
		return fail(err, errlen, -EINVAL, "%s: '%s' is not one of %s", o->name, val, allowed);
	}
	case T_LIST: {
		struct strlist *l = p;
		if (l->level < c->level) {
			strlist_clear(l);
			l->level = c->level;
		}
		if (!*val)
			return fail(err, errlen, -EINVAL, "%s: empty value", o->name);
		if (strlist_add(l, val))
			return fail(err, errlen, -ENOMEM, "out of memory");
		return 0;
	}
	}
	return -EINVAL;
}

int config_set(struct config *c, const char *key, const char *val, char *err, size_t errlen)
{
	const struct opt *o = opt_find(key, strlen(key));
	if (!o)
		return fail(err, errlen, -ENOENT, "unknown option '%s'", key);
	return set_opt(c, o, val, err, errlen);
}

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].def)
			set_opt(c, &opts[i], opts[i].def, NULL, 0);
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < NOPTS; i++) {
		void *p = (char *)c + opts[i].off;
		if (opts[i].type == T_STR)
			free(*(char **)p);
		else if (opts[i].type == T_LIST)
			strlist_clear(p);
	}
	memset(c, 0, sizeof(*c));
}

static int opt_equal(const struct opt *o, const struct config *a, const struct config *b)
{
	const void *pa = (const char *)a + o->off, *pb = (const char *)b + o->off;
	if (o->type == T_STR) {
		const char *x = *(char *const *)pa, *y = *(char *const *)pb;
		return x == y || (x && y && strcmp(x, y) == 0);
	}
	if (o->type != T_LIST)
		return *(const int *)pa == *(const int *)pb;
	const struct strlist *x = pa, *y = pb;
	if (x->n != y->n)
		return 0;
	for (size_t i = 0; i < x->n; i++)
		if (strcmp(x->v[i], y->v[i]) != 0)
			return 0;
	return 1;
}

size_t config_diff(const struct config *a, const struct config *b, const char *const *skip, char *out,
		   size_t outlen)
{
	size_t n = 0, len = 0;
	if (outlen)
		out[0] = 0;
	for (size_t i = 0; i < NOPTS; i++) {
		const char *const *k = skip;
		while (k && *k && strcmp(*k, opts[i].name) != 0)
			k++;
		if ((k && *k) || opt_equal(&opts[i], a, b))
			continue;
		n++;
		if (len < outlen)
			len += (size_t)snprintf(out + len, outlen - len, "%s%s", len ? ", " : "", opts[i].name);
	}
	return n;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

int config_line(struct config *c, const char *line, char *err, size_t errlen)
{
	char buf[4096];
	if (strlen(line) >= sizeof(buf))
		return fail(err, errlen, -E2BIG, "line too long");
	strcpy(buf, line);
	char *s = trim(buf);
	if (!*s || *s == '#')
		return 0;
	char *eq = strchr(s, '=');
	if (!eq)
		return fail(err, errlen, -EINVAL, "expected 'key = value'");
	*eq = 0;
	char *key = trim(s), *val = trim(eq + 1);
	size_t vn = strlen(val);
	if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
		val[vn - 1] = 0;
		val++;
	}
	if (strcmp(key, "config") == 0)
		return fail(err, errlen, -EINVAL, "'config' cannot be set from a config file");
	return config_set(c, key, val, err, errlen);
}

/* A file option must hold a path. PEM text there (a Secret's key put in the
 * environment) would be echoed by every error that names the file. */
static int file_value_ok(const char *v)
{
	if (!v)
		return 1;
	if (strstr(v, "-----BEGIN"))
		return 0;
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return 0;
	return 1;
}

int config_finish(struct config *c, char *err, size_t errlen)
{
	char host[256];
	unsigned port;
	if (config_split_hostport(c->listen, host, sizeof(host), &port) || port == 0)
		return fail(err, errlen, -EINVAL, "listen: '%s' is not ADDR:PORT", c->listen);
	if (strncmp(c->backend, "unix:", 5) == 0) {
		if (c->backend[5] != '/' || strlen(c->backend + 5) >= 108)
			return fail(err, errlen, -EINVAL, "backend: unix socket path must be absolute and < 108 bytes");
	} else if (config_split_hostport(c->backend, host, sizeof(host), &port) || port == 0 || !host[0]) {
		return fail(err, errlen, -EINVAL, "backend: '%s' is not HOST:PORT or unix:PATH", c->backend);
	}
	if (c->metrics_listen[0] &&
	    (config_split_hostport(c->metrics_listen, host, sizeof(host), &port) || port == 0))
		return fail(err, errlen, -EINVAL, "metrics-listen: '%s' is not ADDR:PORT", c->metrics_listen);
	unsigned char addr[sizeof(struct in6_addr)];
	if (c->metrics_listen[0] && host[0] && strcmp(host, "*") && inet_pton(AF_INET, host, addr) != 1 &&
	    inet_pton(AF_INET6, host, addr) != 1)
		return fail(err, errlen, -EINVAL,
			    "metrics-listen: '%s' needs a numeric address (127.0.0.1:9187, 0.0.0.0:9187, [::]:9187)",
			    c->metrics_listen);
	if (!c->cert || !*c->cert)
		return fail(err, errlen, -EINVAL, "cert: a server certificate is required (--cert FILE)");
	if (!c->key || !*c->key)
		return fail(err, errlen, -EINVAL, "key: a private key is required (--key FILE)");
	const char *files[][2] = { { "cert", c->cert },
				   { "key", c->key },
				   { "client-ca", c->client_ca },
				   { "client-crl", c->client_crl },
				   { "client-user-map", c->client_user_map } };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (!file_value_ok(files[i][1]))
			return fail(err, errlen, -EINVAL,
				    "%s: expects a file path, but the value holds PEM text or control characters "
				    "(not shown); mount the Secret as files and give their paths",
				    files[i][0]);
	/* the kernel counts keepalive times in seconds */
	if (c->tcp_keepalive_ms % 1000)
		return fail(err, errlen, -EINVAL, "tcp-keepalive: %dms is not a whole number of seconds",
			    c->tcp_keepalive_ms);
	if (c->tcp_keepalive_intvl_ms % 1000)
		return fail(err, errlen, -EINVAL, "tcp-keepalive-interval: %dms is not a whole number of seconds",
			    c->tcp_keepalive_intvl_ms);
	if (c->client_ca && *c->client_ca && c->verify == VERIFY_NONE)
		return fail(err, errlen, -EINVAL,
			    "client-ca: a client CA does nothing with --verify none; add --verify require (or optional)");
	if (strcmp(c->min_tls, "1.2") && strcmp(c->min_tls, "1.3"))
		return fail(err, errlen, -EINVAL, "min-tls-version: '%s' must be 1.2 or 1.3", c->min_tls);
	if (c->client_crl && *c->client_crl && c->verify == VERIFY_NONE)
		return fail(err, errlen, -EINVAL,
			    "client-crl: revocation lists need client certificates: add --verify require (or optional) "
			    "and --client-ca");
	if (c->verify != VERIFY_NONE && (!c->client_ca || !*c->client_ca))
		return fail(err, errlen, -EINVAL, "verify: client certificates need --client-ca FILE");
	if ((c->allow_cn.n || c->allow_dns.n || c->allow_uri.n) && c->verify == VERIFY_NONE)
		return fail(err, errlen, -EINVAL, "allow-*: allow-lists need --verify optional|require");
	if (c->client_user_match != USER_MATCH_NONE && c->verify != VERIFY_REQUIRE)
		return fail(err, errlen, -EINVAL,
			    "client-user-match: users are matched to client certificates, which only --verify require "
			    "demands of every client");
	if (c->client_user_match == USER_MATCH_MAP && (!c->client_user_map || !*c->client_user_map))
		return fail(err, errlen, -EINVAL, "client-user-match: map needs --client-user-map FILE");
	if (c->client_user_match != USER_MATCH_MAP && c->client_user_map && *c->client_user_map)
		return fail(err, errlen, -EINVAL,
			    "client-user-map: a user map does nothing without --client-user-match map");
	if (c->client_user_match != USER_MATCH_NONE && c->allow_plaintext)
		return fail(err, errlen, -EINVAL,
			    "client-user-match: a plaintext client has no certificate to match; drop --allow-plaintext");
	enum log_level lvl;
	if (log_level_parse(c->log_level, &lvl))
		return fail(err, errlen, -EINVAL, "log-level: '%s' must be error|warn|info|debug", c->log_level);
	if (strcmp(c->log_format, "logfmt") && strcmp(c->log_format, "json"))
		return fail(err, errlen, -EINVAL, "log-format: '%s' must be logfmt|json", c->log_format);
	return 0;
}

int config_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char *colon, *h = s;
	size_t hl;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* bare IPv6 needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl >= hostlen)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	int p;
	if (parse_int(colon + 1, 0, 65535, &p))
		return -EINVAL;
	*port = (unsigned)p;
	return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return fail(err, errlen, -EISDIR, "%s: is a directory, not a config file", path);
	}
	char line[4096], e[CONFIG_ERR_LEN];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (lineno == 1 && memcmp(line, "\xef\xbb\xbf", 3) == 0) /* a UTF-8 byte order mark */
			memmove(line, line + 3, strlen(line + 3) + 1);
		size_t n = strlen(line);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			rc = fail(err, errlen, -E2BIG, "%s:%d: line too long", path, lineno);
			break;
		}
		if ((rc = config_line(c, line, e, sizeof(e)))) {
			fail(err, errlen, rc, "%s:%d: %s", path, lineno, e);
			break;
		}
	}
	if (!rc && ferror(f))
		rc = fail(err, errlen, -EIO, "%s: read error", path);
	fclose(f);
	return rc;
}

/* KTLS_SIDECAR_MAX_CONNS -> max-conns. Returns 0 if name is not ours. */
static int env_to_key(const char *name, size_t len, char *key, size_t keylen)
{
	static const char pfx[] = "KTLS_SIDECAR_";
	if (len <= sizeof(pfx) - 1 || strncmp(name, pfx, sizeof(pfx) - 1) || len - (sizeof(pfx) - 1) >= keylen)
		return 0;
	size_t k = 0;
	for (size_t i = sizeof(pfx) - 1; i < len; i++)
		key[k++] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
	key[k] = 0;
	return 1;
}

/* Does key end in word (a whole '-'-separated word)? Returns where word starts. */
static const char *ends_with_word(const char *key, const char *word)
{
	size_t kl = strlen(key), wl = strlen(word);
	if (kl < wl || strcmp(key + kl - wl, word))
		return NULL;
	const char *at = key + kl - wl;
	return at == key || at[-1] == '-' ? at : NULL;
}

/* The kubelet's service links for a Service named ktls-sidecar or ktls-sidecar-*:
 * X_SERVICE_HOST, X_SERVICE_PORT[_NAME], X_PORT=tcp://..., X_PORT_N_TCP[_PROTO|_PORT|_ADDR]. */
static int service_link(const char *key, const char *value)
{
	if (ends_with_word(key, "service-host") || ends_with_word(key, "service-port") ||
	    strncmp(key, "service-port-", 13) == 0 || strstr(key, "-service-port-"))
		return 1;
	static const char *const tails[] = { "", "-proto", "-port", "-addr" };
	for (const char *p = key; (p = strstr(p, "port-")) != NULL; p++) {
		if (p != key && p[-1] != '-')
			continue;
		const char *d = p + 5, *q = d;
		while (*q >= '0' && *q <= '9')
			q++;
		if (q == d || *q != '-')
			continue;
		q++;
		size_t pl = strncmp(q, "tcp", 3) == 0 || strncmp(q, "udp", 3) == 0 ? 3 : strncmp(q, "sctp", 4) == 0 ? 4 : 0;
		if (!pl)
			continue;
		for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++)
			if (strcmp(q + pl, tails[i]) == 0)
				return 1;
	}
	if (ends_with_word(key, "port"))
		return strncmp(value, "tcp://", 6) == 0 || strncmp(value, "udp://", 6) == 0 ||
		       strncmp(value, "sctp://", 7) == 0;
	return 0;
}

int config_load_env(struct config *c, char **envp, char *err, size_t errlen)
{
	char key[64], e[CONFIG_ERR_LEN];
	for (; envp && *envp; envp++) {
		const char *eq = strchr(*envp, '=');
		if (!eq || !env_to_key(*envp, (size_t)(eq - *envp), key, sizeof(key)))
			continue;
		if (strcmp(key, "config") == 0)
			continue; /* consumed by config_load_all */
		const struct opt *o = opt_find(key, strlen(key));
		if (!o && service_link(key, eq + 1))
			continue;
		if (!o)
			return fail(err, errlen, -ENOENT, "%.*s: unknown variable", (int)(eq - *envp), *envp);
		int rc = 0;
		if (o->type == T_LIST) {
			/* comma-separated */
			char *dup = strdup(eq + 1), *save = NULL;
			if (!dup)
				return -ENOMEM;
			for (char *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
				rc = set_opt(c, o, trim(t), e, sizeof(e));
			free(dup);
		} else {
			rc = set_opt(c, o, eq + 1, e, sizeof(e));
		}
		if (rc)
			return fail(err, errlen, rc, "%.*s: %s", (int)(eq - *envp), *envp, e);
	}
	return 0;
}

int config_load_args(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return -EAGAIN;
		if (strncmp(a, "--", 2) != 0)
			return fail(err, errlen, -EINVAL, "unexpected argument '%s'", a);
		a += 2;
		const char *eq = strchr(a, '=');
		size_t klen = eq ? (size_t)(eq - a) : strlen(a);
		const struct opt *o = opt_find(a, klen);
		const char *val = eq ? eq + 1 : NULL;
		if (!o && klen > 3 && strncmp(a, "no-", 3) == 0 && !eq) {
			o = opt_find(a + 3, klen - 3);
			if (o && o->type == T_BOOL)
				val = "false";
			else
				o = NULL;
		}
		if (!o)
			return fail(err, errlen, -ENOENT, "unknown option '--%.*s' (see --help)", (int)klen, a);
		if (!val && o->type == T_BOOL)
			val = "true";
		if (!val) {
			if (i + 1 >= argc)
				return fail(err, errlen, -EINVAL, "--%s needs a value", o->name);
			val = argv[++i];
		}
		int rc = set_opt(c, o, val, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

int config_load_all(struct config *c, int argc, char **argv, char **envp, char *err, size_t errlen)
{
	const char *file = NULL;
	for (char **e = envp; e && *e; e++)
		if (strncmp(*e, "KTLS_SIDECAR_CONFIG=", 20) == 0)
			file = *e + 20;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	int rc;
	c->level = 1;
	if (file && *file && (rc = config_load_file(c, file, err, errlen)))
		return rc;
	c->level = 2;
	if ((rc = config_load_env(c, envp, err, errlen)))
		return rc;
	c->level = 3;
	if ((rc = config_load_args(c, argc, argv, err, errlen)))
		return rc;
	/* the file named by KTLS_SIDECAR_CONFIG, too, is the one a reload reads and the
	 * watch follows */
	if (file && *file && !c->config_file && (rc = config_set(c, "config", file, err, errlen)))
		return rc;
	return config_finish(c, err, errlen);
}

void config_usage(FILE *f)
{
	fprintf(f, "Options (flag, or KTLS_SIDECAR_<NAME> in the environment, or 'name = value' in --config FILE;\n"
		   "flags override the environment, which overrides the file; booleans take --name or --no-name;\n"
		   "durations take ms, s, m or h, combined as in 1m30s):\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		char left[64];
		const char *arg = o->type == T_BOOL ? "" : o->type == T_DUR ? " DURATION" :
				  o->type == T_INT ? " N" : o->type == T_ENUM ? " MODE" : " VALUE";
		snprintf(left, sizeof(left), "--%s%s", o->name, arg);
		fprintf(f, "  %-28s %s", left, o->help);
		if (o->def && o->type != T_STR)
			fprintf(f, " [%s]", o->def);
		else if (o->def && strlen(o->def) < 40)
			fprintf(f, " [%s]", o->def);
		fputc('\n', f);
	}
}
