// SPDX-License-Identifier: MIT
// The metrics listener: GET /metrics, /healthz and /readyz over HTTP/1.x, served
// from the admin thread's poll loop. Every socket is non-blocking and every client
// has a deadline, so a slow or idle peer costs a slot, never the loop's time.
// One request per connection (Connection: close); the request parser is pure.
#include "admin_int.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HTTP_PATH_MAX 256
/* A configured address escaped for a quoted log value; the buffer lives until the end of the block. */
#define ESC(s) log_esc((char[256]){ 0 }, 256, s)

/* ---- addresses ---------------------------------------------------------------------- */

static int parse_port(const char *s, unsigned *port)
{
	unsigned v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*port = v;
	return 0;
}

int admin_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon;
	size_t hl;
	unsigned port;

	if (!s)
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		colon = rb + 1;
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		memset(ss, 0, sizeof(*ss));
		in6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1 || parse_port(colon + 1, &port))
			return -EINVAL;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	colon = strrchr(s, ':');
	if (!colon || memchr(s, ':', (size_t)(colon - s)))
		return -EINVAL; /* a bare IPv6 address needs brackets */
	hl = (size_t)(colon - s);
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	if (parse_port(colon + 1, &port))
		return -EINVAL;
	if (strcmp(host, "") == 0 || strcmp(host, "*") == 0)
		in->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
		return -EINVAL;
	in->sin_port = htons((uint16_t)port);
	*len = sizeof(*in);
	return 0;
}

/* ---- the request parser (pure) --------------------------------------------------------- */

/* RFC 9110 tchar */
static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The next line in [*p, end): 1 with [*line, *line + *len) and *p past its '\n', one '\r'
 * before the '\n' removed; 0 if no '\n' yet; -EINVAL for NUL or a CR elsewhere. */
static int next_line(const char **p, const char *end, const char **line, size_t *len)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	if (!nl)
		return 0;
	size_t n = (size_t)(nl - *p);
	if (n && (*p)[n - 1] == '\r')
		n--;
	if (memchr(*p, 0, n) || memchr(*p, '\r', n))
		return -EINVAL;
	*line = *p;
	*len = n;
	*p = nl + 1;
	return 1;
}

/* "METHOD SP target SP HTTP/1.x": -EINVAL if malformed; *is_get, target span. */
static int request_line(const char *s, size_t n, int *is_get, const char **tgt, size_t *tlen)
{
	const char *end = s + n, *p = s;
	while (p < end && is_tchar((unsigned char)*p))
		p++;
	if (p == s || p == end || *p != ' ')
		return -EINVAL;
	*is_get = p - s == 3 && memcmp(s, "GET", 3) == 0; /* methods are case-sensitive */
	const char *t = ++p;
	while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
		p++;
	if (p == t || p == end || *p != ' ')
		return -EINVAL;
	*tgt = t;
	*tlen = (size_t)(p - t);
	p++;
	if (end - p != 8 || (memcmp(p, "HTTP/1.1", 8) && memcmp(p, "HTTP/1.0", 8)))
		return -EINVAL;
	return 0;
}

/* "name: value": a token, a colon, then visible bytes, SP and HTAB only. */
static int header_line(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ':')
		return -EINVAL; /* also refuses obs-fold and space before the colon */
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -EINVAL;
	}
	return 0;
}

/* origin-form "/path?query" or absolute-form "http://authority/path?query" */
static int target_path(const char *t, size_t n, const char **path, size_t *plen)
{
	static const char http[] = "http://";
	if (n >= 7 && strncasecmp(t, http, 7) == 0) {
		const char *slash = memchr(t + 7, '/', n - 7);
		if (n == 7 || slash == t + 7 || t[7] == '?' || t[7] == '#')
			return -EINVAL; /* empty authority */
		if (!slash) {
			*path = "/";
			*plen = 1;
			return 0;
		}
		n -= (size_t)(slash - t);
		t = slash;
	}
	if (t[0] != '/')
		return -EINVAL;
	const char *q = memchr(t, '?', n), *h = memchr(t, '#', n);
	if (h && (!q || h < q))
		q = h;
	*path = t;
	*plen = q ? (size_t)(q - t) : n;
	return 0;
}

