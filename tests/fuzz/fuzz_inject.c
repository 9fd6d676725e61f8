// SPDX-License-Identifier: MIT
// libFuzzer target: the Kubernetes YAML injector on arbitrary streams.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[] = { NULL }, *out = NULL, err[256];
	size_t outlen = 0;
	if (size > 65536)
		return 0;
	if (inject_string(0, argv, "fuzz", (const char *)data, size, &out, &outlen, err, sizeof(err)) == 0 && out) {
		/* idempotency is a property: injecting the output again must succeed */
		char *again = NULL;
		size_t againlen = 0;
		inject_string(0, argv, "fuzz", out, outlen, &again, &againlen, err, sizeof(err));
		free(again);
	}
	free(out);
	return 0;
}
