// SPDX-License-Identifier: MIT
// Entry point: subcommands (run, check, version), configuration, engine selection
// with the epoll fallback, listeners, workers, and signal handling.
#include "sidecar.h"

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "handshake.h"
#include "inject.h"
#include "ktls.h"
#include "log.h"

#ifndef KS_VERSION
#define KS_VERSION "0.1.0-dev"
#endif

extern char **environ;

static void usage(FILE *f)
{
	fprintf(f, "ktls-sidecar %s: TLS terminator for PostgreSQL poolers (kernel TLS + io_uring)\n\n"
		   "Usage:\n"
		   "  ktls-sidecar run --cert FILE --key FILE [--listen ADDR:PORT] [--backend HOST:PORT|unix:PATH] [options]\n"
		   "  ktls-sidecar ctl [--admin-socket PATH | --config FILE] show info|stats|workers|conns [json] | reload | drain [S]\n"
		   "  ktls-sidecar check [options of run] [--client-cert FILE [--pg-user NAME]]   (test a configuration)\n"
		   "  ktls-sidecar inject [options] [FILE...]   (add the sidecar to Kubernetes YAML)\n"
		   "  ktls-sidecar version\n"
		   "  ktls-sidecar help\n\n",
		KS_VERSION);
	config_usage(f);
}

