// SPDX-License-Identifier: MIT
/*
 * bench/idleconn.c: load generator for the idle-memory benchmark (W4). Opens N
 * PostgreSQL connections through a TLS terminator (SSLRequest, TLS handshake,
 * StartupMessage, wait for ReadyForQuery), prints one "ready" line, then holds
 * them idle until stdin reaches EOF or SIGINT/SIGTERM arrives. One thread, epoll,
 * non-blocking OpenSSL; at most -c connections are being set up at a time.
 *
 * Build: cc -O2 -o idleconn bench/idleconn.c -lssl -lcrypto
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF_SIZE 8192
#define PG_SSLREQUEST_CODE 80877103u
#define PG_PROTOCOL_3_0 196608u

enum state {
	ST_CONNECT,   /* non-blocking connect() in progress */
	ST_SSLREQ,    /* sending the 8-byte SSLRequest */
	ST_SSLRESP,   /* waiting for the 1-byte 'S' / 'N' answer */
	ST_HANDSHAKE, /* SSL_connect() */
	ST_STARTUP,   /* sending the StartupMessage */
	ST_AUTH,      /* reading until ReadyForQuery */
	ST_READY,     /* idle, past ReadyForQuery */
	ST_DONE,      /* failed or closed; fd closed */
};

struct conn {
	int fd;
	enum state st;
	SSL *ssl;
	unsigned char *rbuf; /* only while setting up: freed at ReadyForQuery */
	size_t rlen;
	size_t woff;
	uint32_t events; /* current epoll interest */
};

static struct {
	const char *host, *port, *user, *db, *ciphersuites;
	int n, parallel, plain, timeout_s, verbose;
} opt = {
	.host = "127.0.0.1", .user = "app", .db = "app",
	.n = 100, .parallel = 64, .timeout_s = 120,
};

