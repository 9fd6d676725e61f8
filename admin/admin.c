// SPDX-License-Identifier: MIT
// The admin unix socket: creating it safely (0600, stale sockets only), one
// poll() thread that serves up to ADMIN_MAX_CLIENTS peers of the daemon's own
// uid or root, and the metrics listener of http.c on the same loop. The client
// side (`ktls-sidecar ctl`) is in ctl.c.
//
// Framing: a client sends commands as lines ending in '\n' (at most
// ADMIN_LINE_MAX bytes before it; a last line may end at EOF instead). Every
// non-blank line gets exactly one answer, in order, and every answer ends with
// an empty line ("...\n\n"); no answer contains an empty line before its end.
// Blank lines get no answer. An answer starting with "ERROR: " is a failure
// (unknown command, snapshot failure), or {"error": for a line ending in "json",
// and the connection stays usable. The
// server closes the connection after answering everything once the client has
// shut down its side, after ADMIN_IDLE_MS without input, after a line that is
// too long, or when an answer cannot be written within ADMIN_SNDTIMEO_MS.
// So `ctl` sends one line, shuts down writing and reads to EOF, while socat
// users may type several commands on one connection.
//
// Sockets are non-blocking: a client that stops reading holds its own slot
// until its deadline, never the thread that also answers /healthz.
#include "admin_int.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_CLIENTS 16
#define ADMIN_IDLE_MS 5000
#define ADMIN_SNDTIMEO_MS 2000

#define MSG_UNKNOWN "unknown command (try 'help')"
#define MSG_NOT_SUPPORTED "not supported"
#define ERR_DENIED "ERROR: permission denied\n\n"
#define ERR_BUSY "ERROR: too many admin clients\n\n"
#define ERR_TOO_LONG "ERROR: line too long\n\n"

/* A failed answer: "ERROR: MSG", or {"error":"MSG"} where JSON was asked for. */
static void answer_error(FILE *f, int json, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void answer_error(FILE *f, int json, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!json) {
		fprintf(f, "ERROR: %s\n", msg);
		return;
	}
	fputs("{\"error\":", f);
	admin_json_str(f, msg);
	fputs("}\n", f);
}

struct admin_client {
	int fd;                        /* -1: free slot */
	unsigned uid;
	int pid;
	int eof;                       /* the peer shut down writing: answer what is left, close */
	int closing;                   /* close once out is sent */
	uint64_t last_ms;              /* last input or answer sent, for the idle timeout */
	uint64_t send_deadline;        /* while out is pending */
	size_t len;
	char buf[ADMIN_LINE_MAX + 1];  /* one line and its '\n' */
	char *out;                     /* the answer being sent, from outoff on */
	size_t outlen, outoff;
};

struct admin {
	char *path;                    /* NULL: no unix socket */
	int lfd, wake_fd;
	dev_t dev;                     /* the socket we bound: stop unlinks only that one */
	ino_t ino;
	const struct admin_ops *ops;
	void *ctx;
	pthread_t thread;
	struct admin_client cl[ADMIN_MAX_CLIENTS];
	struct admin_http http;
	_Atomic long group;            /* -1, or a gid whose members may also connect */
	char *made_dir;                /* the parent directory, when admin_start created it */
};

