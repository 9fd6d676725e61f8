// SPDX-License-Identifier: MIT
// Options of `ktls-sidecar inject`: the table, --help, and checks that turn a
// bad value into one clear message before any YAML is read. Defaults suit a
// PgBouncer pod: clients on 5432 (TLS), PgBouncer on 127.0.0.1:6432.
#include "inject_int.h"

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef KS_IMAGE
#define KS_IMAGE "ghcr.io/ktls-sidecar/ktls-sidecar:0.1.0"
#endif

enum opt_id {
	O_IMAGE, O_SECRET, O_LISTEN_PORT, O_METRICS_PORT, O_BACKEND, O_CONTAINER, O_MTLS, O_CLIENT_CA,
	O_LEGACY, O_NET_ADMIN, O_SECCOMP, O_CONFIG_MAP, O_CPU_REQ, O_MEM_REQ, O_CPU_LIM, O_MEM_LIM, O_SET,
	O_HELP,
};

struct iopt {
	const char *name;
	enum opt_id id;
	const char *arg; /* NULL: a flag without a value */
	const char *help;
};

static const struct iopt iopts[] = {
	{ "image", O_IMAGE, "IMAGE", "sidecar image [" KS_IMAGE "]" },
	{ "secret", O_SECRET, "NAME", "TLS Secret (tls.crt, tls.key, ca.crt as cert-manager writes them) [ktls-sidecar-tls]" },
	{ "listen-port", O_LISTEN_PORT, "PORT", "port clients connect to with TLS, named pg-tls [5432]" },
	{ "metrics-port", O_METRICS_PORT, "PORT", "metrics listener for /metrics, /healthz, /readyz, named ktls-metrics [9187]" },
	{ "backend", O_BACKEND, "TARGET",
	  "the pooler: PORT (127.0.0.1:PORT), HOST:PORT, or a unix socket path such as\n"
	  "                               /var/run/pgbouncer/.s.PGSQL.6432 (its directory becomes an emptyDir\n"
	  "                               shared with the pooler container) [6432]" },
	{ "container", O_CONTAINER, "NAME", "the pooler container [the first container]" },
	{ "mtls", O_MTLS, NULL, "require client certificates signed by the Secret's ca.crt" },
	{ "client-ca", O_CLIENT_CA, NULL, "same as --mtls" },
	{ "legacy", O_LEGACY, NULL, "add a regular container instead of a native sidecar (Kubernetes < 1.29)" },
	{ "net-admin", O_NET_ADMIN, NULL, "add CAP_NET_ADMIN for the kTLS details in the admin stats; runs the\n"
	  "                               sidecar as uid 0, whose only capability it is (see k8s/README.md)" },
	{ "seccomp-localhost", O_SECCOMP, "PROFILE",
	  "seccomp Localhost profile, e.g. profiles/ktls-sidecar.json (k8s/seccomp),\n"
	  "                               which allows io_uring [RuntimeDefault: io_uring blocked, epoll engine]" },
	{ "config-map", O_CONFIG_MAP, "NAME", "mount ConfigMap NAME (key ktls-sidecar.conf) as the config file" },
	{ "cpu-request", O_CPU_REQ, "QTY", "resources.requests.cpu [50m]" },
	{ "memory-request", O_MEM_REQ, "QTY", "resources.requests.memory [32Mi]" },
	{ "cpu-limit", O_CPU_LIM, "QTY", "resources.limits.cpu, \"\" for none [none]" },
	{ "memory-limit", O_MEM_LIM, "QTY", "resources.limits.memory, \"\" for none [128Mi]" },
	{ "set", O_SET, "KEY=VALUE", "any daemon option as KTLS_SIDECAR_KEY (e.g. --set log-format=json), repeatable" },
	{ "help", O_HELP, NULL, "this text" },
};

#define NIOPTS (sizeof(iopts) / sizeof(iopts[0]))