int admin_http_parse(const char *buf, size_t len, char *path, size_t pathlen)
{
	const char *p = buf, *end, *line, *tgt, *pp;
	size_t n, tlen, plen;
	int rc, is_get;

	if (!buf || !path || !pathlen)
		return -EINVAL;
	int full = len >= ADMIN_HTTP_HEAD_MAX; /* no more bytes will be looked at */
	end = buf + (full ? ADMIN_HTTP_HEAD_MAX : len);
	/* Empty lines before the request line are ignored (RFC 9112 2.2). */
	while ((rc = next_line(&p, end, &line, &n)) == 1 && n == 0)
		;
	if (rc < 0)
		return rc;
	if (rc == 0)
		return full ? -E2BIG : -EAGAIN;
	if ((rc = request_line(line, n, &is_get, &tgt, &tlen)))
		return rc;
	if (!is_get)
		return -EOPNOTSUPP;
	if ((rc = target_path(tgt, tlen, &pp, &plen)))
		return rc;
	while ((rc = next_line(&p, end, &line, &n)) == 1) {
		if (n == 0) {
			if (plen >= pathlen)
				return -E2BIG;
			memcpy(path, pp, plen);
			path[plen] = 0;
			return 0;
		}
		if (header_line(line, n))
			return -EINVAL;
	}
	if (rc < 0)
		return rc;
	return full ? -E2BIG : -EAGAIN;
}

/* ---- answers ----------------------------------------------------------------------------- */

/* Build the whole response in c->out. 0 or -ENOMEM. */
static int respond(struct admin_http_client *c, int status, const char *reason, const char *ctype,
		   const char *body, size_t blen, const char *extra)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	if (!f)
		return -ENOMEM;
	fprintf(f,
		"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		"Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		status, reason, ctype, blen, extra ? extra : "");
	fwrite(body, 1, blen, f);
	if (fclose(f) || !out) {
		free(out);
		return -ENOMEM;
	}
	c->out = out;
	c->outlen = outlen;
	c->outoff = 0;
	return 0;
}

#define TEXT "text/plain; charset=utf-8"

static int respond_text(struct admin_http_client *c, int status, const char *reason, const char *body)
{
	return respond(c, status, reason, TEXT, body, strlen(body), NULL);
}

static int respond_metrics(struct admin_http *h, struct admin_http_client *c)
{
	struct admin_snapshot snap = { 0 };
	char *body = NULL;
	size_t blen = 0;
	if (!h->ops || !h->ops->snapshot)
		return respond_text(c, 501, "Not Implemented", "no metrics in this build\n");
	int rc = h->ops->snapshot(h->ctx, &snap);
	if (rc) {
		log_warn("admin", "snapshot failed", "error=\"%s\"", strerror(-rc));
		free(snap.workers);
		return respond_text(c, 500, "Internal Server Error", "snapshot failed\n");
	}
	FILE *f = open_memstream(&body, &blen);
	if (!f) {
		rc = -ENOMEM;
	} else {
		rc = admin_metrics_render(&snap, f);
		if (fclose(f) && !rc)
			rc = -ENOMEM;
	}
	free(snap.workers);
	if (rc) {
		log_warn("admin", "cannot render metrics", "error=\"%s\"", strerror(-rc));
		free(body);
		return respond_text(c, 500, "Internal Server Error", "cannot render metrics\n");
	}
	rc = respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, blen, NULL);
	free(body);
	return rc;
}

static int respond_ready(struct admin_http_client *c, int rc, char *why, size_t whylen)
{
	char body[300];
	if (!rc)
		return respond_text(c, 200, "OK", "ready\n");
	why[whylen - 1] = 0;
	for (char *p = why; *p; p++) /* one line of text */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	snprintf(body, sizeof(body), "not ready: %s\n", why[0] ? why : strerror(rc < 0 ? -rc : rc));
	return respond_text(c, 503, "Service Unavailable", body);
}

/* /readyz: answer now, or park c on the pooler probe (started here unless one is in
 * flight), so that no request waits on a connect in the admin thread. */
static int start_ready(struct admin_http *h, struct admin_http_client *c)
{
	char why[256] = "";
	int fd = -1;
	if (h->probe_fd >= 0) {
		c->state = HTTP_PROBE;
		return 0;
	}
	/* No readiness callback: the process being up is all there is to know. */
	int rc = h->ops && h->ops->ready ? h->ops->ready(h->ctx, &fd, why, sizeof(why)) : 0;
	if (rc == -EINPROGRESS && fd >= 0) {
		h->probe_fd = fd;
		h->probe_deadline = admin_now_ms() + ADMIN_HTTP_PROBE_MS;
		c->state = HTTP_PROBE;
		return 0;
	}
	return respond_ready(c, rc, why, sizeof(why));
}

