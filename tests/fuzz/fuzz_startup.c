// SPDX-License-Identifier: MIT
// libFuzzer target: the PostgreSQL startup-packet parser (first bytes from the network),
// and the message-boundary walk of the relayed streams (--idle-timeout).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_startup st;
	uint32_t len;
	if (size >= 4)
		pg_startup_len(data, &len);
	/* exact-size heap copy so ASan catches any read past the packet */
	uint8_t *p = malloc(size ? size : 1);
	memcpy(p, data, size);
	pg_startup_parse(p, size, &st);
	if (size >= 4) { /* also with a consistent length prefix, to reach the parameter walk */
		uint32_t n = (uint32_t)size;
		p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8), p[3] = (uint8_t)n;
		int rc = pg_startup_parse(p, size, &st);
		if (rc == 0 && st.kind == PG_STARTUP && st.user)
			(void)strlen(st.user);
		char msg[96];
		if (rc && (strlen(pg_startup_refusal(rc, &st, msg, sizeof(msg))) != 5 || !msg[0]))
			abort(); /* every refusal has a SQLSTATE and a message */
	}
	/* the same bytes as a relayed stream, whole and in pieces whose sizes the first
	 * byte picks: the same messages must end either way */
	struct pg_frames a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	const uint8_t *q = p;
	size_t left = size, step = size ? (size_t)(data[0] % 7) + 1 : 1;
	unsigned whole = 0, cut = 0;
	while (pg_frames_next(&a, &q, &left))
		whole++;
	if (left && !a.broken)
		abort(); /* bytes left over only on a broken stream */
	for (size_t off = 0; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		const uint8_t *r = p + off;
		while (pg_frames_next(&b, &r, &n))
			cut++;
	}
	if (whole != cut || a.broken != b.broken)
		abort();
	free(p);
	return 0;
}
