// SPDX-License-Identifier: MIT
// PostgreSQL startup-phase wire format: classify and validate the first packet
// a client sends (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) and
// build ErrorResponse packets. Pure functions over byte buffers; no I/O.
#ifndef KS_PGPROTO_H
#define KS_PGPROTO_H

#include <stddef.h>
#include <stdint.h>

#define PG_STARTUP_MAX 10004u     /* PostgreSQL's cap: 10000 bytes after the length word */
#define PG_CANCEL_KEY_MIN 4u
#define PG_CANCEL_KEY_MAX 256u    /* protocol 3.2 variable-length keys */
#define PG_CODE_SSL 80877103u
#define PG_CODE_GSSENC 80877104u
#define PG_CODE_CANCEL 80877102u
#define PG_TLS_HANDSHAKE 0x16     /* first byte of a direct-TLS ClientHello record */
#define PG_LEN_HDR 4u             /* a startup packet's length word */

enum pg_kind { PG_SSL_REQUEST, PG_GSSENC_REQUEST, PG_CANCEL_REQUEST, PG_STARTUP };

struct pg_startup {
	enum pg_kind kind;
	uint32_t proto;        /* StartupMessage protocol version, or the request code */
	const char *user;      /* StartupMessage only; point into the packet */
	const char *database;
	const char *application_name;
};

/* Validate the 4-byte length prefix. 0 with *len set, or -EPROTO (too short) / -EMSGSIZE. */
int pg_startup_len(const uint8_t hdr[4], uint32_t *len);
/* Classify one complete startup packet of len bytes (length prefix included). 0, or
 * -EPROTONOSUPPORT (a StartupMessage of a protocol other than 3.x), -ENODATA (one
 * without a user name), -EPROTO (anything else malformed). */
int pg_startup_parse(const uint8_t *pkt, size_t len, struct pg_startup *out);
/* The SQLSTATE and message PostgreSQL would answer a refused startup packet with,
 * for a pg_startup_parse error rc: "0A000" unsupported protocol, "28000" no user,
 * "08P01" otherwise. */
const char *pg_startup_refusal(int rc, const struct pg_startup *st, char *msg, size_t msglen);
/* Message boundaries in one direction of a session after the startup packet: a type
 * byte, a 4-byte length that counts itself, the body. Fed the stream in pieces of any
 * size; nothing is copied. */
struct pg_frames {
	uint32_t left;  /* bytes of the current message's body still to come */
	uint8_t hdr[5]; /* the next message's header, as far as it came */
	uint8_t have;   /* bytes in hdr */
	uint8_t broken; /* a length under 4 was seen: no boundaries are known any more */
};
/* Walk *p[0..*len) up to the end of the next message: its type byte (-1 for a type
 * byte of 0), with *p and *len moved past it; or 0 once the bytes are used up (a
 * message cut short continues in the next call's bytes) or the stream is broken. */
int pg_frames_next(struct pg_frames *f, const uint8_t **p, size_t *len);

/* Write an ErrorResponse (severity, SQLSTATE, message) into buf. Length, or -ENOSPC. */
int pg_error_response(uint8_t *buf, size_t cap, const char *severity, const char *sqlstate,
		      const char *msg);

#endif
