// SPDX-License-Identifier: MIT
// PodSpec surgery: build the ktls-sidecar container (env, ports, probes,
// resources, securityContext, mounts) and put it, its volumes and the pooler's
// socket mount into a pod spec. Everything we add is found again by name, so a
// second run replaces it in place and changes nothing.
#include "inject_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TLS_DIR "/etc/ktls-sidecar/tls"
#define RUN_DIR "/run/ktls-sidecar"
#define CONF_DIR "/etc/ktls-sidecar/config"
#define VOL_TLS INJECT_VOL_PREFIX "tls"
#define VOL_RUN INJECT_VOL_PREFIX "run"
#define VOL_CONF INJECT_VOL_PREFIX "config"
#define VOL_SOCK INJECT_VOL_PREFIX "pgsock"
#define PORT_TLS "pg-tls"
#define PORT_METRICS "ktls-metrics"
#define SIDECAR_UID 65532

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* Finish a sticky build: the node, or NULL (and nothing leaked) after an error. */
static struct kyaml_node *built(struct kyaml_node *n, int rc)
{
	if (!rc)
		return n;
	kyaml_free(n);
	return NULL;
}

static struct kyaml_node *pair(const char *k1, struct kyaml_node *v1, const char *k2, struct kyaml_node *v2)
{
	int rc = 0;
	struct kyaml_node *m = kyaml_map();
	kyaml_put(m, k1, v1, &rc);
	if (k2)
		kyaml_put(m, k2, v2, &rc);
	return built(m, rc);
}

static struct kyaml_node *seq_of(const char *s)
{
	int rc = 0;
	struct kyaml_node *q = kyaml_seq();
	kyaml_push(q, kyaml_str(s), &rc);
	return built(q, rc);
}

/* env: replace a variable of the same name (so --set can override a default). */
static void env_set(struct kyaml_node *env, const char *name, const char *val, int *rc)
{
	long i = kyaml_find(env, "name", name);
	struct kyaml_node *var = pair("name", kyaml_str(name), "value", kyaml_str(val));
	if (i < 0) {
		kyaml_push(env, var, rc);
		return;
	}
	if (!var && !*rc)
		*rc = -ENOMEM;
	if (*rc) {
		kyaml_free(var);
		return;
	}
	kyaml_free(env->kids[i]);
	env->kids[i] = var;
}

void inject_env(const struct inject_opts *o, void (*add)(void *arg, const char *name, const char *val), void *arg)
{
	char listen[32], metrics[32];
	snprintf(listen, sizeof(listen), "0.0.0.0:%d", o->listen_port);
	snprintf(metrics, sizeof(metrics), "0.0.0.0:%d", o->metrics_port);
	add(arg, "KTLS_SIDECAR_LISTEN", listen);
	add(arg, "KTLS_SIDECAR_BACKEND", o->backend);
	add(arg, "KTLS_SIDECAR_CERT", TLS_DIR "/tls.crt");
	add(arg, "KTLS_SIDECAR_KEY", TLS_DIR "/tls.key");
	if (o->mtls) {
		add(arg, "KTLS_SIDECAR_CLIENT_CA", TLS_DIR "/ca.crt");
		add(arg, "KTLS_SIDECAR_VERIFY", "require");
	}
	add(arg, "KTLS_SIDECAR_ADMIN_SOCKET", RUN_DIR "/admin.sock");
	add(arg, "KTLS_SIDECAR_METRICS_LISTEN", metrics);
	if (o->config_map)
		add(arg, "KTLS_SIDECAR_CONFIG", CONF_DIR "/ktls-sidecar.conf");
	for (int i = 0; i < o->nset; i++)
		add(arg, o->set_key[i], o->set_val[i]);
}

struct env_build {
	struct kyaml_node *env;
	int rc;
};

static void env_add(void *arg, const char *name, const char *val)
{
	struct env_build *b = arg;
	env_set(b->env, name, val, &b->rc);
}

static struct kyaml_node *build_env(const struct inject_opts *o)
{
	struct env_build b = { kyaml_seq(), 0 };
	inject_env(o, env_add, &b);
	return built(b.env, b.rc);
}

static struct kyaml_node *port(const char *name, int num)
{
	int rc = 0;
	struct kyaml_node *p = pair("name", kyaml_str(name), "containerPort", kyaml_int(num));
	kyaml_put(p, "protocol", kyaml_str("TCP"), &rc);
	return built(p, rc);
}