/* chown the directory admin_start made, never through a symlink put in its place. */
static int chown_made_dir(const struct admin *a, uid_t uid, gid_t gid)
{
	if (!a->made_dir)
		return 0;
	int fd = open(a->made_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
	if (fd < 0 || fchown(fd, uid, gid) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

int admin_set_group(struct admin *a, gid_t gid)
{
	if (!a || !a->path)
		return -EINVAL;
	if (chown(a->path, (uid_t)-1, gid) < 0 || chmod(a->path, 0660) < 0)
		return -errno;
	/* the directory we made (0750) must let the group through too */
	int rc = chown_made_dir(a, (uid_t)-1, gid);
	if (rc)
		return rc;
	char *dup = a->made_dir ? NULL : strdup(a->path);
	struct stat st;
	if (dup && stat(dirname(dup), &st) == 0 && !(st.st_mode & S_IXOTH) && !(st.st_gid == gid && (st.st_mode & S_IXGRP)))
		log_warn("admin", "the admin socket's directory (not made by this process) keeps the group out",
			 "dir=\"%s\" hint=\"chgrp the directory to the group and chmod g+x, or remove it\"", ESC_PATH(dup));
	free(dup);
	atomic_store(&a->group, (long)gid);
	return 0;
}

int admin_set_owner(struct admin *a, uid_t uid)
{
	if (!a || !a->path)
		return 0;
	if (chown(a->path, uid, (gid_t)-1) < 0)
		return -errno;
	return chown_made_dir(a, uid, (gid_t)-1);
}

/* Is gid the peer's primary group or one of its supplementary groups? */
static int peer_in_group(int fd, gid_t primary, gid_t gid)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);
	if (primary == gid)
		return 1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return 0; /* ERANGE (over 256 groups) or an old kernel: the primary group only */
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

uint64_t admin_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- answering -------------------------------------------------------------------- */

static int is_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f')
			return 0;
	return 1;
}

/* A message from the daemon on one line: control characters become ' '. */
static void one_line(char *s, size_t cap)
{
	s[cap - 1] = 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/* help, show info|stats|workers: render from a snapshot. */
static void answer_snapshot(struct admin *a, const struct admin_cmd *cmd, FILE *f)
{
	struct admin_snapshot snap = { 0 };
	int rc = 0;

	if (cmd->kind != ADM_HELP && (!a->ops || !a->ops->snapshot)) {
		answer_error(f, cmd->json, MSG_NOT_SUPPORTED);
		return;
	}
	if (cmd->kind != ADM_HELP)
		rc = a->ops->snapshot(a->ctx, &snap);
	if (rc) {
		log_warn("admin", "snapshot failed", "error=\"%s\"", strerror(-rc));
		answer_error(f, cmd->json, "snapshot failed: %s", strerror(-rc));
		return;
	}
	rc = admin_render(cmd, &snap, f);
	free(snap.workers);
	if (rc) {
		log_warn("admin", "cannot render an answer", "error=\"%s\"", strerror(-rc));
		/* Drop the partial answer: a memstream's size is its position. */
		fseek(f, 0, SEEK_SET);
		answer_error(f, cmd->json, "cannot render the answer: %s", strerror(-rc));
	}
}

static void answer_conns(struct admin *a, int json, FILE *f)
{
	struct admin_conn *c = NULL;
	size_t n = 0;

	if (!a->ops || !a->ops->conns) {
		answer_error(f, json, MSG_NOT_SUPPORTED);
		return;
	}
	int rc = a->ops->conns(a->ctx, &c, &n);
	if (!rc && n && !c)
		rc = -EINVAL;
	if (rc) {
		log_warn("admin", "cannot list connections", "error=\"%s\"", strerror(-rc));
		answer_error(f, json, "cannot list connections: %s", strerror(-rc));
		return;
	}
	/* Without the kernel's view (logged in diag.c) the daemon's is still worth showing. */
	(void)admin_diag_fill(c, n);
	rc = admin_render_conns(c, n, json, f);
	free(c);
	if (rc) {
		log_warn("admin", "cannot render an answer", "error=\"%s\"", strerror(-rc));
		fseek(f, 0, SEEK_SET);
		answer_error(f, json, "cannot render the answer: %s", strerror(-rc));
	}
}

static void answer_reload(struct admin *a, int json, FILE *f)
{
	char msg[512] = "";

	if (!a->ops || !a->ops->reload) {
		answer_error(f, json, MSG_NOT_SUPPORTED);
		return;
	}
	int rc = a->ops->reload(a->ctx, msg, sizeof(msg));
	one_line(msg, sizeof(msg));
	if (rc) {
		answer_error(f, json, "%s", msg[0] ? msg : strerror(rc < 0 ? -rc : rc));
	} else if (json) {
		fputs("{\"result\":\"ok\",\"message\":", f);
		admin_json_str(f, msg[0] ? msg : "reloaded");
		fputs("}\n", f);
	} else {
		fprintf(f, "OK: %s\n", msg[0] ? msg : "reloaded");
	}
}

static void answer_drain(struct admin *a, const struct admin_cmd *cmd, FILE *f)
{
	char after[32];

	if (!a->ops || !a->ops->drain) {
		answer_error(f, cmd->json, MSG_NOT_SUPPORTED);
		return;
	}
	/* the deadline in force: an earlier drain's, when it comes sooner than this one's */
	int ms = a->ops->drain(a->ctx, cmd->timeout_ms);
	if (ms < 0) {
		answer_error(f, cmd->json, "cannot drain: %s", strerror(-ms));
		return;
	}
	/* whole seconds as such, anything else to the millisecond */
	snprintf(after, sizeof(after), ms % 1000 ? "%d.%03d" : "%d", ms / 1000, ms % 1000);
	if (cmd->json) {
		fprintf(f, "{\"result\":\"ok\",\"draining\":true,\"timeout_s\":%s}\n", after);
		return;
	}
	fprintf(f,
		"OK: draining: new connections are refused, open ones close as they finish, the rest "
		"after %s s; then the process exits\n",
		after);
}

/* Render the answer to cmd into f, or an ERROR line in its place. */
static void answer_cmd(struct admin *a, const struct admin_cmd *cmd, FILE *f)
{
	switch (cmd->kind) {
	case ADM_HELP:
	case ADM_SHOW_INFO:
	case ADM_SHOW_STATS:
	case ADM_SHOW_WORKERS:
		answer_snapshot(a, cmd, f);
		return;
	case ADM_SHOW_CONNS:
		answer_conns(a, cmd->json, f);
		return;
	case ADM_RELOAD:
		answer_reload(a, cmd->json, f);
		return;
	case ADM_DRAIN:
		answer_drain(a, cmd, f);
		return;
	}
	answer_error(f, cmd->json, MSG_UNKNOWN);
}

/* ---- clients ---------------------------------------------------------------------- */

static void client_close(struct admin_client *c)
{
	close(c->fd);
	free(c->out);
	*c = (struct admin_client){ .fd = -1 };
}

static void client_queue(struct admin_client *c, char *out, size_t len)
{
	c->out = out;
	c->outlen = len;
	c->outoff = 0;
	c->send_deadline = admin_now_ms() + ADMIN_SNDTIMEO_MS;
}

/* Queue the answer to one line (len bytes, NUL-terminated, '\n' removed); a blank line
 * queues nothing. 0 or -errno. */
static int client_answer(struct admin *a, struct admin_client *c, const char *line, size_t len)
{
	struct admin_cmd cmd;
	char *out = NULL;
	size_t outlen = 0;

	if (strlen(line) == len && is_blank(line))
		return 0;
	FILE *f = open_memstream(&out, &outlen);
	if (!f)
		return -errno;
	/* An embedded NUL must not hide the rest of the line from the parser. */
	if (strlen(line) != len || admin_parse(line, &cmd)) {
		log_debug("admin", "unknown command", "uid=%u pid=%d", c->uid, c->pid);
		answer_error(f, admin_wants_json(line), MSG_UNKNOWN);
	} else {
		answer_cmd(a, &cmd, f);
	}
	fputc('\n', f); /* the empty line that ends every answer */
	if (fclose(f)) {
		free(out);
		return -ENOMEM;
	}
	client_queue(c, out, outlen);
	return 0;
}

/* Send what the socket takes now. 1 when all is out, 0 to wait for POLLOUT, or -errno. */
static int client_flush(struct admin_client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->outoff += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->last_ms = admin_now_ms();
	return 1;
}

/* Answer complete lines one at a time, each sent before the next is parsed: a client
 * holds at most one answer, and one that does not read stalls only itself. */
static void client_work(struct admin *a, struct admin_client *c)
{
	for (;;) {
		int rc = 0;
		if (c->out) {
			rc = client_flush(c);
			if (rc == 0)
				return;
			if (rc < 0) {
				log_warn("admin", "cannot write an answer, dropping the client",
					 "uid=%u pid=%d error=\"%s\"", c->uid, c->pid, strerror(-rc));
				goto drop;
			}
			if (c->closing)
				goto drop;
		}
		char *nl = memchr(c->buf, '\n', c->len);
		size_t used;
		if (nl) {
			*nl = 0;
			used = (size_t)(nl - c->buf) + 1;
			rc = client_answer(a, c, c->buf, used - 1);
		} else if (c->len == sizeof(c->buf)) {
			log_warn("admin", "command line too long, dropping the client", "uid=%u pid=%d max=%d",
				 c->uid, c->pid, ADMIN_LINE_MAX);
			char *out = strdup(ERR_TOO_LONG);
			if (!out)
				goto drop;
			client_queue(c, out, strlen(out));
			c->closing = 1;
			used = c->len;
		} else if (c->eof && c->len) {
			c->buf[c->len] = 0; /* fits: a full buffer without '\n' is refused above */
			used = c->len;
			rc = client_answer(a, c, c->buf, used);
		} else if (c->eof) {
			goto drop;
		} else {
			return; /* wait for input */
		}
		c->len -= used;
		memmove(c->buf, c->buf + used, c->len);
		if (rc)
			goto drop;
	}
drop:
	client_close(c);
}

static void client_read(struct admin *a, struct admin_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		client_close(c);
		return;
	}
	if (n == 0)
		c->eof = 1;
	c->len += (size_t)n;
	c->last_ms = admin_now_ms();
	client_work(a, c);
}

/* ---- accepting -------------------------------------------------------------------- */

/* Answer msg and close without waiting: the peer is not served. */
static void refuse(int fd, const char *msg)
{
	char junk[512];
	(void)send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
	/* Unread input would turn the peer's EOF into ECONNRESET and could hide msg. */
	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	close(fd);
}

static struct admin_client *client_slot(struct admin *a)
{
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		if (a->cl[i].fd < 0)
			return &a->cl[i];
	return NULL;
}

static void admin_accept(struct admin *a)
{
	struct ucred cr;
	socklen_t crlen = sizeof(cr);

	int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("admin", "accept failed", "error=\"%s\"", strerror(errno));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen)) {
		log_warn("admin", "cannot read peer credentials", "error=\"%s\"", strerror(errno));
		close(fd);
		return;
	}
	long grp = atomic_load(&a->group);
	if (cr.uid != 0 && cr.uid != geteuid() && !(grp >= 0 && peer_in_group(fd, cr.gid, (gid_t)grp))) {
		log_warn("admin", "admin client refused: other user", "uid=%u pid=%d", (unsigned)cr.uid,
			 (int)cr.pid);
		refuse(fd, ERR_DENIED);
		return;
	}
	struct admin_client *c = client_slot(a);
	if (!c) {
		log_warn("admin", "admin client refused: too many clients", "uid=%u pid=%d max=%d",
			 (unsigned)cr.uid, (int)cr.pid, ADMIN_MAX_CLIENTS);
		refuse(fd, ERR_BUSY);
		return;
	}
	*c = (struct admin_client){ .fd = fd, .uid = (unsigned)cr.uid, .pid = (int)cr.pid,
				    .last_ms = admin_now_ms() };
	log_debug("admin", "admin client connected", "uid=%u pid=%d", c->uid, c->pid);
}

