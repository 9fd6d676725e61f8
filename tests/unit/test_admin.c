// SPDX-License-Identifier: MIT
// Unit tests for the admin module: command parsing, text and JSON rendering
// (JSON checked by Python's parser), and a live socket: modes, ctl round trips,
// framing, limits, SO_PEERCRED refusal of another uid, stale-socket handling.
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "tap.h"

static const char *const reasons[] = { "eof", NULL, "handshake_timeout" };
static const char weird[] = "CN=\"db\" \\ O=x\n\t\xc3\xbc\xff";

static struct admin_snapshot fake(struct admin_worker *w)
{
	memset(w, 0, 2 * sizeof(*w));
	for (int i = 0; i < 2; i++) {
		w[i].id = i;
		w[i].engine = i ? "epoll" : "uring";
		w[i].loops = 1000 + (uint64_t)i;
		w[i].enters = 500;
		w[i].completions = 12345678901ULL;
		w[i].c.accepted = 40 + (uint64_t)i;  /* sum 81 */
		w[i].c.active = 3;
		w[i].c.refused_max = 7;
		w[i].c.handshakes_ok = 30;
		w[i].c.tls13 = 29;
		w[i].c.ktls_tx = 28;
		w[i].c.bytes_c2b = 1ULL << 40;
		w[i].c.bytes_b2c = 5;
		w[i].c.closed[0] = 10;
		w[i].c.closed[2] = 2 + (uint64_t)i; /* handshake_timeout: 5 */
	}
	return (struct admin_snapshot){
		.version = "1.2.3", .kernel = "6.1.0", .openssl = "OpenSSL 3.0.15", .cert = weird,
		.io = "epoll", .io_why = "io_uring_setup: \"Operation not permitted\"",
		.ktls = "unavailable", .ktls_why = "tls module not loaded",
		.listen = "0.0.0.0:5433", .backend = "unix:/run/pgbouncer/.s.PGSQL.6432",
		.pid = 4242, .uptime_s = 93784.5, .nworkers = 2, .workers = w,
		.reason_names = reasons, .nreasons = 3,
	};
}

/* ---- helpers ------------------------------------------------------------------------ */

static int have_python;

/* Parse json with Python and print str(expr) over it (d = the document) into out.
 * 0, or -1 if Python failed (out then holds its error). */
static int py_json(const char *json, const char *expr, char *out, size_t cap)
{
	char tmp[] = "/tmp/test_admin_json_XXXXXX", cmd[1024];
	int fd = mkstemp(tmp);
	out[0] = 0;
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, json, strlen(json));
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json,sys; d=json.load(open(sys.argv[1],\"rb\")); print(%s)' %s 2>&1",
		 expr, tmp);
	FILE *p = popen(cmd, "r");
	size_t len = p ? fread(out, 1, cap - 1, p) : 0;
	out[len] = 0;
	while (len && out[len - 1] == '\n')
		out[--len] = 0;
	int st = p ? pclose(p) : -1;
	unlink(tmp);
	return n == (ssize_t)strlen(json) && st == 0 ? 0 : -1;
}

/* Check a Python expression over a JSON document against the expected text. */
static void json_is(const char *json, const char *expr, const char *exp, const char *name)
{
	char got[4096];
	if (!have_python) {
		skip("python3 not available");
		return;
	}
	int rc = py_json(json, expr, got, sizeof(got));
	ok(rc == 0 && strcmp(got, exp) == 0, "%s", name);
	if (rc || strcmp(got, exp))
		diag("expr %s: got '%s', expected '%s'", expr, got, exp);
}

static char *render(enum admin_cmd_kind kind, int json, const struct admin_snapshot *s, int *rc)
{
	struct admin_cmd cmd = { .kind = kind, .json = json };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	*rc = admin_render(&cmd, s, f);
	fclose(f);
	return buf;
}

