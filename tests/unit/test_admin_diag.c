// SPDX-License-Identifier: MIT
// Unit tests for admin_diag_fill (sock_diag through libnl): loopback TCP pairs made
// here are found by their (local, client) addresses, over IPv4, IPv6 and a dual-stack
// listener; tcp_info gives the RTT; no ULP is "none"; without CAP_NET_ADMIN a socket
// the daemon calls kTLS is "unknown (needs CAP_NET_ADMIN)"; with the tls module
// (the VM) the ULP's version, cipher and SW/HW state; and `show conns` end to end.
#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "ktls.h"
#include "tap.h"

#define NEEDS_CAP "unknown (needs CAP_NET_ADMIN)"

struct pair {
	int lfd, cfd, sfd;             /* listener, client side, accepted (the sidecar's) side */
	char local[64], client[64];    /* as the daemon would report them for sfd */
};

static void addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	}
}

/* Listen on family's any/loopback address, connect from 127.0.0.1 or ::1, accept. 0 or -1. */
static int pair_open(struct pair *p, int lfamily, int any, int cfamily)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int off = 0;

	p->lfd = socket(lfamily, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfamily == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = any ? in6addr_any : in6addr_loopback;
		len = sizeof(*in6);
		setsockopt(p->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(any ? INADDR_ANY : INADDR_LOOPBACK);
		len = sizeof(*in);
	}
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&ss, len) || listen(p->lfd, 4) ||
	    getsockname(p->lfd, (struct sockaddr *)&ss, &len))
		return -1;
	uint16_t port = lfamily == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					    : ((struct sockaddr_in *)&ss)->sin_port;
	memset(&ss, 0, sizeof(ss));
	if (cfamily == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = port;
		len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_port = port;
		len = sizeof(*in);
	}
	p->cfd = socket(cfamily, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->cfd < 0 || connect(p->cfd, (struct sockaddr *)&ss, len))
		return -1;
	p->sfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (p->sfd < 0)
		return -1;
	/* A few round trips, so that tcp_info has an RTT sample. */
	char b[64];
	for (int i = 0; i < 3; i++)
		if (send(p->cfd, "ping", 4, 0) != 4 || recv(p->sfd, b, sizeof(b), 0) <= 0 ||
		    send(p->sfd, "pong", 4, 0) != 4 || recv(p->cfd, b, sizeof(b), 0) <= 0)
			return -1;
	len = sizeof(ss);
	getsockname(p->sfd, (struct sockaddr *)&ss, &len);
	addr_str(&ss, p->local, sizeof(p->local));
	len = sizeof(ss);
	getpeername(p->sfd, (struct sockaddr *)&ss, &len);
	addr_str(&ss, p->client, sizeof(p->client));
	return 0;
}

static void pair_close(struct pair *p)
{
	close(p->sfd);
	close(p->cfd);
	close(p->lfd);
}

static struct admin_conn conn_of(const struct pair *p, const char *ktls)
{
	struct admin_conn c = { .id = 1 };
	snprintf(c.local, sizeof(c.local), "%s", p->local);
	snprintf(c.client, sizeof(c.client), "%s", p->client);
	snprintf(c.ktls, sizeof(c.ktls), "%s", ktls);
	/* whatever was there must be replaced */
	snprintf(c.k_ulp, sizeof(c.k_ulp), "junk");
	snprintf(c.k_txconf, sizeof(c.k_txconf), "junk");
	c.k_rtt_us = 12345678;
	return c;
}

static int plain_tcp(const struct admin_conn *c)
{
	return strcmp(c->k_ulp, "") == 0 && strcmp(c->k_txconf, "none") == 0 &&
	       strcmp(c->k_rxconf, "none") == 0 && c->k_version[0] == 0;
}

static int not_found(const struct admin_conn *c)
{
	return c->k_ulp[0] == 0 && c->k_txconf[0] == 0 && c->k_rxconf[0] == 0 && c->k_rtt_us == 0;
}