static struct conn *conns;
static int epfd;
static SSL_CTX *ctx;
static struct addrinfo *addr;
static unsigned char startup[256];
static size_t startup_len;
static int n_started, n_ready, n_failed, n_closed_idle;
static int first_error_logged;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Log one logfmt line; the OpenSSL error queue is drained into it. */
static void log_err(int idx, const char *fmt, ...)
{
	char msg[512], ssl[512] = "";
	unsigned long e;
	va_list ap;
	size_t o = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	while ((e = ERR_get_error()) != 0) {
		if (o < sizeof(ssl) - 2) {
			if (o)
				ssl[o++] = ';';
			ERR_error_string_n(e, ssl + o, sizeof(ssl) - o);
			o += strlen(ssl + o);
		}
	}
	/* The first failure, then only with -v: 9000 identical lines help nobody. */
	if (first_error_logged && !opt.verbose)
		return;
	first_error_logged = 1;
	fprintf(stderr, "level=error mod=idleconn conn=%d msg=\"%s\"%s%s%s\n", idx, msg,
		o ? " ssl=\"" : "", ssl, o ? "\"" : "");
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t put_str(unsigned char *p, const char *s)
{
	size_t n = strlen(s) + 1;
	memcpy(p, s, n);
	return n;
}

static int build_startup(void)
{
	unsigned char *p = startup + 4;
	size_t need = 4 + 4 + 5 + strlen(opt.user) + 1 + 9 + strlen(opt.db) + 1 + 17 + 9 + 1;

	if (need > sizeof(startup))
		return -ENAMETOOLONG;
	put32(p, PG_PROTOCOL_3_0);
	p += 4;
	p += put_str(p, "user");
	p += put_str(p, opt.user);
	p += put_str(p, "database");
	p += put_str(p, opt.db);
	p += put_str(p, "application_name");
	p += put_str(p, "idleconn");
	*p++ = 0;
	startup_len = (size_t)(p - startup);
	put32(startup, (uint32_t)startup_len);
	return 0;
}

static void set_interest(struct conn *c, int idx, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.u32 = (uint32_t)idx };

	if (c->events == ev)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
		log_err(idx, "epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

static void conn_close(struct conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	free(c->rbuf);
	c->rbuf = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = ST_DONE;
}

static void conn_fail(struct conn *c, int idx)
{
	(void)idx;
	conn_close(c);
	n_failed++;
}

/* Returns 0 if started (or failed and was counted), -errno on a fatal local error. */
static int conn_start(int idx)
{
	struct conn *c = &conns[idx];
	struct epoll_event e = { .events = EPOLLOUT, .data.u32 = (uint32_t)idx };
	int one = 1;

	n_started++;
	c->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		log_err(idx, "socket: %s", strerror(errno));
		return -errno;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->rbuf = malloc(RBUF_SIZE);
	if (!c->rbuf)
		return -ENOMEM;
	c->st = ST_CONNECT;
	c->events = EPOLLOUT;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
		log_err(idx, "epoll_ctl add: %s", strerror(errno));
		return -errno;
	}
	if (connect(c->fd, addr->ai_addr, addr->ai_addrlen) < 0 && errno != EINPROGRESS) {
		log_err(idx, "connect: %s", strerror(errno));
		conn_fail(c, idx);
	}
	return 0;
}

/* Write the rest of BUF[0..len) from c->woff; 1 done, 0 wait, -1 failed. */
static int conn_write(struct conn *c, int idx, const unsigned char *buf, size_t len)
{
	while (c->woff < len) {
		if (c->ssl) {
			int r, e;

			ERR_clear_error();
			r = SSL_write(c->ssl, buf + c->woff, (int)(len - c->woff));
			if (r > 0) {
				c->woff += (size_t)r;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				set_interest(c, idx, e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
				return 0;
			}
			log_err(idx, "SSL_write: error %d", e);
			return -1;
		} else {
			ssize_t r = send(c->fd, buf + c->woff, len - c->woff, MSG_NOSIGNAL);

			if (r >= 0) {
				c->woff += (size_t)r;
				continue;
			}
			if (errno == EAGAIN || errno == EINTR) {
				set_interest(c, idx, EPOLLOUT);
				return 0;
			}
			log_err(idx, "send: %s", strerror(errno));
			return -1;
		}
	}
	c->woff = 0;
	return 1;
}

/* Read into BUF; >0 bytes, 0 EOF, -EAGAIN wait (interest set), -EIO failed. */
static ssize_t conn_read(struct conn *c, int idx, void *buf, size_t len)
{
	if (c->ssl) {
		int r, e;

		ERR_clear_error();
		r = SSL_read(c->ssl, buf, (int)len);
		if (r > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			set_interest(c, idx, e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
			return -EAGAIN;
		}
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && (r == 0 || errno == ECONNRESET))
			return 0;
		if (c->st != ST_READY)
			log_err(idx, "SSL_read: error %d (%s)", e, strerror(errno));
		else
			ERR_clear_error();
		return -EIO;
	} else {
		ssize_t r = recv(c->fd, buf, len, 0);

		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR) {
			set_interest(c, idx, EPOLLIN);
			return -EAGAIN;
		}
		if (errno == ECONNRESET)
			return 0;
		log_err(idx, "recv: %s", strerror(errno));
		return -EIO;
	}
}

/* Parse whole backend messages in rbuf; 1 ReadyForQuery seen, 0 need more, -1 failed. */
static int parse_backend(struct conn *c, int idx)
{
	size_t off = 0;
	int ret = 0;

	while (c->rlen - off >= 5) {
		unsigned char type = c->rbuf[off];
		uint32_t len = get32(c->rbuf + off + 1);

		if (len < 4 || len > RBUF_SIZE - 1) {
			log_err(idx, "bad backend message type=%c len=%u", type, len);
			return -1;
		}
		if (c->rlen - off < 1 + (size_t)len)
			break;
		if (type == 'R' && (len < 8 || get32(c->rbuf + off + 5) != 0)) {
			log_err(idx, "authentication request %u: only trust auth is supported",
				len >= 8 ? get32(c->rbuf + off + 5) : 0);
			return -1;
		}
		if (type == 'E') {
			/* fields: type byte + C string; print the 'M' (message) field */
			const unsigned char *p = c->rbuf + off + 5, *end = c->rbuf + off + 1 + len;
			const char *m = "?";

			while (p < end && *p) {
				unsigned char f = *p++;
				const unsigned char *s = p;

				while (p < end && *p)
					p++;
				if (f == 'M' && p < end)
					m = (const char *)s;
				p++;
			}
			log_err(idx, "ErrorResponse: %s", m);
			return -1;
		}
		off += 1 + (size_t)len;
		if (type == 'Z') {
			ret = 1;
			break;
		}
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return ret;
}

/* Drive connection IDX as far as it can go without blocking. */
static void conn_step(int idx)
{
	struct conn *c = &conns[idx];
	unsigned char sslreq[8];
	int r, err;
	socklen_t elen = sizeof(err);
	ssize_t n;

	for (;;) {
		switch (c->st) {
		case ST_CONNECT:
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
				err = errno;
			if (err == EINPROGRESS)
				return;
			if (err) {
				log_err(idx, "connect: %s", strerror(err));
				conn_fail(c, idx);
				return;
			}
			c->st = opt.plain ? ST_STARTUP : ST_SSLREQ;
			continue;
		case ST_SSLREQ:
			put32(sslreq, 8);
			put32(sslreq + 4, PG_SSLREQUEST_CODE);
			r = conn_write(c, idx, sslreq, sizeof(sslreq));
			if (r < 0)
				conn_fail(c, idx);
			if (r <= 0)
				return;
			c->st = ST_SSLRESP;
			continue;
		case ST_SSLRESP: {
			char a;

			n = recv(c->fd, &a, 1, 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				set_interest(c, idx, EPOLLIN);
				return;
			}
			if (n != 1 || a != 'S') {
				log_err(idx, "SSLRequest answered %s", n == 1 ? (a == 'N' ? "'N' (no TLS)" : "garbage")
									   : n == 0 ? "by EOF" : strerror(errno));
				conn_fail(c, idx);
				return;
			}
			c->ssl = SSL_new(ctx);
			if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
				log_err(idx, "SSL_new failed");
				conn_fail(c, idx);
				return;
			}
			SSL_set_connect_state(c->ssl);
			c->st = ST_HANDSHAKE;
			continue;
		}
		case ST_HANDSHAKE:
			ERR_clear_error();
			r = SSL_connect(c->ssl);
			if (r != 1) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					set_interest(c, idx, e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
					return;
				}
				log_err(idx, "SSL_connect: error %d (%s)", e, strerror(errno));
				conn_fail(c, idx);
				return;
			}
			c->st = ST_STARTUP;
			continue;
		case ST_STARTUP:
			r = conn_write(c, idx, startup, startup_len);
			if (r < 0)
				conn_fail(c, idx);
			if (r <= 0)
				return;
			c->st = ST_AUTH;
			continue;
		case ST_AUTH:
			if (c->rlen == RBUF_SIZE) {
				log_err(idx, "backend message too large");
				conn_fail(c, idx);
				return;
			}
			n = conn_read(c, idx, c->rbuf + c->rlen, RBUF_SIZE - c->rlen);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				if (n == 0)
					log_err(idx, "EOF before ReadyForQuery");
				conn_fail(c, idx);
				return;
			}
			c->rlen += (size_t)n;
			r = parse_backend(c, idx);
			if (r < 0) {
				conn_fail(c, idx);
				return;
			}
			if (r == 0)
				continue;
			free(c->rbuf);
			c->rbuf = NULL;
			c->st = ST_READY;
			n_ready++;
			set_interest(c, idx, EPOLLIN | EPOLLRDHUP);
			return;
		case ST_READY: {
			/* Idle: anything the server sends is drained; EOF means it dropped us. */
			unsigned char junk[512];

			n = conn_read(c, idx, junk, sizeof(junk));
			if (n == -EAGAIN)
				return;
			if (n > 0)
				continue;
			conn_close(c);
			n_closed_idle++;
			return;
		}
		case ST_DONE:
			return;
		}
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: idleconn -p PORT [-h HOST] [-n N] [-c PARALLEL] [-U USER] [-d DB] [-P] [-s CIPHERSUITES]\n"
		"                [-t TIMEOUT_S] [-v]\n"
		"  Opens N PostgreSQL connections (SSLRequest + TLS unless -P, StartupMessage, trust auth),\n"
		"  at most PARALLEL in setup at once; prints 'ready ...' when all are set up, then holds\n"
		"  them until stdin reaches EOF or SIGINT/SIGTERM. Exit 0 if all N were ready and none\n"
		"  was closed by the server while idle.\n");
	exit(2);
}