void inject_opts_usage(FILE *f)
{
	fprintf(f, "Usage: ktls-sidecar inject [options] [FILE...]\n\n"
		   "Reads Kubernetes YAML (FILEs, or stdin when none or '-') and writes it to stdout with the\n"
		   "ktls-sidecar TLS terminator added to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,\n"
		   "Job and CronJob (also inside a List). Other documents pass through byte for byte. Running it\n"
		   "again gives the same bytes. A workload annotated " INJECT_ANNOTATION ": \"false\" (on its\n"
		   "metadata or its pod template) is left alone. Nothing is written unless all input is valid.\n\n"
		   "Options:\n");
	for (size_t i = 0; i < NIOPTS; i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", iopts[i].name, iopts[i].arg ? " " : "",
			 iopts[i].arg ? iopts[i].arg : "");
		fprintf(f, "  %-28s %s\n", left, iopts[i].help);
	}
	fprintf(f, "\nExample: ktls-sidecar inject --secret pgbouncer-tls deploy.yaml | kubectl apply -f -\n");
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int parse_port(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!isdigit((unsigned char)*s) || *end || errno || v < 1 || v > 65535)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* RFC 1123 label (max 63) or, with dots, subdomain (max 253): Kubernetes object names. */
static bool dns_name(const char *s, bool dots)
{
	size_t n = strlen(s);
	if (!n || n > (dots ? 253u : 63u) || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (const char *p = s; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || (dots && *p == '.')))
			return false;
	return true;
}

/* A resource quantity such as 50m, 0.5, 128Mi, 1e3 (or "" to leave it out). */
static bool quantity(const char *s)
{
	static const char *const sfx[] = { "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	size_t d = strspn(s, "0123456789.");
	if (!*s)
		return true;
	if (!d || strchr(s, '.') != strrchr(s, '.'))
		return false;
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
		if (strcmp(s + d, sfx[i]) == 0)
			return true;
	return false;
}

/* --backend: PORT, HOST:PORT, or a unix socket path (optionally "unix:"-prefixed). */
static int parse_backend(struct inject_opts *o, const char *s, char *err, size_t errlen)
{
	int port;
	const char *path = strncmp(s, "unix:", 5) == 0 ? s + 5 : s;
	if (*path == '/') {
		const char *slash = strrchr(path, '/');
		size_t dl = (size_t)(slash - path);
		if (strlen(path) >= sizeof(o->sock_dir) || dl == 0 || !slash[1] || strstr(path, "/../") ||
		    strstr(path, "//"))
			return fail(err, errlen, "--backend %s: need an absolute socket path below a directory "
				    "other than / (shorter than 108 bytes)", s);
		memcpy(o->sock_dir, path, dl);
		o->sock_dir[dl] = 0;
		snprintf(o->backend, sizeof(o->backend), "unix:%s", path);
		return 0;
	}
	if (parse_port(s, &port) == 0) {
		snprintf(o->backend, sizeof(o->backend), "127.0.0.1:%d", port);
		return 0;
	}
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || parse_port(colon + 1, &port) || strlen(s) >= sizeof(o->backend) ||
	    strpbrk(s, " \t\"'"))
		return fail(err, errlen, "--backend %s: expected PORT, HOST:PORT or /path/.s.PGSQL.PORT", s);
	snprintf(o->backend, sizeof(o->backend), "%s", s);
	return 0;
}

/* Daemon options whose value must agree with what the injector declares (ports,
 * probes, volumes), and the flag that sets each. */
static const char *owned_option(const char *key, size_t kl)
{
	static const char *const owned[][2] = {
		{ "listen", "--listen-port" },	 { "metrics-listen", "--metrics-port" },
		{ "backend", "--backend" },	 { "cert", "--secret" },
		{ "key", "--secret" },		 { "admin-socket", "nothing: the pod's ktls-run volume" },
	};
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		if (strlen(owned[i][0]) == kl && strncmp(key, owned[i][0], kl) == 0)
			return owned[i][1];
	return NULL;
}

