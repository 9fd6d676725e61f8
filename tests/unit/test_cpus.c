// SPDX-License-Identifier: MIT
// Unit tests for the default worker count: the cgroup CPU limit read from a fake
// /proc/self/cgroup and /sys/fs/cgroup tree (v2 cpu.max, v1 CFS quota).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar.h"
#include "tap.h"

static char root[64];

static void bail(const char *what)
{
	printf("Bail out! %s\n", what);
	exit(1);
}

/* Write text to root/rel, making the directories on the way. */
static void put(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
	FILE *f = fopen(path, "w");
	if (!f)
		bail(path);
	fputs(text, f);
	fclose(f);
}

static int limit(const char *proc_cgroup)
{
	char pc[128], fs[128];
	put("proc-cgroup", proc_cgroup);
	snprintf(pc, sizeof(pc), "%s/proc-cgroup", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	return cpus_cgroup_limit(pc, fs);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/test_cpus_XXXXXX");
	if (!mkdtemp(root))
		bail("mkdtemp");

	put("fs/cpu.max", "250000 100000\n");
	is(limit("0::/\n"), 3, "v2, cgroup namespace root: 2.5 CPUs round up to 3");
	put("fs/kubepods/pod1/c1/cpu.max", "max 100000\n");
	is(limit("0::/kubepods/pod1/c1\n"), 0, "v2 'max': no limit");
	put("fs/kubepods/pod1/c2/cpu.max", "50000 100000\n");
	is(limit("0::/kubepods/pod1/c2\n"), 1, "v2 half a CPU: 1");
	is(limit("0::/nowhere\n"), 3, "v2 file missing at the path: the mount's top (a container's own cgroup)");

	put("fs/cpu,cpuacct/k/cpu.cfs_quota_us", "400000\n");
	put("fs/cpu,cpuacct/k/cpu.cfs_period_us", "100000\n");
	is(limit("12:memory:/k\n4:cpu,cpuacct:/k\n0::/\n"), 4, "v1 cpu,cpuacct: quota/period = 4");
	put("fs/cpu/j/cpu.cfs_quota_us", "-1\n");
	put("fs/cpu/j/cpu.cfs_period_us", "100000\n");
	is(limit("1:cpu:/j\n2:cpuacct:/j\n"), 0, "v1 quota -1: no limit");
	is(limit("3:cpuset:/j\n"), 0, "v1 without the cpu controller: no limit");

	/* a container without a cgroup namespace: the host's path in /proc, its own cgroup
	 * mounted at the top */
	char top[128];
	snprintf(top, sizeof(top), "%s/fs", root);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd) != 0)
		bail("rm");
	put("fs/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
	put("fs/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
	is(limit("4:cpu,cpuacct:/kubepods/burstable/pod1/c1\n"), 1, "v1 in a container: the limit at the mount's top");
	put("fs/cpu.max", "150000 100000\n");
	is(limit("0::/kubepods/pod1/c1\n"), 2, "v2 in a container without a cgroup namespace: the top's cpu.max");
	is(limit("garbage\n::\n"), 0, "malformed lines: no limit");
	is(cpus_cgroup_limit("/nonexistent/cgroup", "/sys/fs/cgroup"), 0, "no /proc file: no limit");

	int n = cpus_default_workers();
	ok(n >= 1 && n <= sysconf(_SC_NPROCESSORS_ONLN), "default workers within 1..online CPUs (%d)", n);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		diag("could not remove %s", root);
	return done_testing();
}
