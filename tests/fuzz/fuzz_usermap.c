// SPDX-License-Identifier: MIT
// libFuzzer target: the --client-user-map parser, then a lookup with the input as every
// name a certificate brings (CN, DN, DNS and URI SANs).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct user_map *m = NULL;
	char err[256], *users = NULL;
	if (user_map_parse((const char *)data, size, &m, err, sizeof(err)))
		return 0;
	char *names = malloc(size + 1);
	memcpy(names, data, size);
	names[size] = 0;
	const char *name = names;
	if (user_map_users(m, name, name, &name, 1, &name, 1, &users) == 0) {
		for (const char *u = users; *u; u += strlen(u) + 1)
			if (!user_list_has(users, u))
				abort();
		free(users);
	}
	free(names);
	user_map_free(m);
	return 0;
}
