// SPDX-License-Identifier: MIT
// Placeholder until the injector lands.
#include <stdio.h>

#include "inject.h"

int inject_main(int argc, char **argv)
{
	(void)argc, (void)argv;
	fprintf(stderr, "ktls-sidecar inject: not implemented yet\n");
	return 2;
}
