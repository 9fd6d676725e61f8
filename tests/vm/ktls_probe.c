// SPDX-License-Identifier: MIT
// ktls_probe: checks whether this kernel can do kernel TLS (kTLS) in software.
// It makes a loopback TCP pair, attaches the "tls" ULP to both ends, installs
// TLS 1.2 AES-GCM-128 with a dummy key as TLS_TX on one end and TLS_RX on the
// other, and checks that data sent through arrives intact.
// Prints "ktls: ok" (exit 0) or "ktls: unavailable: <reason>" (exit 1).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static const char *errno_name(int e)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *n = strerrorname_np(e);
	if (n)
		return n;
#endif
	static char buf[32];
	snprintf(buf, sizeof(buf), "errno %d", e);
	return buf;
}

__attribute__((format(printf, 1, 2), noreturn))
static void fail_errno(const char *fmt, ...)
{
	int e = errno;
	va_list ap;

	fputs("ktls: unavailable: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(": %s (%s)\n", errno_name(e), strerror(e));
	exit(1);
}

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("ktls: unavailable: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	exit(1);
}

static void make_pair(int *client, int *server)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		.sin_port = 0,
	};
	socklen_t len = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (lfd < 0)
		fail_errno("socket");
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		fail_errno("bind 127.0.0.1");
	if (listen(lfd, 1) < 0)
		fail_errno("listen");
	if (getsockname(lfd, (struct sockaddr *)&addr, &len) < 0)
		fail_errno("getsockname");

	*client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*client < 0)
		fail_errno("socket");
	if (connect(*client, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		fail_errno("connect 127.0.0.1:%u", ntohs(addr.sin_port));
	*server = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (*server < 0)
		fail_errno("accept");
	close(lfd);

	/* Never hang forever if records get lost or mangled. */
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(*server, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(*client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void install(int fd, int dir, const char *what)
{
	struct tls12_crypto_info_aes_gcm_128 ci;

	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		fail_errno("setsockopt(TCP_ULP, \"tls\") on %s side", what);

	/* Dummy key material; both ends must agree. */
	memset(&ci, 0, sizeof(ci));
	ci.info.version = TLS_1_2_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	memset(ci.key, 0x11, sizeof(ci.key));
	memset(ci.iv, 0x22, sizeof(ci.iv));
	memset(ci.salt, 0x33, sizeof(ci.salt));
	memset(ci.rec_seq, 0, sizeof(ci.rec_seq));

	if (setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) < 0)
		fail_errno("setsockopt(SOL_TLS, %s, AES-GCM-128)",
			   dir == TLS_TX ? "TLS_TX" : "TLS_RX");
}

int main(void)
{
	/* Larger than one TLS record (16 KiB) so several records are used. */
	enum { MSG_LEN = 40000 };
	static unsigned char out[MSG_LEN], in[MSG_LEN];
	int client, server;
	size_t off;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(i * 31u + 7u);
	memcpy(out, "hello kTLS", 10);

	make_pair(&client, &server);
	install(client, TLS_TX, "client");
	install(server, TLS_RX, "server");

	for (off = 0; off < sizeof(out);) {
		ssize_t n = send(client, out + off, sizeof(out) - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail_errno("send through TLS_TX socket");
		}
		off += (size_t)n;
	}

	for (off = 0; off < sizeof(in);) {
		ssize_t n = recv(server, in + off, sizeof(in) - off, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail_errno("recv from TLS_RX socket after %zu bytes", off);
		}
		if (n == 0)
			fail("recv: unexpected EOF after %zu of %zu bytes", off, sizeof(in));
		off += (size_t)n;
	}

	if (memcmp(in, out, sizeof(out)) != 0)
		fail("data received through kTLS differs from data sent");

	close(client);
	close(server);
	puts("ktls: ok");
	return 0;
}