/* ---- the thread ------------------------------------------------------------------- */

/* pollfd slots: fixed, fd -1 where unused (poll ignores those) */
enum { PFD_WAKE, PFD_LISTEN, PFD_CLIENT, PFD_HTTP = PFD_CLIENT + ADMIN_MAX_CLIENTS,
       PFD_COUNT = PFD_HTTP + ADMIN_HTTP_NFDS };

/* Fill the unix socket's pollfds and drop clients past their deadline. */
static void poll_setup(struct admin *a, struct pollfd *pfd, uint64_t now, int *timeout)
{
	pfd[PFD_WAKE] = (struct pollfd){ .fd = a->wake_fd, .events = POLLIN };
	pfd[PFD_LISTEN] = (struct pollfd){ .fd = a->lfd, .events = POLLIN };
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
		struct admin_client *c = &a->cl[i];
		struct pollfd *p = &pfd[PFD_CLIENT + i];
		*p = (struct pollfd){ .fd = -1 };
		if (c->fd < 0)
			continue;
		uint64_t deadline = c->out ? c->send_deadline : c->last_ms + ADMIN_IDLE_MS;
		if (now >= deadline) {
			if (c->out)
				log_warn("admin", "cannot write an answer in time, dropping the client",
					 "uid=%u pid=%d", c->uid, c->pid);
			else
				log_debug("admin", "idle admin client dropped", "uid=%u pid=%d", c->uid, c->pid);
			client_close(c);
			continue;
		}
		admin_timeout_min(timeout, deadline, now);
		*p = (struct pollfd){ .fd = c->fd, .events = c->out ? POLLOUT : POLLIN };
	}
}