static int add_set(struct inject_opts *o, const char *kv, char *err, size_t errlen)
{
	const char *eq = strchr(kv, '=');
	size_t kl = eq ? (size_t)(eq - kv) : 0;
	if (!eq || !kl || strspn(kv, "abcdefghijklmnopqrstuvwxyz0123456789-") != kl)
		return fail(err, errlen, "--set %s: expected KEY=VALUE with a daemon option name (see "
			    "'ktls-sidecar run --help')", kv);
	if (o->nset == INJECT_MAX_SET || kl + sizeof("KTLS_SIDECAR_") > sizeof(o->set_buf[0]))
		return fail(err, errlen, "--set %s: too many or too long", kv);
	const char *flag = owned_option(kv, kl);
	if (flag)
		return fail(err, errlen, "--set %.*s: the injector sets it (use %s)", (int)kl, kv, flag);
	/* the daemon's own parser: an unknown name or a bad value fails here, not in the pod */
	char key[64], why[CONFIG_ERR_LEN];
	struct config scratch;
	snprintf(key, sizeof(key), "%.*s", (int)kl, kv);
	config_init(&scratch);
	int rc = config_set(&scratch, key, eq + 1, why, sizeof(why));
	config_free(&scratch);
	if (rc)
		return fail(err, errlen, "--set %s: %s", kv, why);
	char *name = o->set_buf[o->nset];
	int n = snprintf(name, sizeof(o->set_buf[0]), "KTLS_SIDECAR_");
	for (size_t i = 0; i < kl; i++)
		name[n++] = kv[i] == '-' ? '_' : (char)toupper((unsigned char)kv[i]);
	name[n] = 0;
	for (int i = 0; i < o->nset; i++)
		if (strcmp(o->set_key[i], name) == 0)
			return fail(err, errlen, "--set %s: %s is already set", kv, key);
	o->set_key[o->nset] = name;
	o->set_val[o->nset++] = eq + 1;
	return 0;
}

static void opts_defaults(struct inject_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->image = KS_IMAGE;
	o->secret = "ktls-sidecar-tls";
	o->listen_port = 5432;
	o->metrics_port = 9187;
	snprintf(o->backend, sizeof(o->backend), "127.0.0.1:6432");
	o->cpu_request = "50m";
	o->memory_request = "32Mi";
	o->cpu_limit = "";
	o->memory_limit = "128Mi";
}

static int set_one(struct inject_opts *o, enum opt_id id, const char *v, char *err, size_t errlen)
{
	switch (id) {
	case O_IMAGE:
		if (!*v || strpbrk(v, " \t\n"))
			return fail(err, errlen, "--image '%s': not an image reference", v);
		o->image = v;
		return 0;
	case O_SECRET:
		if (!dns_name(v, true))
			return fail(err, errlen, "--secret '%s': not a valid Secret name", v);
		o->secret = v;
		return 0;
	case O_LISTEN_PORT:
		return parse_port(v, &o->listen_port) ? fail(err, errlen, "--listen-port %s: not a port", v) : 0;
	case O_METRICS_PORT:
		return parse_port(v, &o->metrics_port) ? fail(err, errlen, "--metrics-port %s: not a port", v) : 0;
	case O_BACKEND:
		return parse_backend(o, v, err, errlen);
	case O_CONTAINER:
		if (!dns_name(v, false))
			return fail(err, errlen, "--container '%s': not a valid container name", v);
		o->container = v;
		return 0;
	case O_SECCOMP:
		if (!*v || *v == '/' || strstr(v, ".."))
			return fail(err, errlen, "--seccomp-localhost '%s': need a path relative to the kubelet's "
				    "seccomp directory, e.g. profiles/ktls-sidecar.json", v);
		o->seccomp_profile = v;
		return 0;
	case O_CONFIG_MAP:
		if (!dns_name(v, true))
			return fail(err, errlen, "--config-map '%s': not a valid ConfigMap name", v);
		o->config_map = v;
		return 0;
	case O_CPU_REQ: case O_MEM_REQ: case O_CPU_LIM: case O_MEM_LIM: {
		const char **f[] = { &o->cpu_request, &o->memory_request, &o->cpu_limit, &o->memory_limit };
		if (!quantity(v))
			return fail(err, errlen, "'%s': not a resource quantity (e.g. 100m, 64Mi)", v);
		*f[id - O_CPU_REQ] = v;
		return 0;
	}
	case O_SET:
		return add_set(o, v, err, errlen);
	case O_MTLS: case O_CLIENT_CA: case O_LEGACY: case O_NET_ADMIN: case O_HELP:
		break;
	}
	return 0;
}

