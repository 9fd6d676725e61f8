// SPDX-License-Identifier: MIT
// Socket helpers: address parsing and resolution, listening sockets.
#include "sidecar.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* The addresses of spec (HOST:PORT, or unix:PATH), at most max of them, in
 * getaddrinfo's order and without repeats: how many, or -errno with err set. */
int net_resolve_all(const char *spec, struct backend_addr *out, int max, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out) * (size_t)max);
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
		const char *path = spec + 5;
		if (strlen(path) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "%s: unix socket path too long", spec);
			return -ENAMETOOLONG;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		return 1;
	}
	char host[256], port[8];
	unsigned p;
	if (config_split_hostport(spec, host, sizeof(host), &p)) {
		snprintf(err, errlen, "%s: expected HOST:PORT", spec);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", p);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "%s: %s", spec, gai_strerror(rc));
		return -EINVAL;
	}
	int n = 0;
	for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(out->ss))
			continue;
		int seen = 0;
		for (int i = 0; i < n && !seen; i++)
			seen = out[i].len == ai->ai_addrlen && !memcmp(&out[i].ss, ai->ai_addr, ai->ai_addrlen);
		if (seen)
			continue;
		memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
		out[n++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!n) {
		snprintf(err, errlen, "%s: no usable address", spec);
		return -EINVAL;
	}
	return n;
}

int net_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
	struct backend_addr a;
	int rc = net_resolve_all(spec, &a, 1, err, errlen);
	if (rc < 0)
		return rc;
	*ss = a.ss;
	*len = a.len;
	return 0;
}

/* The IPv4 address of a v4 or v4-mapped v6 address in *v4; 0 if it has none. */
static int ipv4_of(const struct sockaddr_storage *ss, uint32_t *v4)
{
	if (ss->ss_family == AF_INET) {
		*v4 = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
		return 1;
	}
	const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (!IN6_IS_ADDR_V4MAPPED(a))
		return 0;
	memcpy(v4, a->s6_addr + 12, 4);
	*v4 = ntohl(*v4);
	return 1;
}

unsigned net_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

int net_same_endpoint(const struct sockaddr_storage *listen, const struct sockaddr_storage *backend)
{
	if ((listen->ss_family != AF_INET && listen->ss_family != AF_INET6) ||
	    (backend->ss_family != AF_INET && backend->ss_family != AF_INET6) || net_port(listen) != net_port(backend))
		return 0;
	uint32_t l4, b4;
	int lv4 = ipv4_of(listen, &l4), bv4 = ipv4_of(backend, &b4);
	const struct in6_addr *l6 = &((const struct sockaddr_in6 *)listen)->sin6_addr,
			      *b6 = &((const struct sockaddr_in6 *)backend)->sin6_addr; /* read only for AF_INET6 */
	if (lv4 || bv4) { /* an IPv4 conversation: both sides must have an IPv4 address */
		if (!lv4 && IN6_IS_ADDR_UNSPECIFIED(l6))
			lv4 = 1, l4 = INADDR_ANY; /* [::] is dual-stack: it takes IPv4 too */
		if (!lv4 || !bv4)
			return 0;
		return l4 == INADDR_ANY ? b4 == INADDR_ANY || (b4 >> 24) == 127 : l4 == b4;
	}
	if (IN6_IS_ADDR_UNSPECIFIED(l6))
		return IN6_IS_ADDR_UNSPECIFIED(b6) || IN6_IS_ADDR_LOOPBACK(b6);
	return !memcmp(l6, b6, sizeof(*l6));
}

int net_port_free(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* TIME_WAIT is no owner */
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int net_listen(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* accepted connections inherit it: no setsockopt per connection */
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int net_keepalive(int fd, int idle_s, int intvl_s, int cnt)
{
	int on = idle_s > 0;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0)
		return -errno;
	if (on && (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s)) < 0 ||
		   setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof(intvl_s)) < 0 ||
		   setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0))
		return -errno;
	return 0;
}

void net_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		snprintf(buf, len, "unix:%s", ((const struct sockaddr_un *)ss)->sun_path);
	} else {
		snprintf(buf, len, "?");
	}
}