static void *admin_thread(void *arg)
{
	struct admin *a = arg;
	struct pollfd pfd[PFD_COUNT];

	for (;;) {
		uint64_t now = admin_now_ms();
		int timeout = -1;
		poll_setup(a, pfd, now, &timeout);
		admin_http_poll_setup(&a->http, pfd + PFD_HTTP, now, &timeout);
		if (poll(pfd, PFD_COUNT, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("admin", "poll failed, admin socket stops answering", "error=\"%s\"",
				  strerror(errno));
			break;
		}
		if (pfd[PFD_WAKE].revents)
			break;
		for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
			struct admin_client *c = &a->cl[i];
			if (c->fd < 0 || pfd[PFD_CLIENT + i].fd != c->fd || !pfd[PFD_CLIENT + i].revents)
				continue;
			if (c->out)
				client_work(a, c);
			else
				client_read(a, c);
		}
		admin_http_poll_done(&a->http, pfd + PFD_HTTP);
		if (pfd[PFD_LISTEN].revents & POLLIN)
			admin_accept(a);
	}
	return NULL;
}

/* ---- creating the socket ---------------------------------------------------------- */

/* Make the parent directory (0750) if it is missing; one level only. *made gets its
 * path when this call created it. */
static int make_parent_dir(const char *path, char **made)
{
	struct stat st;
	int rc = 0;
	char *dup = strdup(path);
	if (!dup)
		return -ENOMEM;
	const char *dir = dirname(dup);

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			rc = -ENOTDIR;
			log_error("admin", "admin socket parent is not a directory", "dir=\"%s\"", ESC_PATH(dir));
		}
		goto out;
	}
	rc = errno == ENOENT ? (mkdir(dir, 0750) ? -errno : 0) : -errno;
	if (rc == -EEXIST) {
		rc = 0; /* made meanwhile by someone else: used, not ours to chown */
		goto out;
	}
	if (rc) {
		log_error("admin", "cannot create the admin socket directory", "dir=\"%s\" error=\"%s\"%s",
			  ESC_PATH(dir), strerror(-rc),
			  rc == -EACCES ? " hint=\"give --admin-socket a path this user may create, or --admin-socket "
					  "'' to run without one\"" : "");
		goto out;
	}
	/* mkdir honours the umask; the mode should not depend on it. */
	if (chmod(dir, 0750))
		log_warn("admin", "cannot chmod the admin socket directory", "dir=\"%s\" error=\"%s\"",
			 ESC_PATH(dir), strerror(errno));
	*made = strdup(dir);
