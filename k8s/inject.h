// SPDX-License-Identifier: MIT
// `ktls-sidecar inject`: add the sidecar to Kubernetes workloads in YAML.
#ifndef KS_INJECT_H
#define KS_INJECT_H

#include <stddef.h>

/* Entry point for the inject subcommand (argv after "inject"). Exit status. */
int inject_main(int argc, char **argv);

/* Inject into one YAML stream in memory with inject options argv (no FILEs):
 * 0 and a malloc'd NUL-terminated *out, or -EINVAL/-ENOMEM with a message in err. */
int inject_string(int argc, char **argv, const char *name, const char *in, size_t len, char **out,
		  size_t *outlen, char *err, size_t errlen);

#endif