/* io_uring may be compiled out, disabled by sysctl or blocked by seccomp. */
static int uring_usable(char *why, size_t whylen)
{
	struct io_uring ring;
	int rc = io_uring_queue_init(4, &ring, 0);
	if (rc) {
		snprintf(why, whylen, "io_uring_setup: %s", strerror(-rc));
		return rc;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

static int choose_engine(struct sidecar *sc)
{
	char why[128];
	int io = sc->cfg->io;
	if (io == IO_EPOLL) {
		sc->engine_kind = ENGINE_EPOLL;
		snprintf(sc->engine_why, sizeof(sc->engine_why), "forced by --io=epoll");
		return 0;
	}
	int rc = uring_usable(why, sizeof(why));
	if (!rc) {
		sc->engine_kind = ENGINE_URING;
		return 0;
	}
	if (io == IO_URING) {
		log_error("main", "io_uring required (--io=uring) but unavailable", "reason=\"%s\"", why);
		return rc;
	}
	sc->engine_kind = ENGINE_EPOLL;
	snprintf(sc->engine_why, sizeof(sc->engine_why), "%s", why);
	log_warn("main", "io_uring unavailable, using the epoll engine", "reason=\"%s\"", why);
	return 0;
}

/* --ktls: auto uses kTLS where the kernel has it, on refuses to start without it. */
static int load_tls(struct sidecar *sc)
{
	char err[512];
	int rc = control_load_tls(sc, sc->cfg, NULL, &sc->hs, err, sizeof(err));
	if (rc)
		log_error("main", "TLS setup failed", "error=\"%s\"", err);
	else if (hs_ctx_expired(sc->hs))
		log_warn("main", "the server certificate has expired", "not_after=\"%s\"", hs_ctx_not_after(sc->hs));
	else if (hs_ctx_not_before(sc->hs))
		log_warn("main", "the server certificate is not valid yet (clients will refuse it; is the clock right?)",
			 "not_before=\"%s\"", hs_ctx_not_before(sc->hs));
	if (!rc) {
		control_warn_crls(sc->hs, "main");
		atomic_store(&sc->users_bound, hs_ctx_user_match(sc->hs) != HS_USER_ANY);
		if (sc->cfg->client_user_match == USER_MATCH_CN)
			log_info("main", "clients log in only as their certificate's CN", "client_user_match=cn");
		else if (sc->cfg->client_user_match == USER_MATCH_MAP)
			log_info("main", "clients log in only as the users the map gives their certificate",
				 "client_user_match=map client_user_map=\"%s\" rules=%d", sc->cfg->client_user_map,
				 hs_ctx_user_map_rules(sc->hs));
	}
	return rc;
}

static int choose_ktls(struct sidecar *sc)
{
	char why[128];
	if (sc->cfg->ktls == KTLS_OFF) {
		snprintf(sc->ktls_why, sizeof(sc->ktls_why), "disabled by --ktls=off");
		return 0;
	}
	int rc = ktls_probe(why, sizeof(why));
	if (!rc) {
		sc->ktls = 1;
		return 0;
	}
	snprintf(sc->ktls_why, sizeof(sc->ktls_why), "%s", why);
	if (sc->cfg->ktls == KTLS_ON) {
		log_error("main", "kTLS required (--ktls=on) but unavailable", "reason=\"%s\"", why);
		return rc;
	}
	log_warn("main", "kTLS unavailable, connections use userspace TLS", "reason=\"%s\"", why);
	return 0;
}

/* --pin-cpus: worker N gets the Nth CPU this process may run on (a cpuset in a pod
 * may allow only some), wrapping around; its listener asks the kernel for the
 * connections whose packets are processed on that CPU (SO_INCOMING_CPU, which
 * picks among SO_REUSEPORT listeners since Linux 6.1). */
static void assign_cpus(struct sidecar *sc)
{
	cpu_set_t set;
	int cpus[CPU_SETSIZE], n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				cpus[n++] = c;
	if (!n) {
		log_warn("main", "cannot read the allowed CPUs, not pinning", "error=\"%s\"", strerror(errno));
		return;
	}
	for (int i = 0; i < sc->nworkers; i++) {
		struct worker *w = &sc->workers[i];
		w->cpu = cpus[i % n];
		if (setsockopt(w->listen_fd, SOL_SOCKET, SO_INCOMING_CPU, &w->cpu, sizeof(w->cpu)) < 0)
			log_warn("main", "SO_INCOMING_CPU refused: connections spread by hash",
				 "worker=%d cpu=%d error=\"%s\"", i, w->cpu, strerror(errno));
	}
}

/* Each connection holds two sockets (six with --relay splice): take the hard open-files
 * limit, not the soft one (often 1024), and say so when --max-conns cannot fit in it. */
static void raise_nofile(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	unsigned long long need = 2ULL * (unsigned)cfg->max_conns;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		log_warn("main", "the open-files limit is below what --max-conns needs: connections past it fail",
			 "nofile=%llu max_conns=%d needs=%llu", (unsigned long long)rl.rlim_cur, cfg->max_conns, need);
}

/* The listen and backend addresses, resolved and checked, nothing bound yet. */
static int resolve_addresses(struct sidecar *sc)
{
	char err[256];
	if (net_resolve(sc->cfg->listen, &sc->listen, &sc->listen_len, err, sizeof(err))) {
		log_error("main", "bad listen address", "error=\"%s\"", err);
		return -EINVAL;
	}
	sc->nbackends = net_resolve_all(sc->cfg->backend, sc->backends, KS_MAX_BACKENDS, err, sizeof(err));
	if (sc->nbackends < 0) {
		log_error("main", "bad backend address", "error=\"%s\"", err);
		return -EINVAL;
	}
	snprintf(sc->backend_desc, sizeof(sc->backend_desc), "%s", sc->cfg->backend);
	for (int i = 0; i < sc->nbackends; i++) { /* ::1 from /etc/hosts where IPv6 is off */
		int fd = socket(sc->backends[i].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		if (errno != EAFNOSUPPORT)
			continue;
		char one[64];
		net_addr_str(&sc->backends[i].ss, one, sizeof(one));
		log_info("main", "a backend address this host cannot use is left out", "backend=%s address=%s error=\"%s\"",
			 sc->cfg->backend, one, strerror(EAFNOSUPPORT));
		memmove(&sc->backends[i], &sc->backends[i + 1], sizeof(sc->backends[0]) * (size_t)(sc->nbackends - i - 1));
		sc->nbackends--, i--;
	}
	if (!sc->nbackends) {
		log_error("main", "bad backend address", "error=\"%s: no address of a family this host supports\"",
			  sc->cfg->backend);
		return -EAFNOSUPPORT;
	}
	for (int i = 0; i < sc->nbackends; i++) {
		if (net_same_endpoint(&sc->listen, &sc->backends[i].ss)) {
			log_error("main", "the backend is the sidecar's own listening address: every connection would loop",
				  "listen=%s backend=%s", sc->cfg->listen, sc->cfg->backend);
			return -EINVAL;
		}
	}
	if (sc->nbackends > 1) { /* localhost: ::1 first, where the pooler may listen on 127.0.0.1 only */
		char list[KS_MAX_BACKENDS * 56] = "", one[56];
		for (int i = 0; i < sc->nbackends; i++) {
			net_addr_str(&sc->backends[i].ss, one, sizeof(one));
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "", one);
		}
		log_info("main", "the backend has several addresses: each connection tries them in turn, from the last that took one",
			 "backend=%s addresses=%s", sc->cfg->backend, list);
	}
	return 0;
}

static int open_listeners(struct sidecar *sc)
{
	int rc = resolve_addresses(sc);
	if (rc)
		return rc;
	rc = net_port_free(&sc->listen, sc->listen_len);
	if (rc) {
		log_error("main", "cannot listen", "listen=%s error=\"%s\"%s", sc->cfg->listen, strerror(-rc),
			  rc == -EADDRINUSE ? " hint=\"another process (another ktls-sidecar?) listens there\"" : "");
		return rc;
	}
	for (int i = 0; i < sc->nworkers; i++) {
		sc->workers[i].sc = sc;
		sc->workers[i].id = i;
		sc->workers[i].cpu = -1;
		sc->workers[i].listen_fd = net_listen(&sc->listen, sc->listen_len);
		if (sc->workers[i].listen_fd < 0) {
			log_error("main", "cannot listen", "listen=%s error=\"%s\"", sc->cfg->listen,
				  strerror(-sc->workers[i].listen_fd));
			return sc->workers[i].listen_fd;
		}
		const struct config *c = sc->cfg;
		rc = net_keepalive(sc->workers[i].listen_fd, c->tcp_keepalive_ms / 1000, c->tcp_keepalive_intvl_ms / 1000,
				   c->tcp_keepalive_cnt);
		if (rc) {
			log_error("main", "cannot set TCP keepalive on the listener", "listen=%s error=\"%s\"",
				  sc->cfg->listen, strerror(-rc));
			return rc;
		}
	}
	if (sc->cfg->pin_cpus)
		assign_cpus(sc);
	return 0;
}

/* A name, or a number as in a container's runAsUser/runAsGroup: 1 and the id if s
 * is all digits. */
static int numeric_id(const char *s, unsigned *id)
{
	char *end;
	errno = 0;
	unsigned long v = *s >= '0' && *s <= '9' ? strtoul(s, &end, 10) : 0;
	if (!(*s >= '0' && *s <= '9') || *end || errno || v > 0xfffffffeUL)
		return 0;
	*id = (unsigned)v;
	return 1;
}

static struct group *find_group(const char *name)
{
	unsigned id;
	struct group *g = getgrnam(name);
	if (!g && numeric_id(name, &id))
		g = getgrgid((gid_t)id);
	return g;
}

static struct passwd *find_user(const char *name)
{
	unsigned id;
	struct passwd *pw = getpwnam(name);
	if (!pw && numeric_id(name, &id))
		pw = getpwuid((uid_t)id);
	return pw;
}

static int set_admin_group(struct admin *adm, const char *name)
{
	struct group *g = find_group(name);
	if (!g) {
		log_error("main", "cannot give the admin socket to the group: no such group", "group=\"%s\"", name);
		return -ENOENT;
	}
	int rc = admin_set_group(adm, g->gr_gid);
	if (rc)
		log_error("main", "cannot give the admin socket to the group", "group=\"%s\" error=\"%s\"", name,
			  strerror(-rc));
	return rc;
}

/* Give up root once the sockets are bound and the key is read. */
static int drop_privileges(const char *user, struct admin *adm)
{
	struct passwd *pw = find_user(user);
	if (!pw) { /* the group to take comes from the passwd entry */
		log_error("main", "no such user (a name, or a uid with a passwd entry)", "user=\"%s\"", user);
		return -ENOENT;
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid && getgid() == pw->pw_gid &&
	    getegid() == pw->pw_gid && pw->pw_uid != 0 && setuid(0) < 0) {
		/* started as that user and group already (a container's runAsUser), with no
		 * way back to root: nothing to drop */
		log_info("main", "already running as the --user", "user=\"%s\" uid=%u gid=%u", user,
			 (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
		return 0;
	}
	/* the admin socket accepts its owner's uid: hand it to the new identity */
	int rc = admin_set_owner(adm, pw->pw_uid);
	if (rc)
		log_warn("main", "cannot chown the admin socket", "error=\"%s\"", strerror(-rc));
	/* the user's groups, so that a key readable through one (ssl-cert) still reloads */
	if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0 ||
	    (pw->pw_uid != 0 && setuid(0) == 0)) {
		log_error("main", "cannot drop privileges", "user=\"%s\" error=\"%s\"", user, strerror(errno));
		return -EPERM;
	}
	log_info("main", "dropped privileges", "user=\"%s\" uid=%u gid=%u", user, (unsigned)pw->pw_uid,
		 (unsigned)pw->pw_gid);
	return 0;
}

/* The files a reload reads again: what the watch follows and the --user must reach. */
#define RELOAD_FILES(c) { (c)->cert, (c)->key, (c)->client_ca, (c)->client_crl, (c)->client_user_map, (c)->config_file }

/* After dropping root: say now, not at the first certificate rotation, that a file
 * a reload reads again is out of the new user's reach. */
static void check_reload_access(const struct config *c)
{
	const char *paths[] = RELOAD_FILES(c);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (paths[i] && paths[i][0] && access(paths[i], R_OK) < 0)
			log_warn("main", "the --user cannot read this file: reloads cannot use it", "user=\"%s\" file=\"%s\" error=\"%s\"",
				 c->user, paths[i], strerror(errno));
}

static int workers_running(struct sidecar *sc)
{
	for (int i = 0; i < sc->nworkers; i++)
		if (!__atomic_load_n(&sc->workers[i].exited, __ATOMIC_ACQUIRE))
			return 1;
	return 0;
}

/* The names an event must carry to count: every component of the watched paths
 * (and kubelet's "..data" and friends); changes to other files in a shared
 * directory such as /etc do not reload. */
static struct {
	char v[64][NAME_MAX + 1];
	size_t n;
} watch_names;

static void watch_name_add(const char *path, size_t len)
{
	size_t start = len;
	while (start && path[start - 1] != '/')
		start--;
	if (len == start)
		return;
	for (size_t i = 0; i < watch_names.n; i++)
		if (strlen(watch_names.v[i]) == len - start && memcmp(watch_names.v[i], path + start, len - start) == 0)
			return;
	if (watch_names.n < sizeof(watch_names.v) / sizeof(watch_names.v[0]))
		snprintf(watch_names.v[watch_names.n++], sizeof(watch_names.v[0]), "%.*s", (int)(len - start),
			 path + start);
}

static int watch_name_wanted(const struct inotify_event *ev)
{
	if (!ev->len || !ev->name[0] || strncmp(ev->name, "..", 2) == 0)
		return 1; /* the directory itself, or a Kubernetes volume's ..data swap */
	for (size_t i = 0; i < watch_names.n; i++)
		if (strcmp(ev->name, watch_names.v[i]) == 0)
			return 1;
	return 0;
}

/* Watch a directory (following a symlink to it); quiet after the first time. */
static void watch_dir(int fd, const char *dir, int quiet)
{
	if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
					       IN_DELETE_SELF | IN_MOVE_SELF) < 0 &&
	    !quiet)
		log_warn("main", "cannot watch a directory for certificate changes", "dir=\"%s\" error=\"%s\"", dir,
			 strerror(errno));
}

/* dirname() into out, "." for a bare name. */
static void dir_of(const char *path, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", path);
	char *slash = strrchr(out, '/');
	if (slash)
		*(slash == out ? slash + 1 : slash) = 0;
	else
		snprintf(out, outlen, ".");
}

/* Every directory where a change can change what path names: its own directory
 * and the one above (a directory renamed away and replaced by a new one), the one
 * holding each symlink on the way (a Secret item in a subdirectory is
 * certs -> ..data/certs, and kubelet swaps ..data in the volume's top), and the
 * directory of the file it finally resolves to (certbot's live/ -> archive/). */
static void watch_path(int fd, const char *path, int quiet)
{
	char dir[PATH_MAX], up[PATH_MAX], prefix[PATH_MAX], real[PATH_MAX];
	struct stat st;
	dir_of(path, dir, sizeof(dir));
	watch_dir(fd, dir, quiet);
	dir_of(dir, up, sizeof(up));
	if (strcmp(up, dir))
		watch_dir(fd, up, 1);
	size_t len = strnlen(path, sizeof(prefix) - 1);
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		watch_name_add(path, i);
		snprintf(prefix, sizeof(prefix), "%.*s", (int)i, path);
		if (lstat(prefix, &st) == 0 && S_ISLNK(st.st_mode)) {
			dir_of(prefix, dir, sizeof(dir));
			watch_dir(fd, dir, 1);
		}
	}
	if (realpath(path, real)) {
		dir_of(real, dir, sizeof(dir));
		watch_dir(fd, dir, 1);
		watch_name_add(real, strlen(real));
	}
}