out:
	free(dup);
	return rc;
}

void admin_sun_fill(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, strlen(path) + 1); /* length checked by the callers */
}

/* True if a process accepts connections on the socket at path. */
static int socket_alive(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return 0;
	admin_sun_fill(&sun, path);
	int alive = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

/* Remove a stale socket left by a previous run; never anything else. */
static int remove_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		log_error("admin", "cannot stat the admin socket path", "path=\"%s\" error=\"%s\"",
			  ESC_PATH(path), strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("admin", "admin socket path exists and is not a socket; refusing to replace it",
			  "path=\"%s\"", ESC_PATH(path));
		return -EEXIST;
	}
	if (socket_alive(path)) {
		log_error("admin", "admin socket is in use by another process", "path=\"%s\"",
			  ESC_PATH(path));
		return -EADDRINUSE;
	}
	if (unlink(path) && errno != ENOENT) {
		log_error("admin", "cannot remove a stale admin socket", "path=\"%s\" error=\"%s\"",
			  ESC_PATH(path), strerror(errno));
		return -errno;
	}
	log_info("admin", "removed a stale admin socket", "path=\"%s\"", ESC_PATH(path));
	return 0;
}

static int bind_listen(struct admin *a)
{
	struct sockaddr_un sun;
	struct stat st;
	const char *what = "socket";
	int rc;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto err_log;
	}
	admin_sun_fill(&sun, a->path);
	/* Born 0600: a chmod after bind would leave a window. umask is per process;
	 * this runs at startup before anything else creates files. */
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
	umask(old);
	what = "bind";
	if (rc)
		goto err_close;
	what = "listen";
	if (listen(fd, ADMIN_MAX_CLIENTS) || lstat(a->path, &st)) {
		rc = -errno;
		goto err_unlink;
	}
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->lfd = fd;
	return 0;
