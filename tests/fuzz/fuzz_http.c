// SPDX-License-Identifier: MIT
// libFuzzer target: the /metrics listener's HTTP request-head parser.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[256], *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	admin_http_parse(buf, size, path, sizeof(path));
	free(buf);
	return 0;
}
