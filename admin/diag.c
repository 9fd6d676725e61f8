// SPDX-License-Identifier: MIT
// The kernel's view of the client sockets for `show conns`: one NETLINK_SOCK_DIAG
// dump per family through libnl-3 core (libnl-idiag does not parse ULP info),
// matched to the daemon's connections by (local, client) address. It gives
// tcp_info (RTT, retransmits) and the TLS ULP state: version, cipher, and whether
// each direction's records are done in software or by the NIC.
#include "admin_int.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DIAG_RCVTIMEO_MS 1000          /* one receive */
#define DIAG_DEADLINE_MS 2000          /* the whole dump */
#define DIAG_MAX_SOCKETS (1u << 20)
#define DIAG_BUF_SIZE (64 * 1024)      /* a dump message is at most 32 KiB */
#define NEEDS_CAP "unknown (needs CAP_NET_ADMIN)"
/* Every state a relayed connection can be in; not LISTEN, SYN_RECV or TIME_WAIT. */
#define DIAG_STATES                                                                           \
	((1u << TCP_ESTABLISHED) | (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) |           \
	 (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING))

struct diag_key {
	uint8_t laddr[16], raddr[16];  /* IPv4 as v4-mapped IPv6: a dual-stack socket matches either */
	uint16_t lport, rport;
};

struct diag_ent {
	struct diag_key k;
	struct admin_conn *c;
};

struct diag_run {
	struct diag_ent *ent;
	size_t n;
	uint64_t deadline;
	size_t seen;
	int stopped;                   /* deadline or socket bound hit: the dump is incomplete */
	int has_cap;
};

/* libnl's NLE_* as -errno */
static int nl_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_AGAIN:
		return -ETIMEDOUT;
	case NLE_INTR:
		return -EINTR;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_OPNOTSUPP:
	case NLE_PROTO_MISMATCH:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	case NLE_BAD_SOCK:
		return -EBADF;
	default:
		return -EIO;
	}
}

/* The kernel hides ULP info from sock_diag readers without CAP_NET_ADMIN. */
static int have_net_admin(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };
	if (syscall(SYS_capget, &h, d))
		return 0;
	return !!(d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective & CAP_TO_MASK(CAP_NET_ADMIN));
}

static void key_addr(uint8_t out[16], int family, const void *addr)
{
	if (family == AF_INET) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		memcpy(out, mapped, 12);
		memcpy(out + 12, addr, 4);
	} else {
		memcpy(out, addr, 16);
	}
}

/* One "ip:port" / "[v6]:port" side of a connection. 0 or -EINVAL. */
static int key_side(const char *s, uint8_t addr[16], uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (admin_addr_parse(s, &ss, &len))
		return -EINVAL;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		key_addr(addr, AF_INET, &in->sin_addr);
		*port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		key_addr(addr, AF_INET6, &in6->sin6_addr);
		*port = ntohs(in6->sin6_port);
	}
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct diag_ent *)a)->k, &((const struct diag_ent *)b)->k,
		      sizeof(struct diag_key));
}

static void tls_version(uint16_t v, char *out, size_t len)
{
	if (v == TLS_1_2_VERSION || v == TLS_1_3_VERSION)
		snprintf(out, len, "%s", v == TLS_1_2_VERSION ? "TLSv1.2" : "TLSv1.3");
	else
		snprintf(out, len, "0x%04x", v);
}

static void tls_cipher(uint16_t c, char *out, size_t len)
{
	const char *s = NULL;
	switch (c) {
	case TLS_CIPHER_AES_GCM_128:
		s = "aes-128-gcm";
		break;
	case TLS_CIPHER_AES_GCM_256:
		s = "aes-256-gcm";
		break;
	case TLS_CIPHER_AES_CCM_128:
		s = "aes-128-ccm";
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		s = "chacha20-poly1305";
		break;
	}
	if (s)
		snprintf(out, len, "%s", s);
	else
		snprintf(out, len, "cipher-%u", c);
}

static void tls_conf(uint16_t c, char *out, size_t len)
{
	static const char *const names[] = { [TLS_CONF_BASE] = "BASE", [TLS_CONF_SW] = "SW",
					     [TLS_CONF_HW] = "HW", [TLS_CONF_HW_RECORD] = "HW_RECORD" };
	if (c < sizeof(names) / sizeof(names[0]) && names[c])
		snprintf(out, len, "%s", names[c]);
	else
		snprintf(out, len, "conf-%u", c);
}