static void test_ipv4(void)
{
	struct pair p, q;
	struct admin_conn c[5];

	if (pair_open(&p, AF_INET, 0, AF_INET) || pair_open(&q, AF_INET, 0, AF_INET)) {
		skip("cannot make a loopback TCP pair");
		return;
	}
	c[0] = conn_of(&p, "off");
	c[1] = conn_of(&p, "tx+rx");   /* the same socket, listed twice, said to be kTLS */
	c[2] = conn_of(&p, "off");
	snprintf(c[2].local, sizeof(c[2].local), "unix:/run/x");
	c[3] = conn_of(&p, "off");
	snprintf(c[3].client, sizeof(c[3].client), "127.0.0.1:1"); /* no such socket */
	c[4] = conn_of(&q, "off");     /* another listening port */

	is(admin_diag_fill(c, 1), 0, "one connection, one port (kernel-side port filter): 0");
	ok(plain_tcp(&c[0]), "found: no ULP, txconf/rxconf none (k_ulp '%s', tx '%s')", c[0].k_ulp,
	   c[0].k_txconf);
	ok(c[0].k_rtt_us > 0 && c[0].k_rtt_us < 1000000, "tcp_info RTT (%u us)", c[0].k_rtt_us);
	ok(c[0].k_retrans == 0, "no retransmits on loopback");

	is(admin_diag_fill(c, 5), 0, "five connections over two ports: 0");
	ok(plain_tcp(&c[0]) && c[0].k_rtt_us > 0, "first found again");
	ok(plain_tcp(&c[1]) && c[1].k_rtt_us > 0, "listed twice: both filled; with CAP_NET_ADMIN, "
						  "no ULP is none even when the daemon says kTLS");
	ok(not_found(&c[2]), "a unix address: kernel view left empty");
	ok(not_found(&c[3]), "a socket that does not exist: left empty");
	ok(plain_tcp(&c[4]) && c[4].k_rtt_us > 0, "the connection on the other port found");

	is(admin_diag_fill(NULL, 0), 0, "no connections: 0");
	is(admin_diag_fill(NULL, 1), -EINVAL, "NULL with n > 0: -EINVAL");
	pair_close(&q);
	pair_close(&p);
}

static void test_ipv6(void)
{
	struct pair p, d;
	struct admin_conn c[3];

	if (pair_open(&p, AF_INET6, 0, AF_INET6)) {
		skip("no IPv6 loopback");
		skip("no IPv6 loopback");
		return;
	}
	c[0] = conn_of(&p, "off");
	is(admin_diag_fill(c, 1), 0, "IPv6 pair: 0");
	ok(plain_tcp(&c[0]) && c[0].k_rtt_us > 0, "IPv6 connection found (%s <- %s)", c[0].local, c[0].client);
	pair_close(&p);

	/* A dual-stack listener: an IPv4 client shows up as ::ffff:127.0.0.1 on an AF_INET6
	 * socket; the daemon may print it either way. */
	if (pair_open(&d, AF_INET6, 1, AF_INET)) {
		skip("no dual-stack listener");
		return;
	}
	c[0] = conn_of(&d, "off");
	c[1] = conn_of(&d, "off");
	char *lp = strrchr(d.local, ':'), *cp = strrchr(d.client, ':');
	snprintf(c[1].local, sizeof(c[1].local), "127.0.0.1%s", lp);
	snprintf(c[1].client, sizeof(c[1].client), "127.0.0.1%s", cp);
	is(admin_diag_fill(c, 2), 0, "dual-stack: 0");
	ok(strstr(c[0].local, "::ffff:") && plain_tcp(&c[0]), "v4-mapped written as IPv6 found (%s)", c[0].local);
	ok(plain_tcp(&c[1]) && c[1].k_rtt_us > 0, "... and written as IPv4 (%s)", c[1].local);
	pair_close(&d);
}

/* Without CAP_NET_ADMIN the kernel leaves ULP info out: a socket the daemon calls kTLS
 * cannot be told from plain TCP, and says so. */
