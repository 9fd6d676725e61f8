// SPDX-License-Identifier: MIT
// The admin unix socket: creating it safely (0600, stale sockets only), one
// poll() thread that serves up to ADMIN_MAX_CLIENTS peers of the daemon's own
// uid or root, and the client side used by `ktls-sidecar ctl`.
//
// Framing: a client sends commands as lines ending in '\n' (at most
// ADMIN_LINE_MAX bytes before it; a last line may end at EOF instead). Every
// non-blank line gets exactly one answer, in order, and every answer ends with
// an empty line ("...\n\n"); no answer contains an empty line before its end.
// Blank lines get no answer. An answer starting with "ERROR: " is a failure
// (unknown command, snapshot failure) and the connection stays usable. The
// server closes the connection after answering everything once the client has
// shut down its side, after ADMIN_IDLE_MS without input, after a line that is
// too long, or when an answer cannot be written within ADMIN_SNDTIMEO_MS.
// So `ctl` sends one line, shuts down writing and reads to EOF, while socat
// users may type several commands on one connection.
#include "admin.h"
#include "log.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_CLIENTS 16
#define ADMIN_IDLE_MS 5000
#define ADMIN_SNDTIMEO_MS 2000
#define ADMIN_CTL_TIMEOUT_MS 5000
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
/* A path escaped for a quoted log value; the buffer lives until the end of the block. */
#define ESC_PATH(p) log_esc((char[2 * SUN_PATH_MAX + 1]){ 0 }, 2 * SUN_PATH_MAX + 1, p)

#define ERR_UNKNOWN "ERROR: unknown command (try 'help')\n"
#define ERR_DENIED "ERROR: permission denied\n\n"
#define ERR_BUSY "ERROR: too many admin clients\n\n"
#define ERR_TOO_LONG "ERROR: line too long\n\n"

struct admin_client {
	int fd;                        /* -1: free slot */
	unsigned uid;
	int pid;
	uint64_t last_ms;              /* last input, for the idle timeout */
	size_t len;
	char buf[ADMIN_LINE_MAX + 1];  /* one line and its '\n' */
};

struct admin {
	char *path;
	int lfd, wake_fd;
	dev_t dev;                     /* the socket we bound: stop unlinks only that one */
	ino_t ino;
	const struct admin_ops *ops;
	void *ctx;
	pthread_t thread;
	struct admin_client cl[ADMIN_MAX_CLIENTS];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Send all of buf before deadline (SO_SNDTIMEO bounds each send). 0 or -errno. */
static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		buf += n;
		len -= (size_t)n;
		if (len && now_ms() >= deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

/* ---- answering -------------------------------------------------------------------- */

static int is_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f')
			return 0;
	return 1;
}

/* Render the answer to cmd into f, or an ERROR line in its place. */
static void answer_cmd(struct admin *a, const struct admin_cmd *cmd, FILE *f)
{
	struct admin_snapshot snap = { 0 };
	int rc = 0;

	if (cmd->kind != ADM_HELP && a->ops && a->ops->snapshot)
		rc = a->ops->snapshot(a->ctx, &snap);
	if (rc) {
		log_warn("admin", "snapshot failed", "error=\"%s\"", strerror(-rc));
		fprintf(f, "ERROR: snapshot failed: %s\n", strerror(-rc));
		return;
	}
	rc = admin_render(cmd, &snap, f);
	free(snap.workers);
	if (rc) {
		log_warn("admin", "cannot render an answer", "error=\"%s\"", strerror(-rc));
		/* Drop the partial answer: a memstream's size is its position. */
		fseek(f, 0, SEEK_SET);
		fprintf(f, "ERROR: cannot render the answer: %s\n", strerror(-rc));
	}
}

/* Answer one line (len bytes, NUL-terminated, '\n' removed). 0 or -errno: drop the client. */
static int client_answer(struct admin *a, struct admin_client *c, const char *line, size_t len)
{
	struct admin_cmd cmd;
	char *out = NULL;
	size_t outlen = 0;
	int rc;

	if (strlen(line) == len && is_blank(line))
		return 0;
	FILE *f = open_memstream(&out, &outlen);
	if (!f)
		return -errno;
	/* An embedded NUL must not hide the rest of the line from the parser. */
	if (strlen(line) != len || admin_parse(line, &cmd)) {
		log_debug("admin", "unknown command", "uid=%u pid=%d", c->uid, c->pid);
		fputs(ERR_UNKNOWN, f);
	} else {
		answer_cmd(a, &cmd, f);
	}
	fputc('\n', f); /* the empty line that ends every answer */
	if (fclose(f)) {
		rc = -errno;
		goto out;
	}
	rc = send_all(c->fd, out, outlen, now_ms() + ADMIN_SNDTIMEO_MS);
	if (rc)
		log_warn("admin", "cannot write an answer, dropping the client", "uid=%u pid=%d error=\"%s\"",
			 c->uid, c->pid, strerror(-rc));
out:
	free(out);
	return rc;
}

static void client_close(struct admin_client *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Read what is there, answer each complete line; on EOF answer a last partial line. */
static void client_read(struct admin *a, struct admin_client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == 0 && c->len) {
			c->buf[c->len] = 0; /* fits: a full buffer without '\n' was dropped earlier */
			client_answer(a, c, c->buf, c->len);
		}
		goto drop;
	}
	c->len += (size_t)n;
	c->last_ms = now_ms();

