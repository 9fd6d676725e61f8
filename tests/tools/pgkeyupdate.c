// SPDX-License-Identifier: MIT
// Test client: a PostgreSQL session over TLS 1.3 (SSLRequest, then OpenSSL)
// that sends a KeyUpdate before each query and checks every answer, so a
// relay that loses track of the keys shows up as a failed query or a dropped
// connection. Used by the kTLS VM suite; not part of the product.
//
// usage: pgkeyupdate HOST PORT USER DATABASE ROUNDS [k|K|flood]
//   k: KeyUpdate(update_not_requested)   K: update_requested (the server
//   must answer with its own KeyUpdate and rekey its sending side too)
//   flood: a 2 KB receive buffer, half a query, then ROUNDS times one byte of it
//     and 32 KeyUpdate(update_requested), never reading: the server must close
//     the connection rather than queue its answers without bound (exit 0 when
//     it did, 1 when every round went through)
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define REPLY_BYTES 50000 /* several records in the server's direction per query */

static SSL *ssl;

static void die(const char *what)
{
	fprintf(stderr, "pgkeyupdate: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void tls_write(const void *buf, int len)
{
	if (SSL_write(ssl, buf, len) != len)
		die("SSL_write failed");
}

static void tls_read(void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		int n = SSL_read(ssl, (uint8_t *)buf + got, (int)(len - got));
		if (n <= 0)
			die("connection closed or TLS error while reading");
		got += (size_t)n;
	}
}

/* Read one backend message: its type; body (malloc'd) and length out. */
static int read_msg(uint8_t **body, uint32_t *len)
{
	uint8_t hdr[5];
	tls_read(hdr, 5);
	*len = get32(hdr + 1);
	if (*len < 4 || *len > (1u << 24))
		die("bad message length from the server");
	*len -= 4;
	if (!(*body = malloc(*len + 1)))
		die("out of memory");
	tls_read(*body, *len);
	(*body)[*len] = 0;
	if (hdr[0] == 'E') {
		for (uint8_t *p = *body; p < *body + *len && *p; p += strlen((char *)p + 1) + 2)
			if (*p == 'M')
				fprintf(stderr, "pgkeyupdate: server error: %s\n", (char *)p + 1);
		exit(1);
	}
	return hdr[0];
}

/* Read until ReadyForQuery; check the one DataRow against round i (0: none expected). */
static void until_ready(int i)
{
	uint8_t *b;
	uint32_t len;
	int t, rows = 0;
	while ((t = read_msg(&b, &len)) != 'Z') {
		if (t == 'R' && len >= 4 && get32(b) != 0)
			die("the server wants a password; use a trust user");
		if (t == 'D') {
			/* int16 ncols, then int32 len + bytes per column */
			char want[16];
			snprintf(want, sizeof(want), "%d", i);
			uint32_t l1 = len >= 6 ? get32(b + 2) : 0;
			if (len != 6 + l1 + 4 + REPLY_BYTES || l1 != strlen(want) || memcmp(b + 6, want, l1) ||
			    get32(b + 6 + l1) != REPLY_BYTES)
				die("wrong DataRow");
			rows++;
		}
		free(b);
	}
	free(b);
	if (rows != (i ? 1 : 0))
		die("wrong number of rows");
}

/* Never read; see whether the server gives up on us. */
static int flood(int rounds)
{
	static const uint8_t half[5] = { 'Q', 0x01, 0x00, 0x00, 0x00 }; /* a 16 MB query, never finished */
	tls_write(half, 5);
	for (int i = 0; i < rounds; i++) {
		if (SSL_write(ssl, " ", 1) != 1) {
			printf("pgkeyupdate: the server closed the connection after %d rounds\n", i);
			return 0;
		}
		for (int k = 0; k < 32; k++)
			if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) || SSL_do_handshake(ssl) != 1) {
				printf("pgkeyupdate: the server closed the connection after %d rounds\n", i);
				return 0;
			}
	}
	printf("pgkeyupdate: all %d rounds (%d KeyUpdates) went through unread\n", rounds, rounds * 32);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 6 || (argc == 7 && strcmp(argv[6], "k") && strcmp(argv[6], "K") && strcmp(argv[6], "flood"))) {
		fprintf(stderr, "usage: pgkeyupdate HOST PORT USER DATABASE ROUNDS [k|K|flood]\n");
		return 2;
	}
	int rounds = atoi(argv[5]), requested = argc == 7 && argv[6][0] == 'K';
	const char *mode = argc == 7 ? argv[6] : "k";
	signal(SIGPIPE, SIG_IGN);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		die("cannot resolve the address");
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int small = 2048;
	if (strcmp(mode, "flood") == 0) /* before connect, so the window stays small */
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen))
		die("connect failed");
	freeaddrinfo(ai);

	uint8_t req[8], s;
	put32(req, 8);
	put32(req + 4, 80877103); /* SSLRequest */
	if (write(fd, req, 8) != 8 || read(fd, &s, 1) != 1 || s != 'S')
		die("SSLRequest not answered with 'S'");
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		die("SSL_CTX setup failed");
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1)
		die("TLS handshake failed");

	uint8_t pkt[512];
	int n = 8;
	n += snprintf((char *)pkt + n, sizeof(pkt) - (size_t)n - 1, "user%c%s%cdatabase%c%s%c", 0, argv[3], 0, 0,
		      argv[4], 0);
	if (n >= (int)sizeof(pkt) - 1)
		die("user or database too long");
	pkt[n++] = 0;
	put32(pkt, (uint32_t)n);
	put32(pkt + 4, 196608); /* protocol 3.0 */
	tls_write(pkt, n);
	until_ready(0);
	if (strcmp(mode, "flood") == 0)
		return flood(rounds);

	for (int i = 1; i <= rounds; i++) {
		if (!SSL_key_update(ssl, requested ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED))
			die("SSL_key_update failed");
		char q[128];
		int ql = snprintf(q + 5, sizeof(q) - 5, "SELECT %d, repeat('x', %d)", i, REPLY_BYTES) + 1;
		q[0] = 'Q';
		put32((uint8_t *)q + 1, (uint32_t)ql + 4);
		tls_write(q, ql + 5); /* the KeyUpdate goes out first, then the query under the new key */
		until_ready(i);
	}
	static const uint8_t term[5] = { 'X', 0, 0, 0, 4 };
	tls_write(term, 5);
	SSL_shutdown(ssl);
	printf("pgkeyupdate: %d queries, each after a KeyUpdate%s, all answered\n", rounds,
	       requested ? " (update_requested)" : "");
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