/* Watch what the TLS settings in service read: certificate, key, client CA, CRL and the
 * configuration file. Kubernetes swaps the ..data symlink of a mounted Secret or
 * ConfigMap atomically, which shows up as IN_MOVED_TO. Set up before dropping root
 * (inotify needs read access to a directory such as /etc/ssl/private), and again
 * after each reload, since a watch that followed a symlink ends with its target. */
static int watch_certs(struct sidecar *sc, int fd, int quiet)
{
	if (!sc->cfg->watch_certs)
		return -1;
	if (fd < 0 && (fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		log_warn("main", "cannot watch certificate files", "error=\"%s\"", strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&sc->reload_lock);
	const struct config *c = sc->tls_cfg;
	const char *paths[] = RELOAD_FILES(c);
	watch_names.n = 0;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (paths[i] && paths[i][0])
			watch_path(fd, paths[i], quiet);
	pthread_mutex_unlock(&sc->reload_lock);
	return fd;
}

/* True if the watch saw a change to a file that matters (events are drained). */
static int certs_changed(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int changed = 0;
	ssize_t n;
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			changed |= watch_name_wanted(ev);
			p += sizeof(*ev) + ev->len;
		}
	}
	return changed;
}

/* SIGTERM drains (--drain-timeout), SIGINT drains with no grace, SIGHUP or a
 * change in the certificate directory reloads certificates (after a quiet
 * half second, so a multi-file update is seen whole). Returns once every worker
 * has finished: 0, or 1 if one failed. */