/* Answer the request in c->buf (rc from admin_http_parse). 0 or -ENOMEM. */
static int answer(struct admin_http *h, struct admin_http_client *c, int rc, const char *path)
{
	switch (rc) {
	case 0:
		break;
	case -EOPNOTSUPP:
		return respond(c, 405, "Method Not Allowed", TEXT, "only GET\n", 9, "Allow: GET\r\n");
	case -E2BIG:
		return respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
	default:
		return respond_text(c, 400, "Bad Request", "bad request\n");
	}
	if (strcmp(path, "/metrics") == 0)
		return respond_metrics(h, c);
	if (strcmp(path, "/healthz") == 0)
		return respond_text(c, 200, "OK", "ok\n");
	if (strcmp(path, "/readyz") == 0)
		return start_ready(h, c);
	return respond_text(c, 404, "Not Found", "not found: try /metrics, /healthz or /readyz\n");
}

/* ---- clients -------------------------------------------------------------------------- */

static void client_close(struct admin_http_client *c)
{
	close(c->fd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->state = HTTP_FREE;
	c->len = c->outlen = c->outoff = 0;
}

/* The answer is out: stop sending and read what the peer still sends, so that closing
 * with unread input does not reset the connection before the peer read the answer. */
static void client_linger(struct admin_http_client *c)
{
	uint64_t until = admin_now_ms() + ADMIN_HTTP_LINGER_MS;
	shutdown(c->fd, SHUT_WR);
	c->state = HTTP_LINGER;
	if (until < c->deadline)
		c->deadline = until;
}

static void client_write(struct admin_http_client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return; /* poll for POLLOUT */
		if (n < 0) {
			client_close(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	client_linger(c);
}

static void answered(struct admin_http_client *c, int rc);

static void client_read(struct admin_http *h, struct admin_http_client *c)
{
	char path[HTTP_PATH_MAX], junk[512];

	if (c->state == HTTP_LINGER) {
		ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			client_close(c);
		return;
	}
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* a peer gone before a complete request gets nothing */
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	int rc = admin_http_parse(c->buf, c->len, path, sizeof(path));
	if (rc == -EAGAIN)
		return;
	answered(c, answer(h, c, rc, path));
}

/* The answer is in c->out (rc 0), or could not be made (-ENOMEM): send it. */
static void answered(struct admin_http_client *c, int rc)
{
	if (rc) {
		log_warn("admin", "out of memory answering an HTTP request", "%s", "");
		client_close(c);
		return;
	}
	if (c->state == HTTP_PROBE)
		return;
	c->state = HTTP_WRITE;
	c->deadline = admin_now_ms() + ADMIN_HTTP_TIMEOUT_MS;
	client_write(c);
}

/* The pooler probe ended (rc -ETIMEDOUT, or 0 to read its outcome): answer every
 * /readyz waiting on it, unless another probe follows (the pooler's next address). */
static void probe_finish(struct admin_http *h, int rc)
{
	char why[256] = "";
	int err = 0, next = -1;
	socklen_t l = sizeof(err);
	if (!rc)
		rc = getsockopt(h->probe_fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 ? -errno : -err;
	close(h->probe_fd);
	h->probe_fd = -1;
	if (h->ops && h->ops->ready_done)
		rc = h->ops->ready_done(h->ctx, rc, &next, why, sizeof(why));
	if (rc == -EINPROGRESS && next >= 0) { /* the requests stay parked */
		h->probe_fd = next;
		h->probe_deadline = admin_now_ms() + ADMIN_HTTP_PROBE_MS;
		return;
	}
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++) {
		struct admin_http_client *c = &h->cl[i];
		if (c->state != HTTP_PROBE)
			continue;
		c->state = HTTP_READ; /* no longer parked: answered() sends */
		answered(c, respond_ready(c, rc, why, sizeof(why)));
	}
}

/* A slot for a new client: a free one, else one already answered, else the oldest,
 * whose connection is closed. Idle or slow peers cannot lock the probes out. */
static struct admin_http_client *take_slot(struct admin_http *h)
{
	struct admin_http_client *oldest = NULL;
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++) {
		struct admin_http_client *c = &h->cl[i];
		if (c->state == HTTP_FREE)
			return c;
		if (!oldest || (c->state == HTTP_LINGER) > (oldest->state == HTTP_LINGER) ||
		    ((c->state == HTTP_LINGER) == (oldest->state == HTTP_LINGER) && c->since < oldest->since))
			oldest = c;
	}
	if (oldest->state != HTTP_LINGER)
		log_debug("admin", "metrics clients at the limit: the oldest dropped", "max=%d state=%s",
			  ADMIN_HTTP_MAX_CLIENTS, oldest->state == HTTP_WRITE ? "write" : "read");
	client_close(oldest);
	return oldest;
}

static void http_accept(struct admin_http *h)
{
	int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("admin", "metrics accept failed", "error=\"%s\"", strerror(errno));
		return;
	}
	struct admin_http_client *c = take_slot(h);
	c->fd = fd;
	c->state = HTTP_READ;
	c->len = 0;
	c->since = admin_now_ms();
	c->deadline = c->since + ADMIN_HTTP_TIMEOUT_MS;
}

void admin_http_poll_setup(struct admin_http *h, struct pollfd *pfd, uint64_t now, int *timeout)
{
	pfd[0] = (struct pollfd){ .fd = h->lfd, .events = POLLIN };
	pfd[ADMIN_HTTP_NFDS - 1] = (struct pollfd){ .fd = -1 };
	if (h->probe_fd >= 0 && now >= h->probe_deadline)
		probe_finish(h, -ETIMEDOUT);
	if (h->probe_fd >= 0) {
		admin_timeout_min(timeout, h->probe_deadline, now);
		pfd[ADMIN_HTTP_NFDS - 1] = (struct pollfd){ .fd = h->probe_fd, .events = POLLOUT };
	}
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++) {
		struct admin_http_client *c = &h->cl[i];
		pfd[i + 1] = (struct pollfd){ .fd = -1 };
		if (c->state == HTTP_FREE)
			continue;
		if (now >= c->deadline) {
			if (c->state != HTTP_LINGER)
				log_debug("admin", "metrics client timed out", "state=%s",
					  c->state == HTTP_WRITE ? "write" : "read");
			client_close(c);
			continue;
		}
		admin_timeout_min(timeout, c->deadline, now);
		if (c->state == HTTP_PROBE)
			continue; /* its answer waits for the probe */
		pfd[i + 1].fd = c->fd;
		pfd[i + 1].events = c->state == HTTP_WRITE ? POLLOUT : POLLIN;
	}
}

