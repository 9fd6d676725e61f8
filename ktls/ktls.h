// SPDX-License-Identifier: MIT
// Kernel TLS: attach the "tls" ULP to a TCP socket and install record keys for
// one direction; send and receive non-data records (alerts, handshake
// messages). The only module that touches TCP_ULP / SOL_TLS. It sees keys only
// as the neutral struct below, never an OpenSSL type.
#ifndef KS_KTLS_H
#define KS_KTLS_H

#include <stddef.h>
#include <stdint.h>

enum ktls_cipher { KTLS_AES_128_GCM, KTLS_AES_256_GCM, KTLS_CHACHA20_POLY1305 };
enum ktls_dir { KTLS_TX, KTLS_RX };

/* One direction's record protection state, as the handshake derived it. */
struct ktls_keys {
	uint16_t version;      /* 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3) */
	uint8_t cipher;        /* enum ktls_cipher */
	uint8_t key[32];       /* 16 or 32 bytes used */
	uint8_t iv[12];        /* GCM: 4-byte salt + 8-byte iv; ChaCha20: 12-byte iv */
	uint64_t seq;          /* next record sequence number */
};

#define KTLS_REC_ALERT 21
#define KTLS_REC_HANDSHAKE 22
#define KTLS_REC_DATA 23

/* Can this kernel do kTLS? 0, or -errno with a reason (e.g. "no tls module"). */
int ktls_probe(char *why, size_t whylen);
/* Attach the tls ULP to a connected TCP socket. 0 or -errno (-ENOENT: no module). */
int ktls_attach(int fd);
/* Install keys for one direction. 0 or -errno (-EINVAL/-ENOPROTOOPT: cipher refused). */
int ktls_install(int fd, enum ktls_dir dir, const struct ktls_keys *k);
/* Send one record of the given type (e.g. an alert) through kTLS TX. 0 or -errno. */
int ktls_send_record(int fd, uint8_t type, const void *buf, size_t len);
/* Send a close_notify alert. 0 or -errno. */
int ktls_send_close_notify(int fd);
/* Read the next record (any type) without blocking: payload length, or -errno. */
int ktls_recv_record(int fd, void *buf, size_t cap, uint8_t *type);
/* Wipe key material. */
void ktls_keys_wipe(struct ktls_keys *k);
/* "aes-128-gcm" etc. */
const char *ktls_cipher_name(uint8_t cipher);

#endif