static int wait_for_signals(struct sidecar *sc, int wfd)
{
	sigset_t set;
	char msg[512];
	uint64_t reload_at = 0, crl_check_at = 0;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	while (workers_running(sc)) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000000L };
		int sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("main", "shutting down", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
			(void)control_drain(sc, sig == SIGTERM ? sc->cfg->drain_timeout_ms : 0);
		} else if (sig == SIGHUP) {
			control_reload(sc, msg, sizeof(msg));
		}
		if (certs_changed(wfd))
			reload_at = now_monotonic_ms() + 500;
		if (reload_at && now_monotonic_ms() >= reload_at) {
			reload_at = 0;
			log_info("main", "watched files changed, reloading", "%s", "");
			control_reload(sc, msg, sizeof(msg));
		}
		if (wfd >= 0 && atomic_exchange(&sc->watch_dirty, 0))
			watch_certs(sc, wfd, 1); /* quiet: a root-made watch outlives an EACCES here */
		if (now_monotonic_ms() >= crl_check_at) {
			crl_check_at = now_monotonic_ms() + 1000;
			control_check_crls(sc);
		}
	}
	if (wfd >= 0)
		close(wfd);
	return atomic_load(&sc->stopping) ? 1 : 0;
}




/* ctl's socket: --admin-socket, else $KTLS_SIDECAR_ADMIN_SOCKET, else admin-socket in
 * the config file (--config or $KTLS_SIDECAR_CONFIG), else the default. */
