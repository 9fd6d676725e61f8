// SPDX-License-Identifier: MIT
// libFuzzer target: the PostgreSQL startup-packet parser (first bytes from the network).
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
	free(p);
	return 0;
}