static int parse_args(int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "h:p:n:c:U:d:Ps:t:v")) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'n': opt.n = atoi(optarg); break;
		case 'c': opt.parallel = atoi(optarg); break;
		case 'U': opt.user = optarg; break;
		case 'd': opt.db = optarg; break;
		case 'P': opt.plain = 1; break;
		case 's': opt.ciphersuites = optarg; break;
		case 't': opt.timeout_s = atoi(optarg); break;
		case 'v': opt.verbose = 1; break;
		default: usage();
		}
	}
	if (!opt.port || opt.n < 0 || opt.parallel < 1 || opt.timeout_s < 1 || optind != argc)
		usage();
	return 0;
}

static int setup(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct rlimit rl;
	int r;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.n + 16) {
		fprintf(stderr, "level=error mod=idleconn msg=\"open-files limit %llu is too low for %d connections\"\n",
			(unsigned long long)rl.rlim_cur, opt.n);
		return -EMFILE;
	}
	r = getaddrinfo(opt.host, opt.port, &hints, &addr);
	if (r) {
		fprintf(stderr, "level=error mod=idleconn msg=\"%s:%s: %s\"\n", opt.host, opt.port, gai_strerror(r));
		return -EINVAL;
	}
	if (build_startup() < 0) {
		fprintf(stderr, "level=error mod=idleconn msg=\"user/database names too long\"\n");
		return -EINVAL;
	}
	if (!opt.plain) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx)
			return -ENOMEM;
		/* sslmode=require: encrypted, server not verified (as pgbench/psql here). */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		/* Keep the load generator's own memory small with thousands of idle sessions. */
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
		if (opt.ciphersuites && !SSL_CTX_set_ciphersuites(ctx, opt.ciphersuites)) {
			log_err(-1, "bad ciphersuites '%s'", opt.ciphersuites);
			return -EINVAL;
		}
	}
	conns = calloc((size_t)opt.n + 1, sizeof(*conns));
	if (!conns)
		return -ENOMEM;
	for (int i = 0; i < opt.n; i++)
		conns[i].fd = -1;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