static struct kyaml_node *build_resources(const struct inject_opts *o)
{
	int rc = 0;
	struct kyaml_node *res = kyaml_map(), *req = kyaml_map(), *lim = kyaml_map();
	if (*o->cpu_request)
		kyaml_put(req, "cpu", kyaml_str(o->cpu_request), &rc);
	if (*o->memory_request)
		kyaml_put(req, "memory", kyaml_str(o->memory_request), &rc);
	if (*o->cpu_limit)
		kyaml_put(lim, "cpu", kyaml_str(o->cpu_limit), &rc);
	if (*o->memory_limit)
		kyaml_put(lim, "memory", kyaml_str(o->memory_limit), &rc);
	if (req && req->n)
		kyaml_put(res, "requests", req, &rc);
	else
		kyaml_free(req);
	if (lim && lim->n)
		kyaml_put(res, "limits", lim, &rc);
	else
		kyaml_free(lim);
	return built(res, rc);
}

/* Kubernetes keeps added capabilities only for uid 0 (no ambient capabilities,
 * kubernetes/kubernetes#56374), so --net-admin means root with NET_ADMIN alone. */
static struct kyaml_node *build_security(const struct inject_opts *o)
{
	int rc = 0;
	struct kyaml_node *sc = kyaml_map(), *caps = kyaml_map(), *seccomp;
	kyaml_put(sc, "runAsNonRoot", kyaml_bool(!o->net_admin), &rc);
	kyaml_put(sc, "runAsUser", kyaml_int(o->net_admin ? 0 : SIDECAR_UID), &rc);
	kyaml_put(sc, "runAsGroup", kyaml_int(o->net_admin ? 0 : SIDECAR_UID), &rc);
	kyaml_put(sc, "readOnlyRootFilesystem", kyaml_bool(true), &rc);
	kyaml_put(sc, "allowPrivilegeEscalation", kyaml_bool(false), &rc);
	kyaml_put(caps, "drop", seq_of("ALL"), &rc);
	if (o->net_admin)
		kyaml_put(caps, "add", seq_of("NET_ADMIN"), &rc);
	kyaml_put(sc, "capabilities", caps, &rc);
	if (o->seccomp_profile)
		seccomp = pair("type", kyaml_str("Localhost"), "localhostProfile", kyaml_str(o->seccomp_profile));
	else
		seccomp = pair("type", kyaml_str("RuntimeDefault"), NULL, NULL);
	kyaml_put(sc, "seccompProfile", seccomp, &rc);
	return built(sc, rc);
}

static struct kyaml_node *probe(const char *path, int period, int failures)
{
	int rc = 0;
	struct kyaml_node *get = pair("path", kyaml_str(path), "port", kyaml_str(PORT_METRICS));
	struct kyaml_node *p = pair("httpGet", get, "periodSeconds", kyaml_int(period));
	kyaml_put(p, "failureThreshold", kyaml_int(failures), &rc);
	return built(p, rc);
}

static struct kyaml_node *mount(const char *vol, const char *path, bool ro)
{
	int rc = 0;
	struct kyaml_node *m = pair("name", kyaml_str(vol), "mountPath", kyaml_str(path));
	if (ro)
		kyaml_put(m, "readOnly", kyaml_bool(true), &rc);
	return built(m, rc);
}

static struct kyaml_node *build_mounts(const struct inject_opts *o, const char *sock_vol)
{
	int rc = 0;
	struct kyaml_node *m = kyaml_seq();
	kyaml_push(m, mount(VOL_TLS, TLS_DIR, true), &rc);
	kyaml_push(m, mount(VOL_RUN, RUN_DIR, false), &rc);
	if (o->config_map)
		kyaml_push(m, mount(VOL_CONF, CONF_DIR, true), &rc);
	if (sock_vol)
		kyaml_push(m, mount(sock_vol, o->sock_dir, false), &rc);
	return built(m, rc);
}

static struct kyaml_node *build_container(const struct inject_opts *o, const char *sock_vol)
{
	int rc = 0;
	struct kyaml_node *c = pair("name", kyaml_str(INJECT_NAME), "image", kyaml_str(o->image));
	struct kyaml_node *ports = kyaml_seq();
	if (!o->legacy)
		kyaml_put(c, "restartPolicy", kyaml_str("Always"), &rc);
	kyaml_put(c, "args", seq_of("run"), &rc);
	kyaml_push(ports, port(PORT_TLS, o->listen_port), &rc);
	kyaml_push(ports, port(PORT_METRICS, o->metrics_port), &rc);
	kyaml_put(c, "ports", ports, &rc);
	kyaml_put(c, "env", build_env(o), &rc);
	kyaml_put(c, "resources", build_resources(o), &rc);
	kyaml_put(c, "securityContext", build_security(o), &rc);
	kyaml_put(c, "volumeMounts", build_mounts(o, sock_vol), &rc);
	kyaml_put(c, "startupProbe", probe("/healthz", 1, 30), &rc);
	kyaml_put(c, "livenessProbe", probe("/healthz", 10, 3), &rc);
	kyaml_put(c, "readinessProbe", probe("/readyz", 5, 2), &rc);
	kyaml_put(c, "terminationMessagePolicy", kyaml_str("FallbackToLogsOnError"), &rc);
	return built(c, rc);
}

