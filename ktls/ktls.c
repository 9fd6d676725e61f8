// SPDX-License-Identifier: MIT
// TCP_ULP "tls" and SOL_TLS key installation, plus control records through
// cmsg (TLS_SET_RECORD_TYPE / TLS_GET_RECORD_TYPE). Key structs built here
// live on the stack and are wiped before return.
#include "ktls.h"

#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static void wipe(void *p, size_t n)
{
	volatile uint8_t *v = p;
	while (n--)
		*v++ = 0;
}

void ktls_keys_wipe(struct ktls_keys *k) { wipe(k, sizeof(*k)); }

const char *ktls_cipher_name(uint8_t cipher)
{
	switch ((enum ktls_cipher)cipher) {
	case KTLS_AES_128_GCM:
		return "aes-128-gcm";
	case KTLS_AES_256_GCM:
		return "aes-256-gcm";
	case KTLS_CHACHA20_POLY1305:
		return "chacha20-poly1305";
	}
	return "?";
}

int ktls_attach(int fd)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	return 0;
}

static void put_seq(uint8_t out[8], uint64_t seq)
{
	for (int i = 7; i >= 0; i--, seq >>= 8)
		out[i] = (uint8_t)seq;
}

int ktls_install(int fd, enum ktls_dir dir, const struct ktls_keys *k)
{
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} ci;
	socklen_t len;
	memset(&ci, 0, sizeof(ci));
	switch ((enum ktls_cipher)k->cipher) {
	case KTLS_AES_128_GCM:
		ci.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(ci.g128.key, k->key, sizeof(ci.g128.key));
		memcpy(ci.g128.salt, k->iv, sizeof(ci.g128.salt));
		memcpy(ci.g128.iv, k->iv + 4, sizeof(ci.g128.iv));
		put_seq(ci.g128.rec_seq, k->seq);
		len = sizeof(ci.g128);
		break;
	case KTLS_AES_256_GCM:
		ci.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(ci.g256.key, k->key, sizeof(ci.g256.key));
		memcpy(ci.g256.salt, k->iv, sizeof(ci.g256.salt));
		memcpy(ci.g256.iv, k->iv + 4, sizeof(ci.g256.iv));
		put_seq(ci.g256.rec_seq, k->seq);
		len = sizeof(ci.g256);
		break;
	case KTLS_CHACHA20_POLY1305:
		ci.cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci.cc.key, k->key, sizeof(ci.cc.key));
		memcpy(ci.cc.iv, k->iv, sizeof(ci.cc.iv));
		put_seq(ci.cc.rec_seq, k->seq);
		len = sizeof(ci.cc);
		break;
	default:
		return -EINVAL;
	}
	ci.g128.info.version = k->version; /* info is the first member of each */
	int rc = setsockopt(fd, SOL_TLS, dir == KTLS_TX ? TLS_TX : TLS_RX, &ci, len) < 0 ? -errno : 0;
	wipe(&ci, sizeof(ci));
	return rc;
}

int ktls_send_record(int fd, uint8_t type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cm) = type;
	ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

int ktls_send_close_notify(int fd)
{
	static const uint8_t alert[2] = { 1 /* warning */, 0 /* close_notify */ };
	return ktls_send_record(fd, KTLS_REC_ALERT, alert, sizeof(alert));
}

int ktls_recv_record(int fd, void *buf, size_t cap, uint8_t *type)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	*type = KTLS_REC_DATA;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			*type = *CMSG_DATA(cm);
	return (int)n;
}

/* A loopback pair with TX on one end and RX on the other, one record through. */
int ktls_probe(char *why, size_t whylen)
{
	int lfd = -1, a = -1, b = -1, rc;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct ktls_keys k = { .version = TLS_1_3_VERSION, .cipher = KTLS_AES_128_GCM };
	char msg[] = "ktls-probe", got[sizeof(msg)] = "";
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || bind(lfd, (void *)&sa, sl) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (void *)&sa, &sl) < 0 ||
	    (a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || connect(a, (void *)&sa, sl) < 0 ||
	    (b = accept(lfd, NULL, NULL)) < 0) {
		rc = -errno;
		snprintf(why, whylen, "loopback setup: %s", strerror(-rc));
		goto out;
	}
	if ((rc = ktls_attach(a)) || (rc = ktls_attach(b))) {
		snprintf(why, whylen, "TCP_ULP tls: %s%s", strerror(-rc),
			 rc == -ENOENT ? " (no tls module in this kernel)" : "");
		goto out;
	}
	if ((rc = ktls_install(a, KTLS_TX, &k)) || (rc = ktls_install(b, KTLS_RX, &k))) {
		snprintf(why, whylen, "TLS_TX/TLS_RX: %s", strerror(-rc));
		goto out;
	}
	if (send(a, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg) || recv(b, got, sizeof(got), MSG_WAITALL) !=
	    (ssize_t)sizeof(got) || memcmp(msg, got, sizeof(msg))) {
		rc = -EIO;
		snprintf(why, whylen, "record did not round-trip");
	}
out:
	if (b >= 0)
		close(b);
	if (a >= 0)
		close(a);
	if (lfd >= 0)
		close(lfd);
	return rc;
}
