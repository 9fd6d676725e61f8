// SPDX-License-Identifier: MIT
// Socket helpers: address parsing and resolution, listening sockets.
#include "sidecar.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int net_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		const char *path = spec + 5;
		if (strlen(path) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "%s: unix socket path too long", spec);
			return -ENAMETOOLONG;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		return 0;
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
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Loopback or wildcard: where a wildcard listener also accepts. */
static int local_or_any(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
		return a == INADDR_ANY || (a >> 24) == 127;
	}
	const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) ||
	       (IN6_IS_ADDR_V4MAPPED(a) && (a->s6_addr[12] == 127 || !memcmp(a->s6_addr + 12, "\0\0\0\0", 4)));
}

static int any_addr(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

int net_same_endpoint(const struct sockaddr_storage *listen, const struct sockaddr_storage *backend)
{
	if ((listen->ss_family != AF_INET && listen->ss_family != AF_INET6) ||
	    (backend->ss_family != AF_INET && backend->ss_family != AF_INET6))
		return 0;
	in_port_t lp = listen->ss_family == AF_INET ? ((const struct sockaddr_in *)listen)->sin_port
						     : ((const struct sockaddr_in6 *)listen)->sin6_port;
	in_port_t bp = backend->ss_family == AF_INET ? ((const struct sockaddr_in *)backend)->sin_port
						      : ((const struct sockaddr_in6 *)backend)->sin6_port;
	if (lp != bp)
		return 0;
	if (any_addr(listen))
		return local_or_any(backend); /* a dual-stack [::] takes IPv4 too */
	if (listen->ss_family != backend->ss_family)
		return 0;
	if (listen->ss_family == AF_INET)
		return ((const struct sockaddr_in *)listen)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)backend)->sin_addr.s_addr;
	return !memcmp(&((const struct sockaddr_in6 *)listen)->sin6_addr,
		       &((const struct sockaddr_in6 *)backend)->sin6_addr, sizeof(struct in6_addr));
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
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
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