/* Text tables: header, a separator of '-' and '+', rows; '|' and '+' line up. */
static int table_ok(const char *text, int nrows)
{
	char *dup = strdup(text), *save = NULL, *line;
	char cols[64] = "";
	int n = 0, good = 1;
	for (line = strtok_r(dup, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		char pos[64] = "";
		int sep = n == 1;
		if (sep && strspn(line, "-+") != strlen(line))
			good = 0;
		for (size_t i = 0; line[i] && i < sizeof(pos) - 1; i++)
			pos[i] = line[i] == (sep ? '+' : '|') ? '|' : ' ';
		size_t k = strlen(pos); /* compare separator positions only */
		while (k && pos[k - 1] == ' ')
			pos[--k] = 0;
		if (n == 0)
			memcpy(cols, pos, sizeof(cols));
		else if (strcmp(cols, pos))
			good = 0;
	}
	free(dup);
	return good && n == nrows + 2 && text[strlen(text) - 1] == '\n' && !strstr(text, "\n\n");
}

/* The table row for key ends in value (padding ignored). */
static int row_is(const char *text, const char *key, const char *value)
{
	char pre[128];
	snprintf(pre, sizeof(pre), "\n %s ", key);
	const char *p = strstr(text, pre), *end;
	if (!p || !(end = strchr(p + 1, '\n')))
		return 0;
	size_t vl = strlen(value);
	return (size_t)(end - p) > vl + 1 && memcmp(end - vl, value, vl) == 0 && end[-vl - 1] == ' ';
}

/* JSON answers are one line: no empty line may appear inside (framing). */
static int one_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return nl && nl[1] == 0;
}

/* ---- parse and render --------------------------------------------------------------- */

static void test_parse(void)
{
	struct admin_cmd c = { .kind = ADM_SHOW_WORKERS, .json = 1 };
	char line[ADMIN_LINE_MAX + 2];

	is(admin_parse("help", &c), 0, "help");
	ok(c.kind == ADM_HELP && !c.json, "help is ADM_HELP, text");
	is(admin_parse("show info", &c), 0, "show info");
	is(c.kind, ADM_SHOW_INFO, "show info kind");
	is(admin_parse("show stats json", &c), 0, "show stats json");
	ok(c.kind == ADM_SHOW_STATS && c.json, "show stats json kind and json");
	is(admin_parse("show workers", &c), 0, "show workers");
	ok(c.kind == ADM_SHOW_WORKERS && !c.json, "show workers kind, text");
	is(admin_parse("HeLp JSON", &c), 0, "case-insensitive help json");
	ok(c.kind == ADM_HELP && c.json, "help json");
	is(admin_parse(" \tSHOW   Workers\tjson \r\n", &c), 0, "whitespace tolerated");
	ok(c.kind == ADM_SHOW_WORKERS && c.json, "whitespace-padded command parsed");

	c = (struct admin_cmd){ .kind = ADM_SHOW_INFO, .json = 1 };
	const char *bad[] = { "", "   ", "show", "show bogus", "bogus", "json", "showstats",
			      "show stats json extra", "show stats xml", "help me", "show json stats",
			      "show info json json", "show stat", "shows info", "show\x01info" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is(admin_parse(bad[i], &c), -EINVAL, "invalid '%s' refused", bad[i]);
	ok(c.kind == ADM_SHOW_INFO && c.json, "out untouched on error");
	is(admin_parse(NULL, &c), -EINVAL, "NULL refused");

	memset(line, ' ', sizeof(line));
	memcpy(line, "show stats", 10);
	line[ADMIN_LINE_MAX] = 0;
	is(admin_parse(line, &c), 0, "line of exactly ADMIN_LINE_MAX bytes accepted");
	line[ADMIN_LINE_MAX] = ' ';
	line[ADMIN_LINE_MAX + 1] = 0;
	is(admin_parse(line, &c), -EINVAL, "line over ADMIN_LINE_MAX refused");
}

static void test_render_text(void)
{
	struct admin_worker w[2];
	struct admin_snapshot s = fake(w);
	int rc;
	char *t;

	t = render(ADM_HELP, 0, NULL, &rc);
	ok(rc == 0 && table_ok(t, 4), "help: aligned table of 4 commands");
	ok(strstr(t, "show workers") && strstr(t, "json"), "help lists commands and json");
	free(t);

	t = render(ADM_SHOW_INFO, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 11), "show info: aligned table of 11 rows");
	ok(strstr(t, " version | 1.2.3\n") && strstr(t, " pid     | 4242\n"), "info rows version, pid");
	ok(strstr(t, "1d 02:03:04"), "uptime formatted");
	ok(strstr(t, "epoll (io_uring_setup: \"Operation not permitted\")"), "io engine and why");
	ok(strstr(t, "unavailable (tls module not loaded)"), "ktls and why");
	ok(strstr(t, "CN=\"db\" \\ O=x??"), "control characters in values become '?'");
	free(t);

	t = render(ADM_SHOW_STATS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 18), "show stats: aligned table of 15 + 3 rows");
	ok(row_is(t, "accepted", "81"), "accepted summed");
	ok(row_is(t, "bytes_c2b", "2199023255552"), "bytes summed");
	ok(row_is(t, "closed_handshake_timeout", "5"), "closed per reason");
	ok(strstr(t, "|            81\n") != NULL, "numbers right-aligned");
	ok(strstr(t, "closed_reason_1"), "a NULL reason name gets a placeholder");
	free(t);

	t = render(ADM_SHOW_WORKERS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 2), "show workers: aligned table of 2 rows");
	ok(strncmp(t, " id | engine | ", 15) == 0, "workers header");
	ok(strstr(t, "| epoll  |") && strstr(t, "12345678901"), "worker rows");
	free(t);

	s.nworkers = 0;
	t = render(ADM_SHOW_WORKERS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 0), "no workers: header and separator only");
	free(t);
	s.nworkers = 1;
	s.workers = NULL;
	t = render(ADM_SHOW_STATS, 0, &s, &rc);
	is(rc, -EINVAL, "workers missing: -EINVAL");
	free(t);
}