	char *start = c->buf, *end = c->buf + c->len, *nl;
	while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
		*nl = 0;
		if (client_answer(a, c, start, (size_t)(nl - start)))
			goto drop;
		start = nl + 1;
	}
	c->len = (size_t)(end - start);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf)) {
		log_warn("admin", "command line too long, dropping the client", "uid=%u pid=%d max=%d",
			 c->uid, c->pid, ADMIN_LINE_MAX);
		send_all(c->fd, ERR_TOO_LONG, strlen(ERR_TOO_LONG), now_ms() + ADMIN_SNDTIMEO_MS);
		goto drop;
	}
	return;
drop:
	client_close(c);
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
	struct timeval tv = { .tv_sec = ADMIN_SNDTIMEO_MS / 1000,
			      .tv_usec = ADMIN_SNDTIMEO_MS % 1000 * 1000 };

	int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
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
	if (cr.uid != 0 && cr.uid != geteuid()) {
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
	/* A reader that stops reading must not stall the admin thread for long. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		log_warn("admin", "cannot set a send timeout", "error=\"%s\"", strerror(errno));
	c->fd = fd;
	c->uid = (unsigned)cr.uid;
	c->pid = (int)cr.pid;
	c->len = 0;
	c->last_ms = now_ms();
	log_debug("admin", "admin client connected", "uid=%u pid=%d", c->uid, c->pid);
}

/* ---- the thread ------------------------------------------------------------------- */

/* Fill pfd[2..] with live clients (map[k] = client index) and drop idle ones.
 * Returns the pollfd count; *timeout is the time to the next idle deadline. */
static int poll_setup(struct admin *a, struct pollfd *pfd, int *map, int *timeout)
{
	uint64_t now = now_ms();
	int n = 2;

	pfd[0] = (struct pollfd){ .fd = a->wake_fd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = a->lfd, .events = POLLIN };
	*timeout = -1;
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++) {
		struct admin_client *c = &a->cl[i];
		if (c->fd < 0)
			continue;
		uint64_t deadline = c->last_ms + ADMIN_IDLE_MS;
		if (now >= deadline) {
			log_debug("admin", "idle admin client dropped", "uid=%u pid=%d", c->uid, c->pid);
			client_close(c);
			continue;
		}
		if (*timeout < 0 || deadline - now < (uint64_t)*timeout)
			*timeout = (int)(deadline - now);
		map[n - 2] = i;
		pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
	}
	return n;
}

static void *admin_thread(void *arg)
{
	struct admin *a = arg;
	struct pollfd pfd[2 + ADMIN_MAX_CLIENTS];
	int map[ADMIN_MAX_CLIENTS], timeout;

	for (;;) {
		int n = poll_setup(a, pfd, map, &timeout);
		if (poll(pfd, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("admin", "poll failed, admin socket stops answering", "error=\"%s\"",
				  strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		for (int k = 2; k < n; k++)
			if (pfd[k].revents)
				client_read(a, &a->cl[map[k - 2]]);
		if (pfd[1].revents & POLLIN)
			admin_accept(a);
	}
	return NULL;
}

/* ---- creating the socket ---------------------------------------------------------- */

/* Make the parent directory (0750) if it is missing; one level only. */
static int make_parent_dir(const char *path)
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
	if (errno != ENOENT || (mkdir(dir, 0750) && errno != EEXIST)) {
		rc = -errno;
		log_error("admin", "cannot create the admin socket directory", "dir=\"%s\" error=\"%s\"",
			  ESC_PATH(dir), strerror(errno));
		goto out;
	}
	/* mkdir honours the umask; the mode should not depend on it. */
	if (chmod(dir, 0750))
		log_warn("admin", "cannot chmod the admin socket directory", "dir=\"%s\" error=\"%s\"",
			 ESC_PATH(dir), strerror(errno));
out:
	free(dup);
	return rc;
}

static void fill_addr(struct sockaddr_un *sun, const char *path)
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
	fill_addr(&sun, path);
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
	fill_addr(&sun, a->path);
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
	int rc;

	*out = NULL;
	if (!path || !*path || strlen(path) >= SUN_PATH_MAX) {
		log_error("admin", "admin socket path is empty or too long", "max=%zu", SUN_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(path))) {
		log_error("admin", "out of memory", "%s", "");
		rc = -ENOMEM;
		goto err_free;
	}
	(void)metrics_listen; /* TODO: HTTP listener */
	a->ops = ops;
	a->ctx = ctx;
	a->lfd = a->wake_fd = -1;
	for (int i = 0; i < ADMIN_MAX_CLIENTS; i++)
		a->cl[i].fd = -1;
	if ((rc = make_parent_dir(path)) || (rc = remove_stale(path)) || (rc = bind_listen(a)))
		goto err_free;
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->wake_fd < 0) {
		rc = -errno;
		log_error("admin", "cannot create an eventfd", "error=\"%s\"", strerror(errno));
		goto err_sock;
	}
	if ((rc = start_thread(a)))
		goto err_wake;
	log_info("admin", "admin socket ready", "path=\"%s\"", ESC_PATH(path));
	*out = a;
	return 0;
err_wake:
	close(a->wake_fd);
err_sock:
	close(a->lfd);
	unlink(a->path);
err_free:
	if (a)
		free(a->path);
	free(a);
	return rc;
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
	close(a->lfd);
	close(a->wake_fd);
	/* A newer instance may have replaced our socket; leave that one alone. */
	if (lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
		unlink(a->path);
	free(a->path);
	free(a);
}

/* ---- the client (ktls-sidecar ctl) ------------------------------------------------ */

static int ctl_connect(const char *path)
{
	struct sockaddr_un sun;
	struct timeval tv = { .tv_sec = ADMIN_CTL_TIMEOUT_MS / 1000 };
	int rc;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto err_log;
	}
	fill_addr(&sun, path);
	/* SO_SNDTIMEO bounds connect() to a full backlog as well as send(). */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		rc = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		goto err_close;
	}
	return fd;