err_unlink:
	unlink(a->path);
err_close:
	close(fd);
err_log:
	log_error("admin", "cannot create the admin socket", "path=\"%s\" step=%s error=\"%s\"",
		  ESC_PATH(a->path), what, strerror(-rc));
	return rc;
}

/* The thread inherits a full signal mask: signals belong to the main thread. */
static int start_thread(struct admin *a)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&a->thread, NULL, admin_thread, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_error("admin", "cannot start the admin thread", "error=\"%s\"", strerror(rc));
		return -rc;
	}
	pthread_setname_np(a->thread, "ks-admin");
	return 0;
}

int admin_start(const char *path, const char *metrics_listen, const struct admin_ops *ops, void *ctx,
		struct admin **out)
{
	struct admin *a;
	int rc, sock = path && *path;

	*out = NULL;
	if (!sock && !(metrics_listen && *metrics_listen))
		return 0;
	if (sock && strlen(path) >= SUN_PATH_MAX) {
		log_error("admin", "admin socket path is too long", "max=%zu", SUN_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	a = calloc(1, sizeof(*a));
	if (!a || (sock && !(a->path = strdup(path)))) {
		log_error("admin", "out of memory", "%s", "");
		rc = -ENOMEM;
		goto err_free;
	}
	atomic_init(&a->group, -1);
	a->ops = ops;
	a->ctx = ctx;
	a->lfd = a->wake_fd = -1;
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		a->cl[i].fd = -1;
	if (sock && ((rc = make_parent_dir(path, &a->made_dir)) || (rc = remove_stale(path)) || (rc = bind_listen(a))))
		goto err_free;
	if ((rc = admin_http_open(&a->http, metrics_listen, ops, ctx)))
		goto err_sock;
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->wake_fd < 0) {
		rc = -errno;
		log_error("admin", "cannot create an eventfd", "error=\"%s\"", strerror(errno));
		goto err_http;
	}
	if ((rc = start_thread(a)))
		goto err_wake;
	if (sock)
		log_info("admin", "admin socket ready", "path=\"%s\"", ESC_PATH(path));
	*out = a;
	return 0;
err_wake:
	close(a->wake_fd);
err_http:
	admin_http_close(&a->http);
err_sock:
	if (a->lfd >= 0) {
		close(a->lfd);
		unlink(a->path);
	}
err_free:
	if (a) {
		free(a->path);
		free(a->made_dir);
	}
	free(a);
	return rc;
}

unsigned admin_metrics_port(const struct admin *a)
{
	return a ? a->http.port : 0;
}

void admin_stop(struct admin *a)
{
	uint64_t one = 1;
	struct stat st;

	if (!a)
		return;
	if (write(a->wake_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("admin", "cannot wake the admin thread", "error=\"%s\"", strerror(errno));
	pthread_join(a->thread, NULL);
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		if (a->cl[i].fd >= 0)
			client_close(&a->cl[i]);
	admin_http_close(&a->http);
	if (a->lfd >= 0)
		close(a->lfd);
	close(a->wake_fd);
	/* A newer instance may have replaced our socket; leave that one alone. */
	if (a->path && lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
		unlink(a->path);
	free(a->path);
	free(a->made_dir);
	free(a);
}