static int ctl_socket(const char *flag, const char *conf, char *out, size_t outlen)
{
	const char *env = getenv("KTLS_SIDECAR_ADMIN_SOCKET");
	if (!conf || !*conf)
		conf = getenv("KTLS_SIDECAR_CONFIG");
	if (flag || (env && *env) || !conf || !*conf) {
		snprintf(out, outlen, "%s", flag ? flag : env && *env ? env : "/run/ktls-sidecar/admin.sock");
		return 0;
	}
	struct config c;
	char err[CONFIG_ERR_LEN];
	config_init(&c);
	int rc = config_load_file(&c, conf, err, sizeof(err));
	if (rc)
		fprintf(stderr, "ktls-sidecar ctl: %s\n", err);
	else
		snprintf(out, outlen, "%s", c.admin_socket);
	config_free(&c);
	return rc;
}

static int cmd_ctl(int argc, char **argv)
{
	const char *flag = NULL, *conf = NULL;
	char cmd[1024] = "", path[PATH_MAX];
	for (int i = 0; i < argc; i++) {
		const char **opt = strncmp(argv[i], "--admin-socket", 14) == 0 ? &flag
				   : strncmp(argv[i], "--config", 8) == 0   ? &conf
									    : NULL;
		const char *rest = opt ? argv[i] + (opt == &flag ? 14 : 8) : NULL;
		if (opt && *rest == '=') {
			*opt = rest + 1;
			continue;
		}
		if (opt && !*rest) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ktls-sidecar ctl: %s needs a value\n", argv[i]);
				return 2;
			}
			*opt = argv[++i];
			continue;
		}
		size_t n = strlen(cmd);
		if (snprintf(cmd + n, sizeof(cmd) - n, "%s%s", n ? " " : "", argv[i]) >= (int)(sizeof(cmd) - n)) {
			fprintf(stderr, "ktls-sidecar ctl: command too long\n");
			return 2;
		}
	}
	if (!cmd[0] || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		printf("usage: ktls-sidecar ctl [--admin-socket PATH | --config FILE] COMMAND\n"
		       "commands: show info|stats|workers|conns [json], reload, drain [TIMEOUT], help\n"
		       "socket: --admin-socket, else $KTLS_SIDECAR_ADMIN_SOCKET, else admin-socket in the config file\n"
		       "(--config or $KTLS_SIDECAR_CONFIG), else /run/ktls-sidecar/admin.sock\n");
		return cmd[0] ? 0 : 2;
	}
	if (ctl_socket(flag, conf, path, sizeof(path)))
		return 2;
	if (!path[0]) {
		fprintf(stderr, "ktls-sidecar ctl: the admin socket is disabled (admin-socket = \"\")\n");
		return 2;
	}
	return admin_ctl(path, cmd, stdout) ? 1 : 0;
}