static const struct iopt *iopt_find(const char *a, size_t len)
{
	for (size_t i = 0; i < NIOPTS; i++)
		if (strlen(iopts[i].name) == len && strncmp(iopts[i].name, a, len) == 0)
			return &iopts[i];
	return NULL;
}

/* The pod's environment as NAME=VALUE strings, as a process gets it. */
struct env_strings {
	char *v[INJECT_MAX_SET + 16];
	int n, nomem;
};

static void env_string(void *arg, const char *name, const char *val)
{
	struct env_strings *e = arg;
	if (e->n + 1 >= (int)(sizeof(e->v) / sizeof(e->v[0])) || asprintf(&e->v[e->n], "%s=%s", name, val) < 0)
		e->nomem = 1;
	else
		e->n++;
}

/* Without a ConfigMap, the variables the pod gets are the daemon's whole configuration:
 * what it would refuse at start (--set client-user-match=cn without --mtls) is refused
 * here, not in a pod that restarts forever. */
static int daemon_would_start(const struct inject_opts *o, char *err, size_t errlen)
{
	if (o->config_map)
		return 0; /* the file may hold what is missing */
	struct env_strings e = { .n = 0 };
	struct config c;
	char why[CONFIG_ERR_LEN] = "";
	inject_env(o, env_string, &e);
	config_init(&c);
	/* the daemon's own reading of its environment, then its own checks */
	int rc = e.nomem ? -ENOMEM : config_load_env(&c, e.v, why, sizeof(why));
	if (!rc)
		rc = config_finish(&c, why, sizeof(why));
	config_free(&c);
	for (int i = 0; i < e.n; i++)
		free(e.v[i]);
	if (rc == -ENOMEM)
		return fail(err, errlen, "out of memory");
	if (rc)
		return fail(err, errlen, "the sidecar would refuse this configuration at start: %s (add --mtls or the "
			    "missing --set, or give the rest in --config-map)", why);
	return 0;
}

int inject_opts_parse(struct inject_opts *o, int argc, char **argv, char *err, size_t errlen)
{
	opts_defaults(o);
	o->files = calloc((size_t)argc + 1, sizeof(*o->files));
	if (!o->files)
		return fail(err, errlen, "out of memory");
	bool dashdash = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (dashdash || a[0] != '-' || strcmp(a, "-") == 0) {
			o->files[o->nfiles++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (strcmp(a, "-h") == 0)
			return -EAGAIN;
		const char *name = a + (a[1] == '-' ? 2 : 1), *eq = strchr(name, '=');
		size_t nl = eq ? (size_t)(eq - name) : strlen(name);
		const struct iopt *op = a[1] == '-' ? iopt_find(name, nl) : NULL;
		if (!op)
			return fail(err, errlen, "unknown option '%s' (see --help)", a);
		if (op->id == O_HELP)
			return -EAGAIN;
		if (!op->arg) {
			if (eq)
				return fail(err, errlen, "--%s takes no value", op->name);
			o->mtls |= op->id == O_MTLS || op->id == O_CLIENT_CA;
			o->legacy |= op->id == O_LEGACY;
			o->net_admin |= op->id == O_NET_ADMIN;
			continue;
		}
		if (!eq && i + 1 >= argc)
			return fail(err, errlen, "--%s needs a value", op->name);
		int rc = set_one(o, op->id, eq ? eq + 1 : argv[++i], err, errlen);
		if (rc)
			return rc;
	}
	if (strncmp(o->backend, "127.0.0.1:", 10) == 0 && atoi(o->backend + 10) == o->listen_port)
		return fail(err, errlen, "--backend %s would loop to --listen-port %d", o->backend, o->listen_port);
	if (o->listen_port == o->metrics_port)
		return fail(err, errlen, "--listen-port and --metrics-port are both %d", o->listen_port);
	return daemon_would_start(o, err, errlen);
}

void inject_opts_fini(struct inject_opts *o)
{
	free(o->files);
	o->files = NULL;
}