err_close:
	close(fd);
err_log:
	log_error("admin", "cannot connect to the admin socket", "path=\"%s\" error=\"%s\"",
		  ESC_PATH(path), strerror(-rc));
	return rc;
}

/* Copies the answer to out, less the empty line that ends it. */
struct ctl_copy {
	FILE *out;
	size_t got;
	size_t held_nl;   /* newlines not written yet: the last one may be framing */
	char head[5];     /* the first bytes, to recognise "ERROR" */
};

static void ctl_copy_chunk(struct ctl_copy *cc, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++, cc->got++) {
		if (cc->got < sizeof(cc->head))
			cc->head[cc->got] = buf[i];
		if (buf[i] == '\n') {
			cc->held_nl++;
			continue;
		}
		for (; cc->held_nl; cc->held_nl--)
			fputc('\n', cc->out);
		fputc(buf[i], cc->out);
	}
}

/* Read to EOF within the deadline. 0 or -errno. */
static int ctl_read(int fd, struct ctl_copy *cc, uint64_t deadline)
{
	char buf[4096];
	for (;;) {
		uint64_t now = now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int rc = now < deadline ? poll(&p, 1, (int)(deadline - now)) : 0;
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0)
			return -ETIMEDOUT;
		ssize_t n = rc < 0 ? -1 : recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* The server may close on us (refusal) with our line unread: the answer counts. */
		if (n == 0 || (n < 0 && errno == ECONNRESET && cc->got))
			return 0;
		if (n < 0)
			return -errno;
		ctl_copy_chunk(cc, buf, (size_t)n);
	}
}

int admin_ctl(const char *path, const char *cmd, FILE *out)
{
	struct ctl_copy cc = { .out = out };
	uint64_t deadline = now_ms() + ADMIN_CTL_TIMEOUT_MS;
	char line[ADMIN_LINE_MAX + 1];
	int fd, rc, src;

	if (!path || !cmd || !out)
		return -EINVAL;
	size_t len = strnlen(cmd, ADMIN_LINE_MAX + 1);
	if (len > ADMIN_LINE_MAX || memchr(cmd, '\n', len) || strlen(path) >= SUN_PATH_MAX) {
		log_error("admin", "admin command or socket path too long, or command has a newline",
			  "max=%d", ADMIN_LINE_MAX);
		return -EINVAL;
	}
	memcpy(line, cmd, len);
	line[len] = '\n';
	fd = ctl_connect(path);
	if (fd < 0)
		return fd;
	/* A refused client may find the socket closed before it writes; read anyway. */
	src = send_all(fd, line, len + 1, deadline);
	shutdown(fd, SHUT_WR);
	rc = ctl_read(fd, &cc, deadline);
	close(fd);
	if (cc.held_nl)
		fputc('\n', out); /* the newline ending the last line; the empty line is framing */
	if (rc || (!cc.got && src)) {
		rc = rc ? rc : src;
		log_error("admin", "admin socket answer failed", "path=\"%s\" error=\"%s\"", ESC_PATH(path),
			  strerror(-rc));
		return rc;
	}
	if (!cc.got) {
		log_error("admin", "admin socket closed without an answer", "path=\"%s\"", ESC_PATH(path));
		return -EPROTO;
	}
	if (fflush(out) || ferror(out))
		return -EIO;
	return cc.got >= 5 && memcmp(cc.head, "ERROR", 5) == 0 ? -EINVAL : 0;
}