/* The list under key, created (before key `before`) when absent or null; NULL and
 * *rc = -EINVAL when it is something else, such as an alias we do not follow. */
static struct kyaml_node *list_at(struct kyaml_node *map, const char *key, const char *before, int *rc)
{
	struct kyaml_node *v = kyaml_get(map, key);
	if (v && v->kind == KYAML_SEQ)
		return v;
	bool null = v && v->kind == KYAML_SCALAR && !v->tag && v->style == YAML_PLAIN_SCALAR_STYLE &&
		    (!v->len || kyaml_is(v, "null") || kyaml_is(v, "~") || kyaml_is(v, "Null") || kyaml_is(v, "NULL"));
	if (v && !null) {
		if (!*rc)
			*rc = -EINVAL;
		return NULL;
	}
	kyaml_put_before(map, before, key, kyaml_seq(), rc);
	return *rc ? NULL : kyaml_get(map, key);
}

/* Put item into seq where an item with the same name is, or at the end. */
static void seq_upsert(struct kyaml_node *seq, const char *name, struct kyaml_node *item, int *rc)
{
	long i = kyaml_find(seq, "name", name);
	if (i < 0) {
		kyaml_push(seq, item, rc);
		return;
	}
	kyaml_free(kyaml_take(seq, (size_t)i));
	kyaml_insert(seq, (size_t)i, item, rc);
}

/* Drop the mounts named INJECT_VOL_PREFIX* from container c except `keep`, and the
 * volumeMounts key when nothing else was in it. */
static void strip_our_mounts(struct kyaml_node *c, const char *keep)
{
	struct kyaml_node *seq = kyaml_get(c, "volumeMounts");
	size_t removed = 0;
	for (size_t i = 0; seq && seq->kind == KYAML_SEQ && i < seq->n;) {
		const char *name = kyaml_text(kyaml_get(seq->kids[i], "name"));
		if (name && strncmp(name, INJECT_VOL_PREFIX, strlen(INJECT_VOL_PREFIX)) == 0 &&
		    !(keep && strcmp(name, keep) == 0)) {
			kyaml_free(kyaml_take(seq, i));
			removed++;
		} else {
			i++;
		}
	}
	if (removed && seq->n == 0)
		kyaml_del(c, "volumeMounts");
}

static void put_volumes(const struct inject_opts *o, struct kyaml_node *spec, bool own_sock, int *rc)
{
	struct kyaml_node *vols = list_at(spec, "volumes", NULL, rc);
	const char *keep[4] = { VOL_TLS, VOL_RUN, o->config_map ? VOL_CONF : NULL, own_sock ? VOL_SOCK : NULL };
	for (size_t i = 0; vols && i < vols->n;) { /* ours that this run does not add */
		const char *name = kyaml_text(kyaml_get(vols->kids[i], "name"));
		bool stale = name && strncmp(name, INJECT_VOL_PREFIX, strlen(INJECT_VOL_PREFIX)) == 0;
		for (int k = 0; stale && k < 4; k++)
			stale = !(keep[k] && strcmp(name, keep[k]) == 0);
		if (stale)
			kyaml_free(kyaml_take(vols, i));
		else
			i++;
	}
	seq_upsert(vols, VOL_TLS, pair("name", kyaml_str(VOL_TLS), "secret",
				       pair("secretName", kyaml_str(o->secret), NULL, NULL)), rc);
	seq_upsert(vols, VOL_RUN, pair("name", kyaml_str(VOL_RUN), "emptyDir",
				       pair("medium", kyaml_str("Memory"), "sizeLimit", kyaml_str("1Mi"))), rc);
	if (o->config_map)
		seq_upsert(vols, VOL_CONF, pair("name", kyaml_str(VOL_CONF), "configMap",
						pair("name", kyaml_str(o->config_map), NULL, NULL)), rc);
	if (own_sock)
		seq_upsert(vols, VOL_SOCK, pair("name", kyaml_str(VOL_SOCK), "emptyDir",
						pair("medium", kyaml_str("Memory"), "sizeLimit", kyaml_str("1Mi"))), rc);
}

/* Share the unix socket directory with the pooler: reuse a volume it already mounts
 * there, else mount ours. Sets *sock_vol to the volume the sidecar mounts. */
