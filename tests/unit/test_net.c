// SPDX-License-Identifier: MIT
// Unit tests for net.c's loop check: would a connection to --backend reach the
// sidecar's own --listen? IPv4, IPv6, v4-mapped, wildcards and dual-stack [::]. And
// net_resolve_all: a name's addresses, each once.
#include <stdio.h>
#include <string.h>

#include "sidecar.h"
#include "tap.h"

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	char err[128];
	if (net_resolve(s, &ss, &len, err, sizeof(err)))
		diag("cannot resolve %s: %s", s, err);
	return ss;
}

int main(void)
{
	static const struct {
		const char *listen, *backend;
		int loops;
	} cases[] = {
		{ "0.0.0.0:5433", "127.0.0.1:5433", 1 },	  { "0.0.0.0:5433", "127.0.0.2:5433", 1 },
		{ "0.0.0.0:5433", "0.0.0.0:5433", 1 },	  { "0.0.0.0:5433", "127.0.0.1:6432", 0 },
		{ "0.0.0.0:5433", "10.0.0.1:5433", 0 },	  { "0.0.0.0:5433", "[::1]:5433", 0 },
		{ "127.0.0.1:5433", "127.0.0.1:5433", 1 },	  { "127.0.0.1:5433", "127.0.0.2:5433", 0 },
		{ "127.0.0.1:5433", "[::ffff:127.0.0.1]:5433", 1 }, { "[::]:5433", "127.0.0.1:5433", 1 },
		{ "[::]:5433", "[::1]:5433", 1 },		  { "[::]:5433", "[::ffff:127.0.0.1]:5433", 1 },
		{ "[::1]:5433", "[::1]:5433", 1 },		  { "[::1]:5433", "127.0.0.1:5433", 0 },
		{ "[::1]:5433", "[::2]:5433", 0 },		  { "127.0.0.1:5433", "unix:/tmp/.s.PGSQL.5433", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage l = addr(cases[i].listen), b = addr(cases[i].backend);
		is(net_same_endpoint(&l, &b), cases[i].loops, "listen %s, backend %s: %s", cases[i].listen,
		   cases[i].backend, cases[i].loops ? "a loop" : "no loop");
	}
	/* every address of a name, each once, in order; a unix path is one address */
	struct backend_addr a[KS_MAX_BACKENDS];
	char err[128];
	is(net_resolve_all("unix:/tmp/.s.PGSQL.6432", a, KS_MAX_BACKENDS, err, sizeof(err)), 1, "unix: one address");
	is(a[0].ss.ss_family, AF_UNIX, "... a unix one");
	is(net_resolve_all("127.0.0.1:6432", a, KS_MAX_BACKENDS, err, sizeof(err)), 1, "an IPv4 literal: one address");
	is(net_port(&a[0].ss), 6432, "... with its port");
	int n = net_resolve_all("localhost:6432", a, KS_MAX_BACKENDS, err, sizeof(err)), dup = 0;
	ok(n >= 1 && n <= KS_MAX_BACKENDS, "localhost: %d address(es)", n);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			dup |= a[i].len == a[j].len && !memcmp(&a[i].ss, &a[j].ss, a[i].len);
	ok(!dup, "... none twice (getaddrinfo repeats some)");
	ok(net_resolve_all("localhost:6432", a, 1, err, sizeof(err)) == 1, "at most max of them");
	err[0] = 0; /* (no unknown name: that would wait on DNS) */
	ok(net_resolve_all("127.0.0.1", a, KS_MAX_BACKENDS, err, sizeof(err)) < 0 && err[0], "no port: an error (%s)",
	   err);
	return done_testing();
}
