// SPDX-License-Identifier: MIT
// How many CPUs this process may use: its cpuset, capped by its cgroup's CPU
// limit (a Kubernetes resources.limits.cpu), for the default number of workers.
#include "sidecar.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Read "A B" from path into two numbers: how many were read (cgroup v2's "max" for A
 * gives 0), or -2 when the file cannot be opened. */
static int read_pair(const char *path, long long *a, long long *b)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -2;
	int n = fscanf(f, "%lld %lld", a, b);
	fclose(f);
	return n;
}

/* The first number in path; -2 when the file cannot be read. */
static long long read_one(const char *path)
{
	long long v = -1, unused;
	int n = read_pair(path, &v, &unused);
	return n == -2 ? -2 : n >= 1 ? v : -1;
}

static int ceil_div(long long quota, long long period)
{
	return quota > 0 && period > 0 ? (int)((quota + period - 1) / period) : 0;
}

int cpus_cgroup_limit(const char *proc_cgroup, const char *root)
{
	char line[512], path[1200];
	int limit = 0;
	FILE *f = fopen(proc_cgroup, "re");
	if (!f)
		return 0;
	while (!limit && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		/* "ID:CONTROLLERS:PATH" */
		char *ctrl = strchr(line, ':'), *cg = ctrl ? strchr(ctrl + 1, ':') : NULL;
		if (!cg)
			continue;
		*ctrl++ = 0;
		*cg++ = 0;
		if (strcmp(cg, "/") == 0)
			cg = ""; /* a cgroup namespace's root: the files sit at the mount's top */
		long long quota, period;
		/* A container without a cgroup namespace sees its host path here, but has its
		 * own cgroup mounted at the top: try the path, then, if it is not there, the top. */
		int found = 0;
		for (int top = 0; top < 2 && !found; top++) {
			const char *at = top ? "" : cg;
			if (top && !*cg)
				break;
			if (strcmp(line, "0") == 0 && !*ctrl) { /* v2: cpu.max "QUOTA PERIOD" or "max PERIOD" */
				snprintf(path, sizeof(path), "%s%s/cpu.max", root, at);
				int n = read_pair(path, &quota, &period);
				found = n != -2;
				if (n == 2)
					limit = ceil_div(quota, period);
			} else if (strcmp(ctrl, "cpu") == 0 || strncmp(ctrl, "cpu,", 4) == 0 || strstr(ctrl, ",cpu,") ||
				   (strlen(ctrl) > 4 && strcmp(ctrl + strlen(ctrl) - 4, ",cpu") == 0)) {
				/* v1: cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us */
				snprintf(path, sizeof(path), "%s/%s%s/cpu.cfs_quota_us", root, ctrl, at);
				found = (quota = read_one(path)) != -2;
				snprintf(path, sizeof(path), "%s/%s%s/cpu.cfs_period_us", root, ctrl, at);
				period = read_one(path);
				limit = ceil_div(quota, period);
			}
		}
	}
	fclose(f);
	return limit;
}

int cpus_default_workers(void)
{
	cpu_set_t set;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : (int)online;
	int limit = cpus_cgroup_limit("/proc/self/cgroup", "/sys/fs/cgroup");
	if (limit > 0 && limit < n)
		n = limit;
	return n > 0 ? n : 1;
}