static void put_pooler_mount(const struct inject_opts *o, struct kyaml_node *pooler, const char **sock_vol,
			     int *rc)
{
	struct kyaml_node *mounts = kyaml_get(pooler, "volumeMounts");
	long at = kyaml_find(mounts, "mountPath", o->sock_dir);
	const char *name = at >= 0 ? kyaml_text(kyaml_get(mounts->kids[at], "name")) : NULL;
	*sock_vol = NULL;
	if (!o->sock_dir[0]) {
		strip_our_mounts(pooler, NULL);
		return;
	}
	if (name && strncmp(name, INJECT_VOL_PREFIX, strlen(INJECT_VOL_PREFIX)) != 0) {
		strip_our_mounts(pooler, NULL);
		*sock_vol = name;
		return;
	}
	strip_our_mounts(pooler, VOL_SOCK);
	mounts = list_at(pooler, "volumeMounts", NULL, rc);
	seq_upsert(mounts, VOL_SOCK, mount(VOL_SOCK, o->sock_dir, false), rc);
	*sock_vol = VOL_SOCK;
}

/* Take our container out of containers and initContainers; remember where it was.
 * An initContainers list left empty goes too when the sidecar moves to containers. */
static void remove_sidecar(struct kyaml_node *spec, bool legacy, bool *was_init, long *was_at)
{
	static const char *const lists[] = { "initContainers", "containers" };
	*was_at = -1;
	for (int l = 0; l < 2; l++) {
		struct kyaml_node *seq = kyaml_get(spec, lists[l]);
		long i;
		while ((i = kyaml_find(seq, "name", INJECT_NAME)) >= 0) {
			kyaml_free(kyaml_take(seq, (size_t)i));
			if (*was_at < 0) {
				*was_at = i;
				*was_init = l == 0;
			}
		}
		if (l == 0 && legacy && *was_at >= 0 && seq->n == 0)
			kyaml_del(spec, "initContainers");
	}
}

/* The pooler container, after checking that no container already uses our ports. */
static int find_pooler(const struct inject_opts *o, struct kyaml_node *spec, struct kyaml_node **pooler,
		       const char *what, char *err, size_t errlen)
{
	struct kyaml_node *cs = kyaml_get(spec, "containers");
	if (!cs || cs->kind != KYAML_SEQ || cs->n == 0 || cs->kids[0]->kind != KYAML_MAP)
		return fail(err, errlen, -EINVAL, "%s: the pod spec has no containers", what);
	for (size_t i = 0; i < cs->n; i++) {
		struct kyaml_node *ports = kyaml_get(cs->kids[i], "ports");
		for (size_t p = 0; ports && ports->kind == KYAML_SEQ && p < ports->n; p++) {
			const char *num = kyaml_text(kyaml_get(ports->kids[p], "containerPort"));
			if (num && (atoi(num) == o->listen_port || atoi(num) == o->metrics_port))
				return fail(err, errlen, -EINVAL, "%s: container '%s' already uses port %s, which "
					    "the sidecar needs (--listen-port %d, --metrics-port %d)", what,
					    kyaml_text(kyaml_get(cs->kids[i], "name")) ?: "?", num,
					    o->listen_port, o->metrics_port);
		}
	}
	long i = o->container ? kyaml_find(cs, "name", o->container) : 0;
	if (i < 0)
		return fail(err, errlen, -EINVAL, "%s: no container named '%s' (--container)", what, o->container);
	*pooler = cs->kids[i];
	return 0;
}

int inject_pod_spec(const struct inject_opts *o, struct kyaml_node *spec, const char *what, char *err,
		    size_t errlen)
{
	struct kyaml_node *pooler = NULL, *list;
	const char *sock_vol = NULL;
	bool was_init = false;
	long was_at;
	int rc = 0;
	if (!spec || spec->kind != KYAML_MAP)
		return fail(err, errlen, -EINVAL, "%s: the pod spec is not a mapping (aliases are not followed)",
			    what);
	remove_sidecar(spec, o->legacy, &was_init, &was_at);
	if ((rc = find_pooler(o, spec, &pooler, what, err, errlen)))
		return rc;
	for (size_t i = 0; (list = kyaml_get(spec, "containers")) && i < list->n; i++)
		if (list->kids[i] != pooler)
			strip_our_mounts(list->kids[i], NULL);
	put_pooler_mount(o, pooler, &sock_vol, &rc);
	struct kyaml_node *c = build_container(o, sock_vol);
	list = o->legacy ? kyaml_get(spec, "containers") : list_at(spec, "initContainers", "containers", &rc);
	if (was_at >= 0 && was_init == !o->legacy)
		kyaml_insert(list, (size_t)was_at, c, &rc);
	else
		kyaml_push(list, c, &rc);
	put_volumes(o, spec, sock_vol && strcmp(sock_vol, VOL_SOCK) == 0, &rc);
	if (rc == -EINVAL)
		return fail(err, errlen, rc, "%s: initContainers, volumes or volumeMounts is neither a list nor "
			    "empty", what);
	return rc ? fail(err, errlen, rc, "out of memory") : 0;
}
