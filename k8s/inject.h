// SPDX-License-Identifier: MIT
// `ktls-sidecar inject`: add the sidecar to Kubernetes workloads in YAML.
#ifndef KS_INJECT_H
#define KS_INJECT_H

/* Entry point for the inject subcommand (argv after "inject"). Exit status. */
int inject_main(int argc, char **argv);

#endif
