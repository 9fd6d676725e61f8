// SPDX-License-Identifier: MIT
// Unit tests for the startup-packet parser and ErrorResponse builder,
// including malformed and hostile inputs.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgproto.h"
#include "tap.h"

static size_t put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
	return 4;
}

/* Build a StartupMessage from NUL-separated "k\0v\0..." params. */
static size_t startup(uint8_t *buf, uint32_t proto, const char *params, size_t plen)
{
	size_t n = 8 + plen + 1;
	put32(buf, (uint32_t)n);
	put32(buf + 4, proto);
	memcpy(buf + 8, params, plen);
	buf[8 + plen] = 0;
	return n;
}

/* How many messages of a type in types end within p[0..len), in order. */
static unsigned pg_frames_count(struct pg_frames *f, const uint8_t *p, size_t len, const char *types)
{
	unsigned n = 0;
	int t;
	while ((t = pg_frames_next(f, &p, &len)))
		n += t > 0 && strchr(types, t) != NULL;
	return n;
}

/* The types of the messages that end within p[0..len), as a string. */
static const char *ended(struct pg_frames *f, const uint8_t *p, size_t len)
{
	static char out[64];
	size_t k = 0;
	int t;
	while ((t = pg_frames_next(f, &p, &len)) && k + 1 < sizeof(out))
		out[k++] = t > 0 ? (char)t : '0';
	out[k] = 0;
	return out;
}