void admin_http_poll_done(struct admin_http *h, const struct pollfd *pfd)
{
	const struct pollfd *probe = &pfd[ADMIN_HTTP_NFDS - 1];
	if (h->probe_fd >= 0 && probe->fd == h->probe_fd && probe->revents)
		probe_finish(h, 0);
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++) {
		struct admin_http_client *c = &h->cl[i];
		if (c->state == HTTP_FREE || pfd[i + 1].fd != c->fd || !pfd[i + 1].revents)
			continue;
		if (c->state == HTTP_WRITE)
			client_write(c);
		else
			client_read(h, c);
	}
	if (h->lfd >= 0 && (pfd[0].revents & POLLIN))
		http_accept(h);
}

/* ---- the listener ------------------------------------------------------------------- */

int admin_http_open(struct admin_http *h, const char *addr, const struct admin_ops *ops, void *ctx)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *what = "parse";
	int one = 1, rc, fd = -1;

	h->lfd = -1;
	h->probe_fd = -1;
	h->port = 0;
	h->ops = ops;
	h->ctx = ctx;
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++)
		h->cl[i] = (struct admin_http_client){ .fd = -1, .state = HTTP_FREE };
	if (!addr || !*addr)
		return 0;
	if (admin_addr_parse(addr, &ss, &len)) {
		rc = -EINVAL;
		goto err_log;
	}
	what = "socket";
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto err_log;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	what = "bind";
	if (bind(fd, (struct sockaddr *)&ss, len)) {
		rc = -errno;
		goto err_close;
	}
	what = "listen";
	len = sizeof(ss);
	if (listen(fd, 64) || getsockname(fd, (struct sockaddr *)&ss, &len)) {
		rc = -errno;
		goto err_close;
	}
	h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	h->lfd = fd;
	log_info("admin", "metrics listener ready", "listen=\"%s\" port=%u", ESC(addr), h->port);
	return 0;
err_close:
	close(fd);
err_log:
	log_error("admin", "cannot open the metrics listener", "listen=\"%s\" step=%s error=\"%s\"",
		  ESC(addr), what, strerror(-rc));
	return rc;
}

void admin_http_close(struct admin_http *h)
{
	for (int i = 0; i < ADMIN_HTTP_MAX_CLIENTS; i++)
		if (h->cl[i].state != HTTP_FREE)
			client_close(&h->cl[i]);
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->probe_fd >= 0)
		close(h->probe_fd);
	h->lfd = h->probe_fd = -1;
}
