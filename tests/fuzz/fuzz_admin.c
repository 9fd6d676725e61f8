// SPDX-License-Identifier: MIT
// libFuzzer target: the admin socket's command parser.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_cmd cmd;
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = 0;
	admin_parse(line, &cmd);
	free(line);
	return 0;
}