int main(void)
{
	uint8_t b[PG_STARTUP_MAX + 64];
	struct pg_startup st;
	uint32_t len;

	put32(b, 8);
	put32(b + 4, PG_CODE_SSL);
	is(pg_startup_parse(b, 8, &st), 0, "SSLRequest parses");
	is(st.kind, PG_SSL_REQUEST, "SSLRequest kind");
	put32(b + 4, PG_CODE_GSSENC);
	is(pg_startup_parse(b, 8, &st), 0, "GSSENCRequest parses");
	is(st.kind, PG_GSSENC_REQUEST, "GSSENCRequest kind");
	put32(b, 12);
	put32(b + 4, PG_CODE_SSL);
	is(pg_startup_parse(b, 12, &st), -EPROTO, "SSLRequest with trailing bytes is refused");

	/* cancel keys: 4 bytes (protocol 3.0) up to 256 bytes (3.2) */
	put32(b, 16);
	put32(b + 4, PG_CODE_CANCEL);
	is(pg_startup_parse(b, 16, &st), 0, "CancelRequest with 4-byte key");
	is(st.kind, PG_CANCEL_REQUEST, "CancelRequest kind");
	put32(b, 12 + 256);
	is(pg_startup_parse(b, 12 + 256, &st), 0, "CancelRequest with 256-byte key");
	put32(b, 12 + 257);
	is(pg_startup_parse(b, 12 + 257, &st), -EPROTO, "CancelRequest with 257-byte key refused");
	put32(b, 12);
	is(pg_startup_parse(b, 12, &st), -EPROTO, "CancelRequest without key refused");

	static const char p1[] = "user\0alice\0database\0app\0application_name\0psql";
	size_t n = startup(b, 0x30000, p1, sizeof(p1));
	is(pg_startup_parse(b, n, &st), 0, "StartupMessage 3.0 parses");
	is(st.kind, PG_STARTUP, "StartupMessage kind");
	is_str(st.user, "alice", "user extracted");
	is_str(st.database, "app", "database extracted");
	is_str(st.application_name, "psql", "application_name extracted");
	n = startup(b, 0x30002, p1, sizeof(p1));
	is(pg_startup_parse(b, n, &st), 0, "StartupMessage 3.2 parses");
	n = startup(b, 0x20000, p1, sizeof(p1));
	is(pg_startup_parse(b, n, &st), -EPROTONOSUPPORT, "protocol 2.0 refused as unsupported");
	char why[96];
	is_str(pg_startup_refusal(-EPROTONOSUPPORT, &st, why, sizeof(why)), "0A000", "... SQLSTATE 0A000, as PostgreSQL");
	is_str(why, "unsupported frontend protocol 2.0: server supports 3.0 to 3.x", "... naming the version");
	n = startup(b, 0x40000, p1, sizeof(p1));
	is(pg_startup_parse(b, n, &st), -EPROTONOSUPPORT, "protocol 4.0 refused as unsupported");
	static const char p2[] = "database\0app";
	n = startup(b, 0x30000, p2, sizeof(p2));
	is(pg_startup_parse(b, n, &st), -ENODATA, "StartupMessage without user refused");
	is_str(pg_startup_refusal(-ENODATA, &st, why, sizeof(why)), "28000", "... SQLSTATE 28000, as PostgreSQL");
	is_str(why, "no PostgreSQL user name specified in startup packet", "... with PostgreSQL's message");
	static const char p4[] = "user\0\0database\0app";
	n = startup(b, 0x30000, p4, sizeof(p4));
	is(pg_startup_parse(b, n, &st), -ENODATA, "an empty user name is no user name");
	static const char p3[] = "user\0alice\0dangling";
	n = startup(b, 0x30000, p3, sizeof(p3));
	is(pg_startup_parse(b, n, &st), -EPROTO, "key without value refused");
	n = startup(b, 0x30000, p1, sizeof(p1));
	b[n - 1] = 'x';
	is(pg_startup_parse(b, n, &st), -EPROTO, "missing list terminator refused");
	n = startup(b, 0x30000, p1, sizeof(p1));
	is(pg_startup_parse(b, n - 1, &st), -EPROTO, "length field disagreeing with packet refused");
	is_str(pg_startup_refusal(-EPROTO, &st, why, sizeof(why)), "08P01", "a malformed packet: 08P01");
	is_str(why, "invalid startup packet layout", "... invalid startup packet layout");

	put32(b, 7);
	is(pg_startup_len(b, &len), -EPROTO, "length 7 refused");
	put32(b, PG_STARTUP_MAX + 1);
	is(pg_startup_len(b, &len), -EMSGSIZE, "length above 10004 (10000 after the length word) refused");
	put32(b, 0x80000000u);
	is(pg_startup_len(b, &len), -EMSGSIZE, "negative length refused");
	put32(b, PG_STARTUP_MAX);
	is(pg_startup_len(b, &len), 0, "length 10004 accepted, as by PostgreSQL");
	is(len, PG_STARTUP_MAX, "length reported");
	put32(b, 10004);
	is(pg_startup_len(b, &len), 0, "10004 (PostgreSQL's 10000 after the length word) accepted");
	put32(b, 10005);
	is(pg_startup_len(b, &len), -EMSGSIZE, "10005 refused");

	uint8_t e[256];
	int en = pg_error_response(e, sizeof(e), "FATAL", "28000", "no");
	ok(en > 0 && e[0] == 'E', "ErrorResponse built");
	is(((uint32_t)e[1] << 24 | e[2] << 16 | e[3] << 8 | e[4]) + 1, (uint32_t)en, "ErrorResponse length field");
	ok(memmem(e, (size_t)en, "C28000", 7) != NULL, "SQLSTATE field present");
	is(e[en - 1], 0, "ErrorResponse terminated");
	is(pg_error_response(e, 10, "FATAL", "28000", "no"), -ENOSPC, "ErrorResponse respects capacity");

	/* deterministic junk: the parser must never read past the buffer (ASan checks) */
	srand(1);
	int crashes = 0;
	for (int i = 0; i < 20000; i++) {
		size_t l = 8 + (size_t)rand() % 200;
		for (size_t j = 0; j < l; j++)
			b[j] = (uint8_t)rand();
		put32(b, (uint32_t)l);
		if (i % 2)
			put32(b + 4, 0x30000);
		uint8_t *heap = malloc(l);
		memcpy(heap, b, l);
		int rc = pg_startup_parse(heap, l, &st);
		crashes += rc != 0 && rc != -EPROTO && rc != -EPROTONOSUPPORT && rc != -ENODATA;
		free(heap);
	}
	is(crashes, 0, "random packets give 0 or a documented error only");
	/* message boundaries: ReadyForQuery ('Z', body 1) and a 10-byte DataRow ('D') */
	{
		uint8_t st_[64];
		size_t sn = 0;
		st_[sn++] = 'D', sn += put32(st_ + sn, 14), memset(st_ + sn, 'x', 10), sn += 10;
		st_[sn++] = 'Z', sn += put32(st_ + sn, 5), st_[sn++] = 'I';
		st_[sn++] = 'Z', sn += put32(st_ + sn, 5), st_[sn++] = 'T';
		struct pg_frames f;
		memset(&f, 0, sizeof(f));
		is((int)pg_frames_count(&f, st_, sn, "Z"), 2, "two ReadyForQuery in one piece");
		is((int)pg_frames_count(&f, st_, sn, "DZ"), 3, "... and a DataRow: three of D or Z");
		unsigned total = 0;
		for (size_t i = 0; i < sn; i++)
			total += pg_frames_count(&f, st_ + i, 1, "Z");
		is((int)total, 2, "the same stream a byte at a time");
		total = pg_frames_count(&f, st_, 8, "Z") + pg_frames_count(&f, st_ + 8, sn - 8, "Z");
		is((int)total, 2, "split inside a header and a body");
		is((int)pg_frames_count(&f, st_, 20, "Z"), 0, "a message does not count when its header came ...");
		is((int)pg_frames_count(&f, st_ + 20, 1, "Z"), 1, "... but when its last byte did");
		is((int)pg_frames_count(&f, st_ + 21, sn - 21, "Z"), 1, "then the next one");
		uint8_t q[5] = { 'Q', 0, 0, 0, 4 }; /* an empty body ends with its header */
		is((int)pg_frames_count(&f, q, 5, "QSF"), 1, "a message with an empty body");
		uint8_t bad[6] = { 'Z', 0, 0, 0, 3, 'I' };
		memset(&f, 0, sizeof(f));
		is((int)pg_frames_count(&f, bad, 6, "Z"), 0, "a length under 4 counts nothing");
		ok(f.broken, "... and marks the stream broken");
		is((int)pg_frames_count(&f, st_, sn, "Z"), 0, "a broken stream counts nothing after");
		uint8_t zero[5] = { 0, 0, 0, 0, 4 };
		memset(&f, 0, sizeof(f));
		is((int)pg_frames_count(&f, zero, 5, "Z"), 0, "type byte 0 is no type in the list");
		memset(&f, 0, sizeof(f));
		is_str(ended(&f, st_, sn), "DZZ", "the messages come out in order");
		memset(&f, 0, sizeof(f));
		is_str(ended(&f, st_, 17), "D", "a cut stream gives what ended ...");
		is_str(ended(&f, st_ + 17, sn - 17), "ZZ", "... and the rest when the bytes come");
	}
	return done_testing();
}
