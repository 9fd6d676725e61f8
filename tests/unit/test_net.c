// SPDX-License-Identifier: MIT
// Unit tests for net.c's loop check: would a connection to --backend reach the
// sidecar's own --listen? IPv4, IPv6, v4-mapped, wildcards and dual-stack [::].
#include <stdio.h>

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
	return done_testing();
}
