// SPDX-License-Identifier: MIT
// What operators can ask of the running daemon, through the admin socket or
// signals: snapshots of counters and connections, certificate reload (the old
// context stays if the new one is broken or expired), drain, and readiness.
// Runs on the admin or main thread; talks to workers only through atomics and
// the per-worker connection-list lock.
#include "sidecar.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "handshake.h"
#include "log.h"

#ifndef KS_VERSION
#define KS_VERSION "0.1.0-dev"
#endif

#define COPY_STAT(dst, w, f) ((dst)->f = STAT_GET(w, f))

static void snapshot_worker(struct worker *w, struct admin_worker *aw)
{
	struct admin_counters *c = &aw->c;
	aw->id = w->id;
	aw->cpu = w->cpu;
	aw->engine = w->sc->engine_kind == ENGINE_URING ? "uring" : "epoll";
	struct engine *e = __atomic_load_n(&w->eng, __ATOMIC_ACQUIRE);
	if (e) { /* written by the worker without locks: a relaxed read is enough for stats */
		const struct engine_stats *st = engine_stats(e);
		aw->loops = __atomic_load_n(&st->loops, __ATOMIC_RELAXED);
		aw->enters = __atomic_load_n(&st->enters, __ATOMIC_RELAXED);
		aw->completions = __atomic_load_n(&st->completions, __ATOMIC_RELAXED);
	}
	COPY_STAT(c, w, accepted);
	COPY_STAT(c, w, refused_max);
	COPY_STAT(c, w, active);
	COPY_STAT(c, w, handshakes_ok);
	COPY_STAT(c, w, handshakes_failed);
	COPY_STAT(c, w, cancels);
	COPY_STAT(c, w, backend_connect_failed);
	COPY_STAT(c, w, bytes_c2b);
	COPY_STAT(c, w, bytes_b2c);
	COPY_STAT(c, w, plaintext);
	COPY_STAT(c, w, tls12);
	COPY_STAT(c, w, tls13);
	COPY_STAT(c, w, ktls_tx);
	COPY_STAT(c, w, ktls_rx);
	COPY_STAT(c, w, user_tls);
	COPY_STAT(c, w, active_ktls_tx);
	COPY_STAT(c, w, active_ktls_rx);
	COPY_STAT(c, w, active_user_tls);
	COPY_STAT(c, w, rekey_rx);
	COPY_STAT(c, w, rekey_tx);
	COPY_STAT(c, w, hs_sum_us);
	for (int r = 0; r < CR__COUNT && r < ADMIN_MAX_REASONS; r++)
		c->closed[r] = STAT_GET(w, closed[r]);
	_Static_assert(KS_NSTEPS <= ADMIN_MAX_STEPS, "every kTLS step has a slot in the snapshot");
	_Static_assert(CR__COUNT <= ADMIN_MAX_REASONS, "every close reason has a slot in the snapshot");
	for (int k = 0; k < KS_NSTEPS; k++)
		c->ktls_fallback[k] = STAT_GET(w, ktls_fallback[k]);
	for (int b = 0; b < HS_HIST_BUCKETS && b < ADMIN_HIST_BUCKETS; b++)
		c->hs_hist[b] = STAT_GET(w, hs_hist[b]);
}