static void test_render_json(void)
{
	struct admin_worker w[2];
	struct admin_snapshot s = fake(w);
	int rc;
	char *j;

	j = render(ADM_HELP, 1, NULL, &rc);
	ok(rc == 0 && one_line(j), "help json: one line");
	json_is(j, "[c[\"command\"] for c in d[\"commands\"]]",
		"['help', 'show info', 'show stats', 'show workers']", "help json parses, lists commands");
	free(j);

	j = render(ADM_SHOW_INFO, 1, &s, &rc);
	ok(rc == 0 && one_line(j), "info json: one line");
	json_is(j, "sorted(d)",
		"['backend', 'cert', 'io', 'io_why', 'kernel', 'ktls', 'ktls_why', 'listen', 'openssl', "
		"'pid', 'uptime_s', 'version', 'workers']",
		"info json keys");
	json_is(j, "(d[\"pid\"], d[\"uptime_s\"], d[\"workers\"], d[\"io_why\"])",
		"(4242, 93784.5, 2, 'io_uring_setup: \"Operation not permitted\"')", "info json values");
	json_is(j, "d[\"cert\"]==\"CN=\\x22db\\x22 \\x5c O=x\\n\\t\\u00fc\\ufffd\"", "True",
		"quotes, backslash, controls escaped; invalid UTF-8 is U+FFFD");
	free(j);

	j = render(ADM_SHOW_STATS, 1, &s, &rc);
	ok(rc == 0 && one_line(j), "stats json: one line");
	json_is(j, "list(d)",
		"['accepted', 'active', 'refused_max', 'handshakes_ok', 'handshakes_failed', 'tls12', "
		"'tls13', 'ktls_tx', 'ktls_rx', 'user_tls', 'plaintext', 'cancels', "
		"'backend_connect_failed', 'bytes_c2b', 'bytes_b2c', 'closed']",
		"stats json: stable keys in order");
	json_is(j, "(d[\"accepted\"], d[\"active\"], d[\"refused_max\"], d[\"tls13\"], d[\"bytes_c2b\"])",
		"(81, 6, 14, 58, 2199023255552)", "stats json: sums");
	json_is(j, "d[\"closed\"]", "{'eof': 20, 'reason_1': 0, 'handshake_timeout': 5}",
		"stats json: closed per reason");
	free(j);

	j = render(ADM_SHOW_WORKERS, 1, &s, &rc);
	ok(rc == 0 && one_line(j), "workers json: one line");
	json_is(j,
		"[(x[\"id\"], x[\"engine\"], x[\"accepted\"], x[\"completions\"]) for x in d[\"workers\"]]",
		"[(0, 'uring', 40, 12345678901), (1, 'epoll', 41, 12345678901)]", "workers json values");
	json_is(j, "sorted(d[\"workers\"][0])",
		"['accepted', 'active', 'bytes_b2c', 'bytes_c2b', 'completions', 'engine', 'enters', 'id', "
		"'loops']",
		"workers json keys");
	free(j);

}

/* NULL strings, no workers and a NaN uptime still give valid JSON. */
static void test_render_json_empty(void)
{
	struct admin_snapshot empty = { .uptime_s = NAN };
	int rc;
	char *j;

	j = render(ADM_SHOW_INFO, 1, &empty, &rc);
	json_is(j, "(d[\"version\"], d[\"uptime_s\"])", "('', 0.0)", "empty snapshot: info json valid");
	free(j);
	j = render(ADM_SHOW_STATS, 1, &empty, &rc);
	json_is(j, "(d[\"accepted\"], d[\"closed\"])", "(0, {})", "empty snapshot: stats json valid");
	free(j);
	j = render(ADM_SHOW_WORKERS, 1, &empty, &rc);
	json_is(j, "d[\"workers\"]", "[]", "empty snapshot: workers json valid");
	free(j);
}