/* A u16 attribute, if present and long enough. */
static int get_u16(struct nlattr *a, uint16_t *v)
{
	if (!a || nla_len(a) < (int)sizeof(uint16_t))
		return 0;
	*v = nla_get_u16(a);
	return 1;
}

#define SET(field, s) snprintf((field), sizeof(field), "%s", (s))

/* INET_DIAG_ULP_INFO: { INET_ULP_INFO_NAME, INET_ULP_INFO_TLS: { TLS_INFO_* } } */
static void fill_ulp(struct admin_conn *c, struct nlattr *ulp)
{
	struct nlattr *u[INET_ULP_INFO_MAX + 1], *t[TLS_INFO_MAX + 1];
	uint16_t v;

	if (nla_parse_nested(u, INET_ULP_INFO_MAX, ulp, NULL) < 0)
		return;
	if (u[INET_ULP_INFO_NAME])
		nla_strlcpy(c->k_ulp, u[INET_ULP_INFO_NAME], sizeof(c->k_ulp));
	if (strcmp(c->k_ulp, "tls"))
		return; /* another ULP (mptcp): no TLS state */
	if (!u[INET_ULP_INFO_TLS] || nla_parse_nested(t, TLS_INFO_MAX, u[INET_ULP_INFO_TLS], NULL) < 0) {
		SET(c->k_txconf, "unknown");
		SET(c->k_rxconf, "unknown");
		return;
	}
	if (get_u16(t[TLS_INFO_VERSION], &v))
		tls_version(v, c->k_version, sizeof(c->k_version));
	if (get_u16(t[TLS_INFO_CIPHER], &v))
		tls_cipher(v, c->k_cipher, sizeof(c->k_cipher));
	if (get_u16(t[TLS_INFO_TXCONF], &v))
		tls_conf(v, c->k_txconf, sizeof(c->k_txconf));
	if (get_u16(t[TLS_INFO_RXCONF], &v))
		tls_conf(v, c->k_rxconf, sizeof(c->k_rxconf));
}

static void fill(struct admin_conn *c, struct nlattr **tb, int has_cap)
{
	if (tb[INET_DIAG_INFO]) {
		struct tcp_info ti = { 0 };
		size_t len = (size_t)nla_len(tb[INET_DIAG_INFO]);
		memcpy(&ti, nla_data(tb[INET_DIAG_INFO]), len < sizeof(ti) ? len : sizeof(ti));
		c->k_rtt_us = ti.tcpi_rtt;
		c->k_retrans = ti.tcpi_total_retrans;
	}
	SET(c->k_txconf, "none");
	SET(c->k_rxconf, "none");
	if (tb[INET_DIAG_ULP_INFO]) {
		fill_ulp(c, tb[INET_DIAG_ULP_INFO]);
	} else if (!has_cap && c->ktls[0] && strcmp(c->ktls, "off")) {
		/* The daemon says kTLS; the kernel does not tell us without the capability. */
		SET(c->k_txconf, NEEDS_CAP);
		SET(c->k_rxconf, NEEDS_CAP);
	}
}

static int on_msg(struct nl_msg *msg, void *arg)
{
	struct diag_run *r = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct nlattr *tb[INET_DIAG_MAX + 1];
	struct diag_ent key;

	if (++r->seen > DIAG_MAX_SOCKETS || admin_now_ms() > r->deadline) {
		r->stopped = 1;
		return NL_STOP;
	}
	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || nlmsg_datalen(h) < (int)sizeof(struct inet_diag_msg))
		return NL_SKIP;
	const struct inet_diag_msg *m = nlmsg_data(h);
	if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
		return NL_SKIP;
	key_addr(key.k.laddr, m->idiag_family, m->id.idiag_src);
	key_addr(key.k.raddr, m->idiag_family, m->id.idiag_dst);
	key.k.lport = ntohs(m->id.idiag_sport);
	key.k.rport = ntohs(m->id.idiag_dport);
	struct diag_ent *e = bsearch(&key, r->ent, r->n, sizeof(*r->ent), key_cmp);
	if (!e || nlmsg_parse(h, sizeof(*m), tb, INET_DIAG_MAX, NULL) < 0)
		return NL_SKIP;
	while (e > r->ent && key_cmp(e - 1, &key) == 0) /* the daemon listed it twice */
		e--;
	for (; e < r->ent + r->n && key_cmp(e, &key) == 0; e++)
		fill(e->c, tb, r->has_cap);
	return NL_OK;
}