/* Add stdin (EOF ends the hold) and a signalfd to the epoll set. */
static int watch_control(uint32_t stdin_tag, uint32_t sig_tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u32 = stdin_tag };
	sigset_t set;
	int sfd;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return -errno;
	/* A regular file or /dev/null as stdin cannot be polled: then only signals end the hold. */
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e) < 0 && errno != EPERM)
		return -errno;
	e.data.u32 = sig_tag;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &e) < 0)
		return -errno;
	return sfd;
}

int main(int argc, char **argv)
{
	struct epoll_event evs[256];
	const uint32_t stdin_tag = 0xfffffff0u, sig_tag = 0xfffffff1u;
	double t0, deadline, t_ready = 0;
	int next = 0, holding = 0, stop = 0, sfd, r;

	parse_args(argc, argv);
	if (setup() < 0)
		return 1;
	sfd = watch_control(stdin_tag, sig_tag);
	if (sfd < 0) {
		fprintf(stderr, "level=error mod=idleconn msg=\"signalfd/epoll: %s\"\n", strerror(-sfd));
		return 1;
	}
	t0 = now_s();
	deadline = t0 + opt.timeout_s;
	while (!stop) {
		int timeout_ms = -1, n;

		/* Keep PARALLEL connections in setup; start more as others finish. */
		while (next < opt.n && n_started - n_ready - n_failed < opt.parallel) {
			if (conn_start(next) < 0) {
				fprintf(stderr, "level=error mod=idleconn msg=\"cannot open connection %d\"\n", next);
				return 1;
			}
			conn_step(next++);
		}
		if (!holding && n_ready + n_failed == opt.n) {
			t_ready = now_s();
			printf("ready n=%d ok=%d failed=%d secs=%.3f\n", opt.n, n_ready, n_failed, t_ready - t0);
			fflush(stdout);
			holding = 1;
		}
		if (!holding) {
			double left = deadline - now_s();

			if (left <= 0) {
				printf("timeout n=%d ok=%d failed=%d pending=%d secs=%.3f\n", opt.n, n_ready,
				       n_failed, opt.n - n_ready - n_failed, now_s() - t0);
				fflush(stdout);
				return 1;
			}
			timeout_ms = (int)(left * 1000) + 1;
		}
		n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout_ms);
		if (n < 0 && errno != EINTR) {
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag == sig_tag) {
				stop = 1;
			} else if (tag == stdin_tag) {
				char buf[256];
				ssize_t got = read(0, buf, sizeof(buf));

				if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
					stop = 1;
					epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
				}
			} else {
				conn_step((int)tag);
			}
		}
	}
	r = n_ready == opt.n && n_closed_idle == 0 ? 0 : 1;
	printf("done n=%d ok=%d failed=%d closed_while_idle=%d held_secs=%.3f\n", opt.n, n_ready, n_failed,
	       n_closed_idle, holding ? now_s() - t_ready : 0.0);
	fflush(stdout);
	/* Exit without a graceful close: the terminator sees a burst of resets/EOFs, fine here. */
	return r;
}
