// SPDX-License-Identifier: MIT
// The client side of the admin socket, used by `ktls-sidecar ctl`: send one
// command line, shut down writing, copy the answer less its framing empty line.
#include "admin_int.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define ADMIN_CTL_TIMEOUT_MS 5000

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
		if (len && admin_now_ms() >= deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

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
	admin_sun_fill(&sun, path);
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
	char head[9];     /* the first bytes, to recognise "ERROR" and {"error": */
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
		uint64_t now = admin_now_ms();
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
	uint64_t deadline = admin_now_ms() + ADMIN_CTL_TIMEOUT_MS;
	char line[ADMIN_LINE_MAX + 1];
	int fd, rc, src;

	if (!path || !cmd || !out)
		return -EINVAL;
	size_t len = strnlen(cmd, ADMIN_LINE_MAX + 1);
	if (strlen(path) >= SUN_PATH_MAX) {
		log_error("admin", "admin socket path too long for a unix socket", "path=\"%s\" max=%d", path,
			  (int)SUN_PATH_MAX - 1);
		return -EINVAL;
	}
	if (len > ADMIN_LINE_MAX || memchr(cmd, '\n', len)) {
		log_error("admin", "admin command too long, or has a newline", "max=%d", ADMIN_LINE_MAX);
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
	int failed = (cc.got >= 5 && memcmp(cc.head, "ERROR", 5) == 0) ||
		     (cc.got >= 9 && memcmp(cc.head, "{\"error\":", 9) == 0);
	return failed ? -EINVAL : 0;
}