static int snapshot(void *ctx, struct admin_snapshot *out)
{
	/* the admin thread is the only caller: static buffers outlive the render */
	static struct utsname u;
	static char subject[256], sans[512], serial[100], not_after[64], reload_at[32], reload_result[768],
		io_features[160], crl_next[32];
	struct sidecar *sc = ctx;
	uname(&u);
	memset(out, 0, sizeof(*out));
	out->workers = calloc((size_t)sc->nworkers, sizeof(*out->workers));
	if (!out->workers)
		return -ENOMEM;
	for (int i = 0; i < sc->nworkers; i++)
		snapshot_worker(&sc->workers[i], &out->workers[i]);
	pthread_mutex_lock(&sc->hs_lock);
	snprintf(subject, sizeof(subject), "%s", hs_ctx_subject(sc->hs));
	snprintf(sans, sizeof(sans), "%s", hs_ctx_sans(sc->hs));
	snprintf(serial, sizeof(serial), "%s", hs_ctx_serial(sc->hs));
	snprintf(not_after, sizeof(not_after), "%s", hs_ctx_not_after(sc->hs));
	out->cert_not_after_unix = hs_ctx_not_after_unix(sc->hs);
	out->client_crls = hs_ctx_crls(sc->hs, &out->client_crls_stale, &out->client_crl_next_update_unix);
	static const char *const user_match[] = { [HS_USER_ANY] = "none", [HS_USER_CN] = "cn", [HS_USER_MAP] = "map" };
	out->client_user_match = user_match[hs_ctx_user_match(sc->hs) % 3];
	int rules = hs_ctx_user_map_rules(sc->hs);
	out->client_user_map_rules = rules < 0 ? 0 : rules;
	snprintf(reload_at, sizeof(reload_at), "%s", sc->reload_at);
	snprintf(reload_result, sizeof(reload_result), "%s", sc->reload_result);
	out->reloads_ok = sc->reloads_ok;
	out->reloads_failed = sc->reloads_failed;
	out->reloads_partial = sc->reloads_partial;
	pthread_mutex_unlock(&sc->hs_lock);
	crl_next[0] = 0;
	if (out->client_crl_next_update_unix > 0) {
		time_t t = (time_t)out->client_crl_next_update_unix;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(crl_next, sizeof(crl_next), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	out->nworkers = sc->nworkers;
	out->version = KS_VERSION;
	out->kernel = u.release;
	out->openssl = hs_openssl_version();
	out->cert = subject;
	out->cert_sans = sans;
	out->cert_serial = serial;
	out->cert_not_after = not_after;
	out->client_crl_next_update = crl_next;
	out->reload_at = reload_at;
	out->reload_result = reload_result;
	out->draining = atomic_load(&sc->draining);
	uint64_t now = now_monotonic_ms(), deadline = atomic_load(&sc->drain_deadline_ms);
	out->drain_left_s = deadline > now ? (double)(deadline - now) / 1000.0 : 0;
	out->io = sc->engine_kind == ENGINE_URING ? "uring" : "epoll";
	out->io_why = sc->engine_why;
	struct engine *e = sc->nworkers ? __atomic_load_n(&sc->workers[0].eng, __ATOMIC_ACQUIRE) : NULL;
	/* set once at creation (and on the multishot fallback): a racy copy is at worst stale */
	snprintf(io_features, sizeof(io_features), "%s", e ? engine_features(e) : "");
	out->io_features = io_features;
	out->ktls = sc->ktls ? "available" : sc->cfg->ktls == KTLS_OFF ? "off" : "unavailable";
	out->ktls_why = sc->ktls_why;
	out->listen = sc->cfg->listen;
	out->backend = sc->cfg->backend;
	out->pid = (long)getpid();
	out->uptime_s = (double)(now_monotonic_ms() - sc->started_ms) / 1000.0;
	out->reason_names = close_reason_names;
	out->nreasons = CR__COUNT;
	out->ktls_step_names = ktls_step_names;
	out->nsteps = KS_NSTEPS;
	return 0;
}

static int conns(void *ctx, struct admin_conn **out, size_t *n)
{
	struct sidecar *sc = ctx;
	/* a generous bound; connections opened meanwhile are simply not listed */
	size_t cap = (size_t)atomic_load(&sc->nconns) + 64, got = 0;
	struct admin_conn *v = calloc(cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (int i = 0; i < sc->nworkers && got < cap; i++)
		got += conn_snapshot(&sc->workers[i], v + got, cap - got);
	*out = v;
	*n = got;
	return 0;
}

int control_load_tls(struct sidecar *sc, const struct config *c, const struct hs_ctx *keep_map, struct hs_ctx **out,
		     char *err, size_t errlen)
{
	_Static_assert((int)USER_MATCH_NONE == (int)HS_USER_ANY && (int)USER_MATCH_CN == (int)HS_USER_CN &&
			       (int)USER_MATCH_MAP == (int)HS_USER_MAP,
		       "--client-user-match passes through as is");
	struct hs_settings s = {
		.cert = c->cert, .key = c->key, .client_ca = c->client_ca, .client_crl = c->client_crl,
		.verify = c->verify, .user_match = c->client_user_match, .user_map = c->client_user_map,
		.keep_map = keep_map,
		.allow_cn = c->allow_cn.v, .n_allow_cn = c->allow_cn.n,
		.allow_dns = c->allow_dns.v, .n_allow_dns = c->allow_dns.n,
		.allow_uri = c->allow_uri.v, .n_allow_uri = c->allow_uri.n,
		.min_tls13 = strcmp(c->min_tls, "1.3") == 0,
		.ciphers = c->ciphers, .ciphersuites = c->ciphersuites,
		.export_keys = sc->ktls,
	};
	return hs_ctx_load(&s, out, err, errlen);
}

/* Record the outcome of a reload for show info. Caller holds hs_lock. */
static void note_reload(struct sidecar *sc, const char *result)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(sc->reload_at, sizeof(sc->reload_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(sc->reload_result, sizeof(sc->reload_result), "%s", result);
}

/* What a reload applies; any other option changed in the file waits for a restart. */
static const char *const reloadable[] = {
	"cert", "key", "client-ca", "client-crl", "verify", "allow-cn", "allow-dns", "allow-uri",
	"client-user-match", "client-user-map", "min-tls-version", "ciphers", "ciphersuites", "log-level", NULL,
};

/* Read the configuration again (the file may have changed; flags and environment
 * cannot) into a new config. 0, or -errno with err. A pipe (--config <(...)) reads
 * empty the second time and an empty file is most likely one being written: taking
 * either would drop client-certificate checks, so they are refused unless nothing
 * would change. */
static int reread_config(struct sidecar *sc, struct config **out, char *err, size_t errlen)
{
	struct config *c = calloc(1, sizeof(*c));
	struct stat st;
	if (!c)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	config_init(c);
	snprintf(err, errlen, "cannot read the configuration");
	/* flags and environment name the same file as at startup; a pipe or FIFO is not
	 * even opened again (its open or read could block this thread for good) */
	const char *path = sc->cfg->config_file;
	int rc = 0;
	if (path && path[0] && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file (a pipe reads once)", path);
		rc = -EINVAL;
	} else if ((rc = config_load_all(c, sc->argc, sc->argv, environ, err, errlen))) {
		rc = rc == -EAGAIN ? -EINVAL : rc;
	} else if (c->config_file && c->config_file[0] && stat(c->config_file, &st) == 0 && st.st_size == 0 &&
		   config_diff(sc->tls_cfg, c, NULL, NULL, 0)) {
		snprintf(err, errlen, "%s: is empty (being written?)", c->config_file);
		rc = -EINVAL;
	}
	if (rc) {
		config_free(c);
		free(c);
		return rc;
	}
	err[0] = 0;
	*out = c;
	return 0;
}

static void config_put(struct sidecar *sc, struct config *c)
{
	if (c && c != sc->cfg) {
		config_free(c);
		free(c);
	}
}

/* Client-certificate checks the new configuration drops, for a warning. */
static void warn_weaker(const struct config *was, const struct config *now)
{
	static const char *const modes[] = { "none", "optional", "require" };
	if (now->verify < was->verify)
		log_warn("control", "the reloaded configuration relaxes client certificate checks",
			 "verify_was=%s verify=%s", modes[was->verify % 3], modes[now->verify % 3]);
	if ((was->allow_cn.n || was->allow_dns.n || was->allow_uri.n) &&
	    !(now->allow_cn.n || now->allow_dns.n || now->allow_uri.n))
		log_warn("control", "the reloaded configuration has no allow-lists: any certificate from the CA "
				    "is admitted", "%s", "");
	if (was->client_user_match != USER_MATCH_NONE && now->client_user_match == USER_MATCH_NONE)
		log_warn("control", "the reloaded configuration has no client-user-match: a client may log in as any "
				    "user, whatever its certificate's CN", "%s", "");
	if (was->client_crl && *was->client_crl && !(now->client_crl && *now->client_crl))
		log_warn("control", "the reloaded configuration has no client CRL: revoked client certificates are "
				    "admitted", "client_crl_was=\"%s\"", was->client_crl);
}

void control_warn_crls(const struct hs_ctx *hs, const char *who)
{
	const char *ca;
	int n = hs_ctx_cas_without_crl(hs, &ca); /* counted only where CRLs were loaded */
	if (n)
		log_warn(who, "a client CA has no CRL in --client-crl: OpenSSL refuses every client certificate it "
			      "signed (\"unable to get certificate CRL\")", "cas_without_crl=%d first=\"%s\"", n, ca);
}

void control_check_crls(struct sidecar *sc)
{
	int stale, n;
	long long next;
	pthread_mutex_lock(&sc->hs_lock);
	n = hs_ctx_crls(sc->hs, &stale, &next);
	pthread_mutex_unlock(&sc->hs_lock);
	if (stale > atomic_load(&sc->crl_stale_warned))
		log_warn("main", "a client CRL is past its next update: OpenSSL refuses every client certificate of its "
				 "CA (\"CRL has expired\") until a newer CRL is loaded", "crls=%d stale=%d", n, stale);
	atomic_store(&sc->crl_stale_warned, stale);
}

int control_reload(struct sidecar *sc, char *msg, size_t msglen)
{
	struct hs_ctx *next = NULL, *old;
	struct config *cfg = NULL;
	char err[512] = "", cfgerr[400] = "", later[256] = "";
	pthread_mutex_lock(&sc->reload_lock);
	/* a configuration that cannot be read again keeps the settings in service, but the
	 * certificates still rotate: a root-only file under --user, a pipe, a typo */
	int cfg_rc = reread_config(sc, &cfg, cfgerr, sizeof(cfgerr));
	if (!cfg_rc && cfg->client_user_match != USER_MATCH_NONE && sc->cfg->allow_plaintext) {
		/* config_finish saw the file's allow-plaintext, not the one in service */
		snprintf(cfgerr, sizeof(cfgerr), "client-user-match: --allow-plaintext is in service until a restart, "
						 "and a plaintext client has no certificate to match");
		config_put(sc, cfg);
		cfg = NULL;
		cfg_rc = -EINVAL;
	}
	int rc = control_load_tls(sc, cfg ? cfg : sc->tls_cfg, NULL, &next, err, sizeof(err)), map_kept = 0;
	if (rc && sc->tls_cfg->client_user_match == USER_MATCH_MAP) {
		/* a map that does not load (a typo, a file --user cannot read) must not hold up
		 * certificate rotation: if the settings in service with the map in service load,
		 * the map was the trouble, and it is kept like a configuration that cannot be read */
		struct hs_ctx *kept = NULL;
		char err2[512];
		if (!control_load_tls(sc, sc->tls_cfg, sc->hs, &kept, err2, sizeof(err2))) {
			snprintf(cfgerr, sizeof(cfgerr), "%s", err);
			map_kept = 1;
			config_put(sc, cfg);
			cfg = NULL;
			cfg_rc = -EINVAL;
			next = kept;
			rc = 0;
		}
	}
	char crls[64] = "";
	if (!rc && hs_ctx_expired(next)) {
		snprintf(err, sizeof(err), "certificate %s expired on %s", hs_ctx_subject(next), hs_ctx_not_after(next));
		rc = -EKEYEXPIRED;
	}
	if (!rc && cfg && config_diff(sc->cfg, cfg, reloadable, later, sizeof(later)))
		log_warn("control", "options changed in the configuration take effect only at restart",
			 "options=\"%s\"", later);
	if (!rc && cfg)
		warn_weaker(sc->tls_cfg, cfg);
	if (!rc)
		control_warn_crls(next, "control");
	if (!rc && hs_ctx_not_before(next))
		log_warn("control", "the reloaded certificate is not valid yet (clients will refuse it; is the clock right?)",
			 "not_before=\"%s\"", hs_ctx_not_before(next));
	pthread_mutex_lock(&sc->hs_lock);
	if (rc) {
		snprintf(msg, msglen, "reload refused, the old certificate and settings stay in service: %s%s%s", err,
			 cfg_rc ? "; configuration not re-read: " : "", cfg_rc ? cfgerr : "");
		note_reload(sc, msg);
		old = next;
		sc->reloads_failed++;
	} else {
		old = sc->hs;
		sc->hs = next; /* new handshakes take it; live ones keep their reference */
		atomic_store(&sc->users_bound, hs_ctx_user_match(next) != HS_USER_ANY);
		atomic_store(&sc->crl_stale_warned, 0); /* a stale CRL still in service is warned about again */
		int stale;
		long long next_update;
		int ncrl = hs_ctx_crls(next, &stale, &next_update), rules = hs_ctx_user_map_rules(next);
		size_t cl = 0;
		if (ncrl)
			cl = (size_t)snprintf(crls, sizeof(crls), " client_crls=%d stale=%d", ncrl, stale);
		if (rules >= 0 && cl < sizeof(crls))
			snprintf(crls + cl, sizeof(crls) - cl, " user_map_rules=%d", rules);
		if (cfg_rc) { /* the reason first: show info keeps the first 767 bytes */
			snprintf(msg, msglen, "%s: %s; certificates reloaded: subject=%s not_after=%s%s",
				 map_kept ? "client user map not taken, it and the settings in service stay"
					  : "configuration not re-read, the settings in service stay",
				 cfgerr, hs_ctx_subject(next), hs_ctx_not_after(next), crls);
			note_reload(sc, msg);
			sc->reloads_partial++;
		} else {
			snprintf(msg, msglen, "reloaded: subject=%s not_after=%s%s%s%s", hs_ctx_subject(next),
				 hs_ctx_not_after(next), crls, later[0] ? "; not applied until restart: " : "", later);
			note_reload(sc, "ok");
			sc->reloads_ok++;
		}
	}
	pthread_mutex_unlock(&sc->hs_lock);
	if (!rc && cfg) {
		enum log_level lvl;
		if (!log_level_parse(cfg->log_level, &lvl))
			log_set_level(lvl);
		struct config *prev = sc->tls_cfg;
		sc->tls_cfg = cfg;
		cfg = prev;
	}
	/* the files to watch may have moved, even where the reload failed: a certificate
	 * directory renamed away comes back empty, and is filled only after */
	atomic_store(&sc->watch_dirty, 1);
	config_put(sc, cfg);
	hs_ctx_put(old);
	if (cfg_rc)
		log_error("control", map_kept ? "client user map not taken; it and the settings in service stay"
					      : "configuration not re-read; the settings in service stay",
			  "error=\"%s\"", cfgerr);
	if (rc)
		log_error("control", "certificate reload failed", "error=\"%s\"", err);
	else
		log_info("control", "certificates reloaded", "%s%s", hs_ctx_describe(next), crls);
	pthread_mutex_unlock(&sc->reload_lock); /* until here no other reload can drop next */
	return rc ? rc : cfg_rc;
}

int control_drain(struct sidecar *sc, int timeout_ms)
{
	uint64_t now = now_monotonic_ms();
	uint64_t deadline = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	uint64_t cur = atomic_load(&sc->drain_deadline_ms);
	int was = atomic_load(&sc->draining);
	/* a second request may only shorten the wait */
	if (!was || deadline < cur)
		atomic_store(&sc->drain_deadline_ms, deadline);
	if (!atomic_exchange(&sc->draining, 1))
		log_info("control", "draining: not accepting; open sessions may finish", "timeout_ms=%d close_idle=%s",
			 timeout_ms, sc->cfg->drain_close_idle ? "true" : "false");
	else if (deadline < cur)
		log_info("control", "drain deadline brought forward", "timeout_ms=%d", timeout_ms);
	uint64_t in_force = atomic_load(&sc->drain_deadline_ms);
	return in_force <= now ? 0 : in_force - now > INT_MAX ? INT_MAX : (int)(in_force - now);
}

static int reload_cb(void *ctx, char *msg, size_t msglen) { return control_reload(ctx, msg, msglen); }

static int drain_cb(void *ctx, int timeout_ms)
{
	struct sidecar *sc = ctx;
	return control_drain(sc, timeout_ms < 0 ? sc->cfg->drain_timeout_ms : timeout_ms);
}

static int ready_done_cb(void *ctx, int rc, int *probe, char *why, size_t whylen);

/* Probe the pooler's address sc->ready_probe: its outcome goes to ready_done_cb, now
 * or (-EINPROGRESS, *probe set) once the connect ends. */
static int probe_address(struct sidecar *sc, int *probe, char *why, size_t whylen)
{
	const struct backend_addr *a = &sc->backends[sc->ready_probe];
	sc->ready_tried++;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc = 0;
	if (fd < 0)
		return ready_done_cb(sc, -errno, probe, why, whylen);
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		if (errno == EINPROGRESS) {
			*probe = fd;
			return -EINPROGRESS;
		}
		rc = -errno;
	}
	close(fd);
	return ready_done_cb(sc, rc, probe, why, whylen);
}

/* A probe ended: ready if the address took the connect (connections then try it
 * first), else the pooler's next address is probed, until each was tried once. */
static int ready_done_cb(void *ctx, int rc, int *probe, char *why, size_t whylen)
{
	struct sidecar *sc = ctx;
	if (atomic_load(&sc->draining)) { /* began while the probe was out */
		snprintf(why, whylen, "draining");
		return -ESHUTDOWN;
	}
	if (!rc) {
		if (atomic_load_explicit(&sc->backend_pref, memory_order_relaxed) != sc->ready_probe)
			atomic_store_explicit(&sc->backend_pref, sc->ready_probe, memory_order_relaxed);
		return 0;
	}
	if (sc->ready_tried < sc->nbackends) {
		sc->ready_probe = (sc->ready_probe + 1) % sc->nbackends;
		return probe_address(sc, probe, why, whylen);
	}
	char addr[128] = "";
	if (sc->nbackends > 1) {
		char last[64];
		net_addr_str(&sc->backends[sc->ready_probe].ss, last, sizeof(last));
		snprintf(addr, sizeof(addr), " (each of its %d addresses failed, the last %s)", sc->nbackends, last);
	}
	snprintf(why, whylen, "backend %s%s: %s", sc->backend_desc, addr,
		 rc == -ETIMEDOUT ? "no answer to a connect within 1 s" : strerror(-rc));
	return rc;
}

/* Ready: not draining, and the pooler accepts a connection at one of its addresses
 * (within a second each: the admin thread waits for the probes without blocking),
 * the one connections use first tried first. */
static int ready_cb(void *ctx, int *probe, char *why, size_t whylen)
{
	struct sidecar *sc = ctx;
	if (atomic_load(&sc->draining)) {
		snprintf(why, whylen, "draining");
		return -ESHUTDOWN;
	}
	sc->ready_probe = atomic_load(&sc->backend_pref);
	sc->ready_tried = 0;
	return probe_address(sc, probe, why, whylen);
}

const struct admin_ops control_ops = {
	.snapshot = snapshot,
	.conns = conns,
	.reload = reload_cb,
	.drain = drain_cb,
	.ready = ready_cb,
	.ready_done = ready_done_cb,
};