/* Dump family's TCP sockets (only those on lport if not 0) into on_msg. 0 or -errno. */
static int dump(struct nl_sock *sk, int family, uint16_t lport)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = (uint8_t)family,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_ext = 1 << (INET_DIAG_INFO - 1),
		.idiag_states = DIAG_STATES,
	};
	/* "source port == lport": yes jumps to the end (match), no past it (no match) */
	struct inet_diag_bc_op bc[2] = {
		{ .code = INET_DIAG_BC_S_EQ, .yes = 2 * sizeof(bc[0]), .no = 2 * sizeof(bc[0]) + 4 },
		{ .code = INET_DIAG_BC_NOP, .no = lport },
	};
	int rc = -ENOMEM;

	struct nl_msg *msg = nlmsg_alloc_simple(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP);
	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &req, sizeof(req), NLMSG_ALIGNTO) < 0 ||
	    (lport && nla_put(msg, INET_DIAG_REQ_BYTECODE, sizeof(bc), bc) < 0))
		goto out;
	rc = nl_send_auto(sk, msg);
	if (rc >= 0)
		rc = nl_recvmsgs_default(sk);
	rc = rc < 0 ? nl_errno(rc) : 0;
out:
	nlmsg_free(msg);
	return rc;
}

static int dump_all(struct diag_run *r, uint16_t lport)
{
	struct timeval tv = { .tv_sec = DIAG_RCVTIMEO_MS / 1000, .tv_usec = DIAG_RCVTIMEO_MS % 1000 * 1000 };
	int rc;

	struct nl_sock *sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	if ((rc = nl_connect(sk, NETLINK_SOCK_DIAG)) < 0) {
		rc = nl_errno(rc);
		goto out;
	}
	/* A message larger than the buffer is peeked at and read whole. */
	nl_socket_enable_msg_peek(sk);
	nl_socket_set_msg_buf_size(sk, DIAG_BUF_SIZE);
	if (setsockopt(nl_socket_get_fd(sk), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		rc = -errno;
		goto out;
	}
	if ((rc = nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, on_msg, r)) < 0) {
		rc = nl_errno(rc);
		goto out;
	}
	rc = dump(sk, AF_INET, lport);
	/* After a stop the socket still holds the rest of that dump: do not reuse it. */
	if (!rc && !r->stopped)
		rc = dump(sk, AF_INET6, lport);
out:
	nl_socket_free(sk);
	return rc;
}

int admin_diag_fill(struct admin_conn *c, size_t n)
{
	struct diag_run r = { .deadline = admin_now_ms() + DIAG_DEADLINE_MS };
	uint16_t lport = 0;
	int rc = 0, mixed = 0;

	if (n && !c)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		c[i].k_ulp[0] = c[i].k_version[0] = c[i].k_cipher[0] = 0;
		c[i].k_txconf[0] = c[i].k_rxconf[0] = 0;
		c[i].k_rtt_us = c[i].k_retrans = 0;
		c[i].ktls[sizeof(c[i].ktls) - 1] = 0;
	}
	if (!n)
		return 0;
	r.ent = calloc(n, sizeof(*r.ent));
	if (!r.ent)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct diag_ent *e = &r.ent[r.n];
		c[i].local[sizeof(c[i].local) - 1] = c[i].client[sizeof(c[i].client) - 1] = 0;
		if (key_side(c[i].local, e->k.laddr, &e->k.lport) ||
		    key_side(c[i].client, e->k.raddr, &e->k.rport))
			continue; /* a unix socket, or the daemon did not say: nothing to match */
		e->c = &c[i];
		if (r.n == 0)
			lport = e->k.lport;
		else if (lport != e->k.lport)
			mixed = 1;
		r.n++;
	}
	if (!r.n)
		goto out;
	qsort(r.ent, r.n, sizeof(*r.ent), key_cmp);
	r.has_cap = have_net_admin();
	/* One listening port (the usual case): let the kernel skip every other socket. */
	rc = dump_all(&r, mixed ? 0 : lport);
	if (rc == -EPERM || rc == -EACCES) {
		for (size_t i = 0; i < r.n; i++) {
			SET(r.ent[i].c->k_txconf, NEEDS_CAP);
			SET(r.ent[i].c->k_rxconf, NEEDS_CAP);
		}
		rc = 0;
	}
	if (rc)
		log_warn("admin", "sock_diag failed; connections shown without the kernel's view",
			 "error=\"%s\"", strerror(-rc));
	else if (r.stopped)
		log_warn("admin", "sock_diag dump stopped early; some connections lack the kernel's view",
			 "sockets=%zu", r.seen);
	else
		log_debug("admin", "sock_diag dump", "conns=%zu sockets=%zu port_filter=%u", n, r.seen,
			  mixed ? 0 : lport);
out:
	free(r.ent);
	return rc;
}