/* The configuration of run and check, with logging set up as it says and its start-up
 * warnings logged. 0, 1 when --help was asked, -1 on an error (printed). */
static int load_config(struct config *cfg, int argc, char **argv, const char *cmd)
{
	char err[CONFIG_ERR_LEN];
	config_init(cfg);
	int rc = config_load_all(cfg, argc, argv, environ, err, sizeof(err));
	if (rc == -EAGAIN)
		return 1;
	if (rc) {
		fprintf(stderr, "ktls-sidecar%s: error: %s\n", cmd, err);
		return -1;
	}
	enum log_level lvl;
	log_level_parse(cfg->log_level, &lvl);
	log_set_level(lvl);
	log_set_json(strcmp(cfg->log_format, "json") == 0);
	if (cfg->verify == VERIFY_OPTIONAL && (cfg->allow_cn.n || cfg->allow_dns.n || cfg->allow_uri.n))
		log_warn("main", "--verify optional: clients without a certificate are admitted; the allow-lists "
				 "apply to certificates presented (--verify require to admit only listed clients)",
			 "%s", "");
	if (cfg->allow_plaintext && !cfg->plain_cancel)
		log_warn("main", "--allow-plaintext with --no-plain-cancel: plaintext sessions cannot be cancelled", "%s",
			 "");
	if (cfg->idle_tx_timeout_ms && cfg->relay == RELAY_SPLICE)
		log_warn("main", "--idle-in-transaction-timeout does not apply to sessions relayed by splice (kTLS): "
				 "the sidecar does not see their transaction status", "%s", "");
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static struct config cfg;
	static struct sidecar sc;
	int rc = load_config(&cfg, argc, argv, "");
	if (rc > 0) {
		usage(stdout);
		return 0;
	}
	if (rc)
		return 2;
	signal(SIGPIPE, SIG_IGN);

	sc.cfg = sc.tls_cfg = &cfg;
	sc.argc = argc;
	sc.argv = argv;
	sc.started_ms = now_monotonic_ms();
	sc.nworkers = cfg.workers ? cfg.workers : cpus_default_workers();
	sc.workers = calloc((size_t)sc.nworkers, sizeof(struct worker));
	if (!sc.workers)
		return 1;
	pthread_mutex_init(&sc.hs_lock, NULL);
	pthread_mutex_init(&sc.reload_lock, NULL);
	for (int i = 0; i < sc.nworkers; i++)
		pthread_mutex_init(&sc.workers[i].conns_lock, NULL);
	raise_nofile(&cfg);
	if (choose_ktls(&sc) || load_tls(&sc) || choose_engine(&sc) || open_listeners(&sc))
		return 1;
	struct admin *adm = NULL;
	if ((cfg.admin_socket[0] || cfg.metrics_listen[0]) &&
	    admin_start(cfg.admin_socket, cfg.metrics_listen, &control_ops, &sc, &adm))
		return 1;
	if (cfg.admin_group[0] && set_admin_group(adm, cfg.admin_group)) {
		admin_stop(adm);
		return 1;
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	int wfd = watch_certs(&sc, -1, 0);
	if (cfg.user[0] && drop_privileges(cfg.user, adm)) {
		admin_stop(adm);
		return 1;
	}
	if (cfg.user[0])
		check_reload_access(&cfg);
	if (worker_start_all(&sc)) {
		worker_join_all(&sc);
		admin_stop(adm);
		return 1;
	}
	struct utsname u;
	char cert[512];
	uname(&u);
	pthread_mutex_lock(&sc.hs_lock); /* the admin socket is up: a reload may swap it */
	snprintf(cert, sizeof(cert), "%s", hs_ctx_describe(sc.hs));
	pthread_mutex_unlock(&sc.hs_lock);
	log_info("main", "listening", "listen=%s backend=%s workers=%d io=%s ktls=%s kernel=%s openssl=\"%s\" %s",
		 cfg.listen, cfg.backend, sc.nworkers, sc.engine_kind == ENGINE_URING ? "uring" : "epoll",
		 sc.ktls ? "on" : "off", u.release, hs_openssl_version(), cert);
	int failed = wait_for_signals(&sc, wfd);
	worker_join_all(&sc);
	admin_stop(adm);
	hs_ctx_put(sc.hs);
	free(sc.workers);
	if (sc.tls_cfg != &cfg) {
		config_free(sc.tls_cfg);
		free(sc.tls_cfg);
	}
	config_free(&cfg);
	log_info("main", "stopped", "%s", "");
	return failed;
}

/* Take "--NAME VALUE" or "--NAME=VALUE" out of argv (which keeps the rest, in order)
 * into *value. 0 taken or absent; -1, said on stderr, for a value that is missing,
 * empty or another flag, or a flag given twice. */
static int take_flag(int *argc, char **argv, const char *name, const char **value)
{
	size_t len = strlen(name);
	for (int i = 0; i < *argc; i++) {
		int eq = strncmp(argv[i], name, len) == 0 && argv[i][len] == '=';
		if (!eq && strcmp(argv[i], name))
			continue;
		int used = eq ? 1 : 2;
		const char *v = eq ? argv[i] + len + 1 : i + 1 < *argc ? argv[i + 1] : "";
		if (!*v || *v == '-' || *value) {
			fprintf(stderr, "ktls-sidecar check: %s %s\n", name,
				*value ? "is given twice" : "takes a value (a file or name not starting with '-')");
			return -1;
		}
		*value = v;
		memmove(&argv[i], &argv[i + used], sizeof(*argv) * (size_t)(*argc - i - used + 1));
		*argc -= used;
		i--;
	}
	return 0;
}

/* check's account of what run would serve. 1 when it would refuse clients wholesale:
 * a server certificate not valid now, a client CRL past its next update, or a client
 * CA without a CRL where CRLs are checked (every client of that CA refused); else 0. */
static int print_summary(const struct sidecar *sc, const struct config *cfg)
{
	int stale;
	long long next;
	int crls = hs_ctx_crls(sc->hs, &stale, &next);
	const char *ca;
	int no_crl = hs_ctx_cas_without_crl(sc->hs, &ca);
	int bad_cert = hs_ctx_expired(sc->hs) || hs_ctx_not_before(sc->hs);
	long long left = (hs_ctx_not_after_unix(sc->hs) - (long long)time(NULL)) / 86400;
	printf("configuration: 'run' would start%s\n",
	       bad_cert	 ? ", but clients refuse its certificate"
	       : stale	 ? ", but refuse every client of a CA whose CRL is past its next update"
	       : no_crl ? ", but refuse every client of a client CA that has no CRL in --client-crl"
			 : "");
	printf("  listen: %s (not bound by check)\n  backend: %s\n", cfg->listen, cfg->backend);
	printf("  certificate: %s (%s)\n", hs_ctx_describe(sc->hs),
	       hs_ctx_expired(sc->hs) ? "EXPIRED" : hs_ctx_not_before(sc->hs) ? "NOT VALID YET" : "valid");
	if (!bad_cert && hs_ctx_not_after_unix(sc->hs))
		printf("  certificate expires in: %lld days\n", left);
	printf("  io: %s%s%s%s\n", sc->engine_kind == ENGINE_URING ? "uring" : "epoll", sc->engine_why[0] ? " (" : "",
	       sc->engine_why, sc->engine_why[0] ? ")" : "");
	printf("  ktls: %s%s%s%s\n", sc->ktls ? "on" : "off", sc->ktls_why[0] ? " (" : "", sc->ktls_why,
	       sc->ktls_why[0] ? ")" : "");
	static const char *const verify[] = { "none", "optional", "require" };
	printf("  client certificates: %s", verify[cfg->verify]);
	if (cfg->verify && cfg->client_crl && cfg->client_crl[0])
		printf(", CRLs for %d CA(s) (%d past their next update), client CAs without one: %d%s%s%s", crls, stale,
		       no_crl, no_crl ? " (" : "", no_crl ? ca : "", no_crl ? ")" : "");
	if (hs_ctx_user_match(sc->hs) == HS_USER_CN)
		printf(", users: the subject CN");
	else if (hs_ctx_user_match(sc->hs) == HS_USER_MAP)
		printf(", users: the map's (rules: %d)", hs_ctx_user_map_rules(sc->hs));
	printf("\n");
	return bad_cert || stale || no_crl;
}

/* `check`: everything `run` does before it binds, then a summary; with --client-cert,
 * what a handshake would make of that certificate. 0 fine, 1 not, 2 misuse. */
static int cmd_check(int argc, char **argv)
{
	static struct config cfg;
	static struct sidecar sc;
	const char *client_cert = NULL, *pg_user = NULL;
	if (take_flag(&argc, argv, "--client-cert", &client_cert) || take_flag(&argc, argv, "--pg-user", &pg_user))
		return 2;
	if (pg_user && !client_cert) {
		fprintf(stderr, "ktls-sidecar check: --pg-user needs --client-cert (whose users to look at)\n");
		return 2;
	}
	int rc = load_config(&cfg, argc, argv, " check");
	if (rc > 0) {
		printf("usage: ktls-sidecar check [options of run] [--client-cert FILE [--pg-user NAME]]\n\n"
		       "Reads the configuration as 'run' would (flags, environment, --config file), loads the\n"
		       "certificate, key, client CAs, CRLs and user map, resolves the addresses and probes\n"
		       "io_uring and kTLS, without binding or serving. Exit status 0 when 'run' would start\n"
		       "and serve; 1 when the options are valid but it would not start (a file, an address),\n"
		       "would refuse clients wholesale (a server certificate not valid now, a client CRL past\n"
		       "its next update, a client CA without a CRL), or the client certificate or login asked\n"
		       "about is refused; 2 when the options themselves are wrong, where 'run' exits 2 too.\n"
		       "  --client-cert FILE   also check a client certificate (PEM, then its intermediates) as a\n"
		       "                       handshake would: chain, CRLs, allow-lists, the users it may log in as\n"
		       "  --pg-user NAME       and whether it may log in as this PostgreSQL user (exit 1 if not)\n");
		return 0;
	}
	if (rc)
		return 2; /* as run: the options themselves are wrong */
	sc.cfg = sc.tls_cfg = &cfg;
	rc = choose_ktls(&sc) || load_tls(&sc) || choose_engine(&sc) || resolve_addresses(&sc);
	if (!rc && cfg.user[0] && !find_user(cfg.user)) {
		log_error("main", "no such user (a name, or a uid with a passwd entry)", "user=\"%s\"", cfg.user);
		rc = 1;
	}
	if (!rc && cfg.admin_group[0] && !find_group(cfg.admin_group)) {
		log_error("main", "cannot give the admin socket to the group: no such group", "group=\"%s\"",
			  cfg.admin_group);
		rc = 1;
	}
	if (rc) {
		printf("configuration: refused, 'run' would not start (the reason is on stderr)\n");
		if (sc.hs)
			hs_ctx_put(sc.hs);
		config_free(&cfg);
		return 1;
	}
	rc = print_summary(&sc, &cfg);
	if (client_cert) {
		fflush(stdout);
		if (hs_ctx_check_client(sc.hs, client_cert, pg_user, stdout) != 1)
			rc = 1;
	}
	hs_ctx_put(sc.hs);
	config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) { /* no command: the usage, and a failure for scripts */
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 2, argv + 2);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(cmd, "ctl") == 0)
		return cmd_ctl(argc - 2, argv + 2);
	if (strcmp(cmd, "inject") == 0)
		return inject_main(argc - 2, argv + 2);
	if ((strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) && argc > 2) {
		fprintf(stderr, "ktls-sidecar: version takes no arguments ('%s')\n", argv[2]);
		return 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		char why[128];
		printf("ktls-sidecar %s\n%s\n", KS_VERSION, hs_openssl_version());
		if (uring_usable(why, sizeof(why)) == 0)
			printf("io_uring: available\n");
		else
			printf("io_uring: unavailable (%s)\n", why);
		if (ktls_probe(why, sizeof(why)) == 0)
			printf("ktls: available\n");
		else
			printf("ktls: unavailable (%s)\n", why);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "ktls-sidecar: unknown command '%s' (try 'ktls-sidecar help')\n", cmd);
	return 2;
}