/* ---- the live socket ---------------------------------------------------------------- */

static atomic_int snap_calls, snap_fail;

static int fake_snapshot(void *ctx, struct admin_snapshot *out)
{
	(void)ctx;
	atomic_fetch_add(&snap_calls, 1);
	if (atomic_load(&snap_fail) == 1)
		return -EIO;
	if (atomic_load(&snap_fail) == 2) { /* a broken snapshot: workers missing */
		*out = (struct admin_snapshot){ .nworkers = 3 };
		return 0;
	}
	struct admin_worker *w = malloc(2 * sizeof(*w));
	if (!w)
		return -ENOMEM;
	*out = fake(w);
	return 0;
}

static const struct admin_ops fake_ops = { .snapshot = fake_snapshot };

static int unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read until EOF or until the text ends with "\n\n" (if stop_at_answer); 7 s at most. */
static size_t read_answer(int fd, char *out, size_t cap, int stop_at_answer)
{
	size_t len = 0;
	while (len + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 7000) <= 0)
			break;
		ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		out[len] = 0;
		if (stop_at_answer && len >= 2 && out[len - 1] == '\n' && out[len - 2] == '\n')
			break;
	}
	out[len] = 0;
	return len;
}

/* Send raw bytes, shut down writing, read everything. */
static size_t raw_session(const char *path, const char *in, size_t inlen, char *out, size_t cap)
{
	int fd = unix_connect(path);
	out[0] = 0;
	if (fd < 0)
		return 0;
	ssize_t n = send(fd, in, inlen, MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	size_t len = n == (ssize_t)inlen ? read_answer(fd, out, cap, 0) : 0;
	close(fd);
	return len;
}

static int ctl(const char *path, const char *cmd, char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	int rc = admin_ctl(path, cmd, f);
	fclose(f);
	return rc;
}

static void test_ctl(const char *path)
{
	char *t = NULL;
	int rc;

	int calls = atomic_load(&snap_calls);
	rc = ctl(path, "show stats json", &t);
	is(rc, 0, "ctl show stats json: 0");
	ok(one_line(t), "ctl strips the framing empty line");
	json_is(t, "(d[\"accepted\"], d[\"closed\"][\"handshake_timeout\"])", "(81, 5)",
		"ctl: JSON carries the fake numbers");
	is(atomic_load(&snap_calls), calls + 1, "one snapshot per command");
	free(t);

	rc = ctl(path, "  SHOW workers ", &t);
	ok(rc == 0 && table_ok(t, 2), "ctl show workers: text table");
	free(t);
	rc = ctl(path, "help", &t);
	is(atomic_load(&snap_calls), calls + 2, "help takes no snapshot");
	free(t);

	rc = ctl(path, "bogus", &t);
	is(rc, -EINVAL, "ctl bogus: -EINVAL");
	is_str(t, "ERROR: unknown command (try 'help')\n", "ctl bogus: error text");
	free(t);

	atomic_store(&snap_fail, 1);
	rc = ctl(path, "show info", &t);
	ok(rc == -EINVAL && strncmp(t, "ERROR: snapshot failed", 22) == 0, "snapshot failure is an ERROR");
	free(t);
	atomic_store(&snap_fail, 2);
	rc = ctl(path, "show workers", &t);
	ok(rc == -EINVAL && strcmp(t, "ERROR: cannot render the answer: Invalid argument\n") == 0,
	   "a render failure is an ERROR");
	atomic_store(&snap_fail, 0);
	free(t);

	char missing[300];
	snprintf(missing, sizeof(missing), "%s.missing", path);
	rc = ctl(missing, "help", &t);
	is(rc, -ENOENT, "ctl on a missing socket: -ENOENT");
	free(t);
	rc = ctl(path, "show\nstats", &t);
	is(rc, -EINVAL, "ctl refuses a command with a newline");
	free(t);
}

static int count_answers(const char *s)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, "\n\n")); p += 2)
		n++;
	return n;
}