static void test_no_cap(void)
{
	struct pair p;
	if (geteuid() != 0) {
		skip("not root: cannot compare with and without CAP_NET_ADMIN");
		return;
	}
	if (pair_open(&p, AF_INET, 0, AF_INET)) {
		skip("cannot make a loopback TCP pair");
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct d[2];
		struct admin_conn c[2] = { conn_of(&p, "tx+rx"), conn_of(&p, "off") };
		if (syscall(SYS_capget, &h, d))
			_exit(10);
		d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
		if (syscall(SYS_capset, &h, d))
			_exit(11);
		if (admin_diag_fill(c, 2))
			_exit(12);
		if (strcmp(c[0].k_txconf, NEEDS_CAP) || strcmp(c[0].k_rxconf, NEEDS_CAP) || c[0].k_rtt_us == 0)
			_exit(13);
		_exit(plain_tcp(&c[1]) ? 0 : 14);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "without CAP_NET_ADMIN: kTLS per the daemon is '" NEEDS_CAP "', plain stays none (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	pair_close(&p);
}

/* With the tls module (the VM), the ULP and its state per direction. */
static void test_ulp(void)
{
	struct pair p;
	struct ktls_keys k = { .version = 0x0304, .cipher = KTLS_AES_256_GCM };

	if (pair_open(&p, AF_INET, 0, AF_INET)) {
		skip("cannot make a loopback TCP pair");
		return;
	}
	int rc = ktls_attach(p.sfd);
	if (rc) {
		char why[128];
		snprintf(why, sizeof(why), "no kernel TLS here (ktls_attach: %s); ULP info needs the VM",
			 strerror(-rc));
		skip(why);
		pair_close(&p);
		return;
	}
	struct admin_conn c[1] = { conn_of(&p, "off") };
	is(admin_diag_fill(c, 1), 0, "tls ULP without keys: 0");
	ok(strcmp(c[0].k_ulp, "tls") == 0 && strcmp(c[0].k_txconf, "BASE") == 0 &&
	   strcmp(c[0].k_rxconf, "BASE") == 0, "ULP tls, BASE/BASE before keys (%s %s/%s)", c[0].k_ulp,
	   c[0].k_txconf, c[0].k_rxconf);
	if (ktls_install(p.sfd, KTLS_TX, &k) || ktls_install(p.sfd, KTLS_RX, &k)) {
		skip("cannot install TLS 1.3 AES-256-GCM keys");
		pair_close(&p);
		return;
	}
	c[0] = conn_of(&p, "tx+rx");
	is(admin_diag_fill(c, 1), 0, "tls ULP with keys: 0");
	ok(strcmp(c[0].k_version, "TLSv1.3") == 0 && strcmp(c[0].k_cipher, "aes-256-gcm") == 0,
	   "version and cipher (%s %s)", c[0].k_version, c[0].k_cipher);
	ok((strcmp(c[0].k_txconf, "SW") == 0 || strcmp(c[0].k_txconf, "HW") == 0) &&
	   (strcmp(c[0].k_rxconf, "SW") == 0 || strcmp(c[0].k_rxconf, "HW") == 0),
	   "tx/rx in software or hardware (%s/%s)", c[0].k_txconf, c[0].k_rxconf);
	pair_close(&p);
}

/* ---- show conns end to end -------------------------------------------------------------- */

static struct pair live;

static int live_conns(void *ctx, struct admin_conn **out, size_t *n)
{
	(void)ctx;
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	**out = conn_of(&live, "off");
	snprintf((*out)->state, sizeof((*out)->state), "relay");
	*n = 1;
	return 0;
}

static void test_show_conns(void)
{
	static const struct admin_ops ops = { .conns = live_conns };
	char dir[] = "/tmp/test_admin_diag_XXXXXX", path[64], *t = NULL, *t2 = NULL, py[4096];
	struct admin *a = NULL;
	size_t len;

	if (!mkdtemp(dir) || pair_open(&live, AF_INET, 0, AF_INET)) {
		skip("no temporary directory or loopback pair");
		return;
	}
	snprintf(path, sizeof(path), "%s/admin.sock", dir);
	is(admin_start(path, NULL, &ops, NULL, &a), 0, "admin_start");
	FILE *f = open_memstream(&t, &len);
	int rc = admin_ctl(path, "show conns json", f);
	fclose(f);
	is(rc, 0, "ctl show conns json: 0");
	FILE *g = open_memstream(&t2, &len);
	is(admin_ctl(path, "show stats", g), -EINVAL, "no snapshot callback: show stats fails");
	fclose(g);
	is_str(t2, "ERROR: not supported\n", "... with ERROR: not supported");
	free(t2);
	snprintf(py, sizeof(py),
		 "python3 -c 'import json,sys; c=json.loads(sys.argv[1])[\"conns\"][0]; "
		 "sys.exit(0 if c[\"kernel\"][\"txconf\"]==\"none\" and c[\"kernel\"][\"rtt_us\"]>0 and "
		 "c[\"client\"]==\"%s\" else 1)' '%s'",
		 live.client, t ? t : "");
	if (system("python3 -c pass >/dev/null 2>&1") == 0)
		ok(system(py) == 0, "the answer carries the kernel's view of the live socket");
	else
		skip("python3 not available");
	free(t);
	admin_stop(a);
	pair_close(&live);
	rmdir(dir);
}

int main(void)
{
	test_ipv4();
	test_ipv6();
	test_no_cap();
	test_ulp();
	test_show_conns();
	return done_testing();
}
