// SPDX-License-Identifier: MIT
// Startup packet classification. Every length and offset is checked against the
// packet end before use: these bytes arrive from the network before any TLS.
#include "pgproto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int pg_startup_len(const uint8_t hdr[4], uint32_t *len)
{
	uint32_t n = be32(hdr);
	if (n < 8)
		return -EPROTO;
	if (n > PG_STARTUP_MAX)
		return -EMSGSIZE;
	*len = n;
	return 0;
}

/* Walk "key\0value\0...\0" between p and end, picking the fields we report. */
static int parse_params(const uint8_t *p, const uint8_t *end, struct pg_startup *out)
{
	while (p < end && *p) {
		const uint8_t *k = p, *kz = memchr(k, 0, (size_t)(end - k));
		if (!kz || kz + 1 >= end)
			return -EPROTO;
		const uint8_t *v = kz + 1, *vz = memchr(v, 0, (size_t)(end - v));
		if (!vz)
			return -EPROTO;
		if (strcmp((const char *)k, "user") == 0)
			out->user = (const char *)v;
		else if (strcmp((const char *)k, "database") == 0)
			out->database = (const char *)v;
		else if (strcmp((const char *)k, "application_name") == 0)
			out->application_name = (const char *)v;
		p = vz + 1;
	}
	/* the list ends with one NUL, which must be the packet's last byte */
	if (p + 1 != end || *p != 0)
		return -EPROTO;
	return out->user && *out->user ? 0 : -ENODATA;
}

int pg_startup_parse(const uint8_t *pkt, size_t len, struct pg_startup *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 8 || len > PG_STARTUP_MAX || be32(pkt) != len)
		return -EPROTO;
	uint32_t code = be32(pkt + 4);
	out->proto = code;
	switch (code) {
	case PG_CODE_SSL:
		out->kind = PG_SSL_REQUEST;
		return len == 8 ? 0 : -EPROTO;
	case PG_CODE_GSSENC:
		out->kind = PG_GSSENC_REQUEST;
		return len == 8 ? 0 : -EPROTO;
	case PG_CODE_CANCEL:
		out->kind = PG_CANCEL_REQUEST;
		/* length, code, backend pid, then the secret key */
		if (len < 12 + PG_CANCEL_KEY_MIN || len > 12 + PG_CANCEL_KEY_MAX)
			return -EPROTO;
		return 0;
	}
	out->kind = PG_STARTUP;
	if (code >> 16 != 3) /* protocol 3.x only; 2.0 died with PostgreSQL 14 */
		return -EPROTONOSUPPORT;
	return parse_params(pkt + 8, pkt + len, out);
}

const char *pg_startup_refusal(int rc, const struct pg_startup *st, char *msg, size_t msglen)
{
	if (rc == -EPROTONOSUPPORT) {
		snprintf(msg, msglen, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.x",
			 st->proto >> 16, st->proto & 0xffff);
		return "0A000";
	}
	if (rc == -ENODATA) {
		snprintf(msg, msglen, "no PostgreSQL user name specified in startup packet");
		return "28000";
	}
	snprintf(msg, msglen, "invalid startup packet layout");
	return "08P01";
}

int pg_error_response(uint8_t *buf, size_t cap, const char *severity, const char *sqlstate,
		      const char *msg)
{
	size_t sl = strlen(severity), cl = strlen(sqlstate), ml = strlen(msg);
	/* 'E' len 'S' sev\0 'V' sev\0 'C' code\0 'M' msg\0 \0 */
	size_t body = 4 + 2 * (1 + sl + 1) + (1 + cl + 1) + (1 + ml + 1) + 1;
	if (1 + body > cap || body > 0x7fffffff)
		return -ENOSPC;
	uint8_t *p = buf;
	*p++ = 'E';
	put_be32(p, (uint32_t)body);
	p += 4;
	const char types[] = { 'S', 'V', 'C', 'M' };
	const char *vals[] = { severity, severity, sqlstate, msg };
	for (int i = 0; i < 4; i++) {
		*p++ = (uint8_t)types[i];
		size_t n = strlen(vals[i]) + 1;
		memcpy(p, vals[i], n);
		p += n;
	}
	*p++ = 0;
	return (int)(p - buf);
}

int pg_frames_next(struct pg_frames *f, const uint8_t **pp, size_t *lenp)
{
	const uint8_t *p = *pp; /* in locals: the stores through f cannot alias them */
	size_t len = *lenp;
	uint32_t left = f->left;
	int type = 0;
	while (len && !f->broken) {
		if (!left) { /* the next header first */
			const uint8_t *h = f->hdr;
			if (!f->have && len >= sizeof(f->hdr)) { /* all here: read in place */
				f->hdr[0] = p[0];
				h = p;
				p += sizeof(f->hdr), len -= sizeof(f->hdr);
			} else { /* cut between reads: gather it a byte at a time */
				f->hdr[f->have++] = *p++, len--;
				if (f->have < sizeof(f->hdr))
					continue;
				f->have = 0;
			}
			uint32_t mlen = be32(h + 1);
			if (mlen < 4) {
				f->broken = 1;
				break;
			}
			left = mlen - 4;
		}
		/* the body, or as much of it as is here */
		uint32_t k = len < left ? (uint32_t)len : left;
		left -= k, p += k, len -= k;
		if (!left) { /* the message ended here */
			type = f->hdr[0] ? f->hdr[0] : -1;
			break;
		}
	}
	*pp = p, *lenp = len, f->left = left;
	return type;
}