static void test_framing(const char *path)
{
	char out[16384], big[3000];
	const char in[] = "help\nshow stats\n\n   \nbogus\nshow info json\nshow workers";
	size_t n = raw_session(path, in, sizeof(in) - 1, out, sizeof(out));

	ok(n > 0, "several lines on one connection answered");
	is(count_answers(out), 5, "5 answers (blank lines get none; last line ends at EOF)");
	ok(strstr(out, "\n\nERROR: unknown command (try 'help')\n\n{\"version\""),
	   "connection stays usable after an unknown command");
	ok(strstr(out, " stat ") && strstr(out, " id |"), "answers in order");

	memset(big, 'x', sizeof(big));
	n = raw_session(path, big, sizeof(big), out, sizeof(out));
	is_str(out, "ERROR: line too long\n\n", "overlong line refused, connection closed");
}

/* A child as nobody connects: the refusal must come from SO_PEERCRED. */
static void test_peercred(const char *dir, const char *sub, const char *path)
{
	if (geteuid() != 0) {
		skip("not root: cannot run a client as another uid");
		return;
	}
	chmod(dir, 0777);
	chmod(sub, 0777);
	chmod(path, 0666);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char *t = NULL;
		if (setgid(65534) || setuid(65534))
			_exit(10);
		int rc = ctl(path, "show stats", &t);
		if (rc != -EINVAL)
			_exit(1);
		_exit(strcmp(t, "ERROR: permission denied\n") ? 2 : 0);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "uid 65534 gets 'ERROR: permission denied' (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	chmod(path, 0600);
	chmod(sub, 0750);
	chmod(dir, 0700);
}

/* idle_fd is one slot already; fill the rest, the next client is refused. */
static void test_max_clients(const char *path)
{
	int fds[15], good = 1;
	char out[4096];
	for (int i = 0; i < 15; i++) {
		fds[i] = unix_connect(path);
		if (fds[i] < 0 || send(fds[i], "help\n", 5, MSG_NOSIGNAL) != 5 ||
		    !read_answer(fds[i], out, sizeof(out), 1))
			good = 0;
	}
	ok(good, "16 clients served at once");
	int fd = unix_connect(path);
	read_answer(fd, out, sizeof(out), 0);
	is_str(out, "ERROR: too many admin clients\n\n", "the 17th is refused");
	close(fd);
	for (int i = 0; i < 15; i++)
		close(fds[i]);
}

static void test_live(void)
{
	char dir[] = "/tmp/test_admin_XXXXXX", sub[48], path[80], out[256];
	struct admin *a = NULL, *a2 = NULL;
	struct stat st;

	if (!mkdtemp(dir)) {
		skip("mkdtemp failed");
		return;
	}
	snprintf(sub, sizeof(sub), "%s/run", dir);
	snprintf(path, sizeof(path), "%s/admin.sock", sub);
	is(admin_start(path, NULL, &fake_ops, NULL, &a), 0, "admin_start");
	ok(stat(sub, &st) == 0 && (st.st_mode & 07777) == 0750, "missing parent made 0750");
	ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0600, "socket is 0600");
	is(admin_start(path, NULL, &fake_ops, NULL, &a2), -EADDRINUSE, "a live socket is not replaced");

	time_t t0 = time(NULL);
	int idle_fd = unix_connect(path);
	test_ctl(path);
	test_framing(path);
	test_peercred(dir, sub, path);
	test_max_clients(path);
	size_t idle_got = read_answer(idle_fd, out, sizeof(out), 0);
	long waited = (long)(time(NULL) - t0);
	ok(idle_got == 0 && waited >= 4, "an idle client is dropped after about 5 s (%lds)", waited);
	close(idle_fd);

	admin_stop(a);
	ok(lstat(path, &st) < 0 && errno == ENOENT, "admin_stop removes the socket");

	/* A stale socket (no listener) is replaced; a regular file is not. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ok(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "stale socket left behind");
	close(fd);
	is(admin_start(path, NULL, &fake_ops, NULL, &a), 0, "stale socket replaced");
	admin_stop(a);
	FILE *f = fopen(path, "w");
	fclose(f);
	is(admin_start(path, NULL, &fake_ops, NULL, &a), -EEXIST, "a regular file is not clobbered");
	ok(lstat(path, &st) == 0 && S_ISREG(st.st_mode), "the regular file is still there");
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	have_python = system("python3 -c pass >/dev/null 2>&1") == 0;
	if (!have_python)
		diag("python3 not found: JSON documents are not validated");
	test_parse();
	test_render_text();
	test_render_json();
	test_render_json_empty();
	test_live();
	return done_testing();
}
