// SPDX-License-Identifier: MIT
// libFuzzer target: the config-file parser, fed line by line as config_load_file does.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char err[CONFIG_ERR_LEN], *buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = 0;
	config_init(&c);
	c.level = 1;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		config_line(&c, line, err, sizeof(err));
	config_finish(&c, err, sizeof(err));
	config_free(&c);
	free(buf);
	return 0;
}
