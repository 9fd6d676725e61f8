// SPDX-License-Identifier: MIT
// Unit tests for the admin module: command parsing, text and JSON rendering
// (JSON checked by Python's parser), handshake percentiles, show conns, and a live
// socket: modes, ctl round trips (reload, drain, conns), framing, limits,
// SO_PEERCRED refusal of another uid, stale-socket handling.
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
static const char *const steps[] = { "buffered", "suite", NULL };
static const char weird[] = "CN=\"db\" \\ O=x\n\t\xc3\xbc\xff";

static struct admin_snapshot fake(struct admin_worker *w)
{
	memset(w, 0, 2 * sizeof(*w));
	for (int i = 0; i < 2; i++) {
		w[i].id = i;
		w[i].cpu = i ? 3 : -1;
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
		w[i].c.ktls_fallback[1] = 3 + (uint64_t)i; /* suite: 7 */
		w[i].c.active_ktls_tx = 2;
		w[i].c.active_ktls_rx = 1;
		w[i].c.active_user_tls = 1;
		w[i].c.hs_hist[2] = i ? 4 : 6;       /* 10 handshakes in (2, 5] ms */
		w[i].c.hs_sum_us = i ? 15000 : 20000; /* 35 ms */
	}
	return (struct admin_snapshot){
		.version = "1.2.3", .kernel = "6.1.0", .openssl = "OpenSSL 3.0.15", .cert = weird,
		.cert_sans = "DNS:db.example, IP:10.0.0.5", .cert_not_after = "2027-01-01T00:00:00Z",
		.cert_serial = "0A1B",
		.reload_at = "2026-11-22T00:00:00Z", .reload_result = "ok", .draining = 1, .drain_left_s = 12.34,
		.reloads_ok = 4, .reloads_failed = 1, .reloads_partial = 2,
		.io = "epoll", .io_why = "io_uring_setup: \"Operation not permitted\"",
		.io_features = "sqpoll,multishot-accept,fixed-files",
		.ktls = "unavailable", .ktls_why = "tls module not loaded",
		.listen = "0.0.0.0:5433", .backend = "unix:/run/pgbouncer/.s.PGSQL.6432",
		.pid = 4242, .uptime_s = 93784.5, .nworkers = 2, .workers = w,
		.reason_names = reasons, .nreasons = 3, .ktls_step_names = steps, .nsteps = 3,
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
	char cols[1024] = "";
	int n = 0, good = 1;
	for (line = strtok_r(dup, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		char pos[1024] = "";
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
	ok(c.timeout_ms == -1, "timeout_ms is -1 outside drain");
	is(admin_parse("show conns", &c), 0, "show conns");
	ok(c.kind == ADM_SHOW_CONNS && !c.json, "show conns kind, text");
	is(admin_parse("show CONNS json", &c), 0, "show conns json");
	ok(c.kind == ADM_SHOW_CONNS && c.json, "show conns json kind");
	is(admin_parse("reload", &c), 0, "reload");
	ok(c.kind == ADM_RELOAD && !c.json, "reload kind");
	is(admin_parse("reload json", &c), 0, "reload json");
	ok(c.kind == ADM_RELOAD && c.json, "reload json kind");
	is(admin_parse("drain", &c), 0, "drain");
	ok(c.kind == ADM_DRAIN && c.timeout_ms == -1 && !c.json, "drain: the default timeout (-1)");
	is(admin_parse("drain 30", &c), 0, "drain 30");
	ok(c.kind == ADM_DRAIN && c.timeout_ms == 30000 && !c.json, "drain 30: 30000 ms");
	is(admin_parse("DRAIN 0", &c), 0, "drain 0");
	ok(c.kind == ADM_DRAIN && c.timeout_ms == 0, "drain 0: close at once");
	is(admin_parse("drain 86400 json", &c), 0, "drain 86400 json");
	ok(c.kind == ADM_DRAIN && c.timeout_ms == 86400000 && c.json, "drain 86400 json: the maximum");
	is(admin_parse("drain json", &c), 0, "drain json");
	ok(c.kind == ADM_DRAIN && c.timeout_ms == -1 && c.json, "drain json: default timeout, JSON");
	is(admin_parse("drain 007", &c), 0, "drain 007");
	is(c.timeout_ms, 7000, "leading zeros are decimal");
	const struct { const char *in; int ms; } durs[] = {
		{ "drain 2s", 2000 }, { "drain 500ms", 500 }, { "drain 2m", 120000 }, { "drain 24h", 86400000 },
		{ "drain 1440m json", 86400000 }, { "drain 1m30s", 90000 }, { "drain 1.5s", 1500 },
		{ "drain 1.5", 1500 }, { "drain .5s", 500 }, { "drain 23h59m59s", 86399000 },
	};
	for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		is(admin_parse(durs[i].in, &c), 0, "%s: a duration with a unit", durs[i].in);
		is(c.timeout_ms, durs[i].ms, "%s: %d ms", durs[i].in, durs[i].ms);
	}
	const char *bad_durs[] = { "drain 25h", "drain 2x", "drain s", "drain 30s1m", "drain -1", "drain 1e3",
				   "drain 9999999999", "drain 24h1ms", "drain 1.5.5s" };
	for (size_t i = 0; i < sizeof(bad_durs) / sizeof(bad_durs[0]); i++)
		is(admin_parse(bad_durs[i], &c), -EINVAL, "%s refused", bad_durs[i]);

	c = (struct admin_cmd){ .kind = ADM_SHOW_INFO, .json = 1 };
	const char *bad[] = { "", "   ", "show", "show bogus", "bogus", "json", "showstats",
			      "show stats json extra", "show stats xml", "help me", "show json stats",
			      "show info json json", "show stat", "shows info", "show\x01info",
			      "show conn", "show conns 5", "reload now", "reload json json", "drain -1",
			      "drain abc", "drain 86401", "drain 99999999999", "drain 30 30",
			      "drain json 30", "drain +5", "drain 0x10", "drain 30 json x",
			      "drains", "reload 5" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is(admin_parse(bad[i], &c), -EINVAL, "invalid '%s' refused", bad[i]);
	ok(c.kind == ADM_SHOW_INFO && c.json, "out untouched on error");
	is(admin_parse(NULL, &c), -EINVAL, "NULL refused");
	ok(admin_wants_json("show bogus json") && admin_wants_json("bogus JSON \t") && admin_wants_json("json"),
	   "a line whose last word is json asks for JSON, parsed or not");
	ok(!admin_wants_json("show bogusjson") && !admin_wants_json("json bogus") && !admin_wants_json(""),
	   "... and no other line does");

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
	ok(rc == 0 && table_ok(t, 7), "help: aligned table of 7 commands");
	ok(strstr(t, "show workers") && strstr(t, "json"), "help lists commands and json");
	ok(strstr(t, " show conns [json] ") && strstr(t, " reload [json] ") &&
	   strstr(t, " drain [TIMEOUT] [json] "), "help lists show conns, reload, drain [TIMEOUT]");
	free(t);

	t = render(ADM_SHOW_INFO, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 19), "show info: aligned table of 19 rows");
	ok(row_is(t, "client_crls", "none"), "info row client_crls: none loaded");
	ok(row_is(t, "client_user_match", "none"), "info row client_user_match: none when unset");
	ok(row_is(t, "io_features", "sqpoll,multishot-accept,fixed-files"), "info row io_features");
	ok(row_is(t, "version", "1.2.3") && row_is(t, "pid", "4242"), "info rows version, pid");
	ok(row_is(t, "cert_sans", "DNS:db.example, IP:10.0.0.5"), "info row cert_sans");
	ok(row_is(t, "cert_not_after", "2027-01-01T00:00:00Z"), "info row cert_not_after");
	ok(row_is(t, "cert_serial", "0A1B"), "info row cert_serial");
	ok(row_is(t, "reload", "2026-11-22T00:00:00Z (ok); 4 ok, 2 partial, 1 refused"), "info row reload: time, result, counts");
	ok(row_is(t, "draining", "yes, the rest closed in 12.3 s"), "info row draining, with the time to the deadline");
	ok(strstr(t, "1d 02:03:04"), "uptime formatted");
	ok(strstr(t, "epoll (io_uring_setup: \"Operation not permitted\")"), "io engine and why");
	ok(strstr(t, "unavailable (tls module not loaded)"), "ktls and why");
	ok(strstr(t, "CN=\"db\" \\ O=x??"), "control characters in values become '?'");
	free(t);
	struct admin_snapshot crl = s;
	crl.client_crls = 2, crl.client_crls_stale = 1, crl.client_crl_next_update = "2026-12-01T00:00:00Z";
	t = render(ADM_SHOW_INFO, 0, &crl, &rc);
	ok(rc == 0 && row_is(t, "client_crls", "2 (next update 2026-12-01T00:00:00Z); PAST ITS NEXT UPDATE: clients of its CA are refused"),
	   "info row client_crls: count, earliest nextUpdate, and a stale one called out");
	free(t);
	crl.client_user_match = "map", crl.client_user_map_rules = 3;
	t = render(ADM_SHOW_INFO, 0, &crl, &rc);
	ok(rc == 0 && row_is(t, "client_user_match", "map (3 rules)"), "info row client_user_match: the map's rules");
	free(t);
	t = render(ADM_SHOW_INFO, 1, &crl, &rc);
	json_is(t, "(d[\"client_user_match\"], d[\"client_user_map_rules\"])", "('map', 3)", "info json: mode and rules");
	free(t);

	t = render(ADM_SHOW_STATS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 29), "show stats: aligned table of 15 + 3 + 3 gauges + 2 rekeys + 3 fallback steps + 3 percentiles");
	ok(row_is(t, "ktls_fallback_suite", "7") && row_is(t, "ktls_fallback_buffered", "0") &&
	   row_is(t, "ktls_fallback_step_2", "0"), "kTLS fallbacks per step summed");
	ok(row_is(t, "active_ktls_tx", "4") && row_is(t, "active_ktls_rx", "2") &&
	   row_is(t, "active_user_tls", "2"), "kTLS gauges summed");
	ok(row_is(t, "handshake_p50_ms", "3.50") && row_is(t, "handshake_p90_ms", "4.70") &&
	   row_is(t, "handshake_p99_ms", "4.97"), "handshake percentiles interpolated in (2, 5] ms");
	ok(row_is(t, "accepted", "81"), "accepted summed");
	ok(row_is(t, "bytes_c2b", "2199023255552"), "bytes summed");
	ok(row_is(t, "closed_handshake_timeout", "5"), "closed per reason");
	ok(strstr(t, "|            81\n") != NULL, "numbers right-aligned");
	ok(strstr(t, "closed_reason_1"), "a NULL reason name gets a placeholder");
	free(t);

	t = render(ADM_SHOW_WORKERS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 2), "show workers: aligned table of 2 rows");
	ok(strncmp(t, " id | cpu | engine | ", 21) == 0, "workers header");
	ok(strstr(t, "| epoll  |") && strstr(t, "12345678901"), "worker rows");
	ok(strstr(t, "  0 |   - | uring") && strstr(t, "  1 |   3 | epoll"), "worker cpu: '-' when not pinned");
	free(t);

	s.nworkers = 0;
	t = render(ADM_SHOW_WORKERS, 0, &s, &rc);
	ok(rc == 0 && table_ok(t, 0), "no workers: header and separator only");
	free(t);
	t = render(ADM_SHOW_STATS, 0, &s, &rc);
	ok(rc == 0 && row_is(t, "handshake_p50_ms", "-"), "no handshakes: percentiles '-'");
	free(t);
	s.reload_at = "";
	s.draining = 0;
	t = render(ADM_SHOW_INFO, 0, &s, &rc);
	ok(rc == 0 && row_is(t, "reload", "never") && row_is(t, "draining", "no"),
	   "never reloaded, not draining");
	free(t);
	t = render(ADM_SHOW_INFO, 1, &s, &rc);
	json_is(t, "(d[\"draining\"], d[\"drain_left_s\"])", "(False, None)", "info json: no drain deadline when not draining");
	free(t);
	t = render(ADM_SHOW_CONNS, 0, &s, &rc);
	is(rc, -EINVAL, "admin_render refuses show conns (needs the connections)");
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
		"['help', 'show info', 'show stats', 'show workers', 'show conns', 'reload', "
		"'drain [TIMEOUT]']",
		"help json parses, lists commands");
	free(j);

	j = render(ADM_SHOW_INFO, 1, &s, &rc);
	ok(rc == 0 && one_line(j), "info json: one line");
	json_is(j, "sorted(d)",
		"['backend', 'cert', 'cert_not_after', 'cert_sans', 'cert_serial', 'client_crl_next_update', "
		"'client_crls', 'client_crls_stale', 'client_user_map_rules', 'client_user_match', 'drain_left_s', 'draining', 'io', 'io_features', 'io_why', "
		"'kernel', "
		"'ktls', 'ktls_why', 'listen', 'openssl', 'pid', 'reload_at', 'reload_result', 'reloads_failed', 'reloads_ok', 'reloads_partial', 'uptime_s', "
		"'version', 'workers']",
		"info json keys");
	json_is(j, "(d[\"cert_sans\"], d[\"cert_serial\"], d[\"cert_not_after\"], d[\"reload_at\"], "
		   "d[\"reload_result\"], d[\"draining\"], d[\"drain_left_s\"])",
		"('DNS:db.example, IP:10.0.0.5', '0A1B', '2027-01-01T00:00:00Z', '2026-11-22T00:00:00Z', 'ok', True, 12.3)",
		"info json: certificate, reload, draining");
	json_is(j, "(d[\"reloads_ok\"], d[\"reloads_partial\"], d[\"reloads_failed\"])", "(4, 2, 1)",
		"info json: reload counts");
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
		"'backend_connect_failed', 'bytes_c2b', 'bytes_b2c', 'closed', 'active_ktls_tx', "
		"'active_ktls_rx', 'active_user_tls', 'ktls_rekey_rx', 'ktls_rekey_tx', 'handshake_ms', 'ktls_fallback']",
		"stats json: stable keys in order, new ones after");
	json_is(j, "(d[\"active_ktls_tx\"], d[\"active_ktls_rx\"], d[\"active_user_tls\"])", "(4, 2, 2)",
		"stats json: kTLS gauges");
	json_is(j, "d[\"handshake_ms\"]",
		"{'p50': 3.5, 'p90': 4.7, 'p99': 4.97, 'count': 10, 'sum': 35.0, "
		"'bounds': [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500], "
		"'buckets': [0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0]}",
		"stats json: handshake percentiles and histogram");
	json_is(j, "(d[\"accepted\"], d[\"active\"], d[\"refused_max\"], d[\"tls13\"], d[\"bytes_c2b\"])",
		"(81, 6, 14, 58, 2199023255552)", "stats json: sums");
	json_is(j, "d[\"closed\"]", "{'eof': 20, 'reason_1': 0, 'handshake_timeout': 5}",
		"stats json: closed per reason");
	json_is(j, "d[\"ktls_fallback\"]", "{'buffered': 0, 'suite': 7, 'step_2': 0}",
		"stats json: kTLS fallbacks per step, a NULL name gets a placeholder");
	free(j);

	j = render(ADM_SHOW_WORKERS, 1, &s, &rc);
	ok(rc == 0 && one_line(j), "workers json: one line");
	json_is(j,
		"[(x[\"id\"], x[\"cpu\"], x[\"engine\"], x[\"accepted\"], x[\"completions\"]) for x in d[\"workers\"]]",
		"[(0, None, 'uring', 40, 12345678901), (1, 3, 'epoll', 41, 12345678901)]", "workers json values");
	json_is(j, "sorted(d[\"workers\"][0])",
		"['accepted', 'active', 'bytes_b2c', 'bytes_c2b', 'completions', 'cpu', 'engine', 'enters', 'id', "
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
	json_is(j, "(d[\"handshake_ms\"][\"p50\"], d[\"handshake_ms\"][\"count\"])", "(None, 0)",
		"empty snapshot: percentiles null");
	free(j);
	j = render(ADM_SHOW_WORKERS, 1, &empty, &rc);
	json_is(j, "d[\"workers\"]", "[]", "empty snapshot: workers json valid");
	free(j);
}

static int near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

static void test_quantile(void)
{
	uint64_t h[ADMIN_HIST_BUCKETS] = { 0 };

	ok(isnan(admin_hist_quantile(h, 0.5)), "empty histogram: NAN");
	h[2] = 10; /* all in (2, 5] ms */
	ok(near(admin_hist_quantile(h, 0.5), 3.5), "p50 interpolated: 3.5 ms");
	ok(near(admin_hist_quantile(h, 0.9), 4.7), "p90 interpolated: 4.7 ms");
	ok(near(admin_hist_quantile(h, 0.99), 4.97), "p99 interpolated: 4.97 ms");
	ok(near(admin_hist_quantile(h, 1), 5), "p100: the bucket's upper bound");
	ok(isnan(admin_hist_quantile(h, 0)) && isnan(admin_hist_quantile(h, 1.5)) &&
	   isnan(admin_hist_quantile(h, NAN)), "q outside (0, 1]: NAN");

	memset(h, 0, sizeof(h));
	h[0] = 4, h[1] = 4, h[ADMIN_HIST_BUCKETS - 1] = 2; /* <=1 ms, (1, 2] ms, > 2500 ms */
	ok(near(admin_hist_quantile(h, 0.25), 0.625), "first bucket starts at 0 ms");
	ok(near(admin_hist_quantile(h, 0.4), 1), "a rank on a bucket edge: that bucket's bound");
	ok(near(admin_hist_quantile(h, 0.5), 1.25), "p50 in the second bucket: 1.25 ms");
	ok(near(admin_hist_quantile(h, 0.9), 2500), "p90 in +Inf: the last finite bound");

	memset(h, 0, sizeof(h));
	h[5] = 1, h[9] = 1; /* (25, 50] and (500, 1000], empty buckets between */
	ok(near(admin_hist_quantile(h, 0.5), 50), "empty buckets skipped (p50 = 50 ms)");
	ok(near(admin_hist_quantile(h, 0.75), 750), "p75 = 750 ms");
	h[5] = UINT64_MAX / 4, h[9] = UINT64_MAX / 4;
	double v = admin_hist_quantile(h, 0.99);
	ok(v > 500 && v <= 1000, "huge counts stay finite (%g)", v);
}

static const struct admin_conn conns_fixture[] = {
	{ .id = 7, .worker = 1, .client = "192.0.2.10:50123", .local = "10.0.0.5:5433",
	  .backend_port = 41234, .state = "relay", .txn = "in_transaction", .tls = "TLSv1.3", .cipher = "TLS_AES_256_GCM_SHA384",
	  .sni = "db.example", .peer = "CN=app", .user = "app", .database = "orders", .ktls = "tx+rx",
	  .age_s = 12.25, .bytes_in = 100, .bytes_out = 1ULL << 40, .k_ulp = "tls", .k_version = "TLSv1.3",
	  .k_cipher = "aes-256-gcm", .k_txconf = "SW", .k_rxconf = "HW", .k_rtt_us = 120, .k_retrans = 3 },
	{ .id = 8, .worker = 0, .client = "[2001:db8::1]:40000", .local = "[2001:db8::2]:5433",
	  .state = "handshake", .peer = "CN=\"x\"\n\xff", .ktls = "off", .age_s = NAN,
	  .k_txconf = "unknown (needs CAP_NET_ADMIN)", .k_rxconf = "unknown (needs CAP_NET_ADMIN)" },
};

static char *render_conns(const struct admin_conn *c, size_t n, int json, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	*rc = admin_render_conns(c, n, json, f);
	fclose(f);
	return buf;
}

static void test_render_conns(void)
{
	struct admin_conn c[2];
	int rc;
	char *t;

	memcpy(c, conns_fixture, sizeof(c));
	t = render_conns(c, 2, 0, &rc);
	ok(rc == 0 && table_ok(t, 2), "show conns: aligned table of 2 rows");
	ok(strncmp(t, " id | worker | client ", 22) == 0, "conns header starts with id, worker, client");
	ok(strstr(t, " backend_port ") && strstr(t, " k_txconf ") && strstr(t, " rtt_us | retrans\n"),
	   "conns header has backend_port, the kernel view, rtt and retransmits");
	ok(strstr(t, "| 192.0.2.10:50123    |") && strstr(t, "|        41234 |"),
	   "client and backend_port (right-aligned)");
	ok(strstr(t, "| db.example |") && strstr(t, "| orders   |") && strstr(t, "| tx+rx |"),
	   "sni, database, ktls");
	ok(strstr(t, "| tls   | TLSv1.3   | aes-256-gcm | SW     "), "kernel view: ulp, version, cipher, tx");
	ok(strstr(t, "12.2 |") || strstr(t, "12.3 |"), "age in seconds");
	ok(strstr(t, "| 1099511627776 |"), "bytes out");
	ok(strstr(t, "|    120 |       3\n"), "rtt_us and retrans");
	ok(strstr(t, "| CN=\"x\"?\xff |"), "control characters in cells become '?'");
	ok(strstr(t, "|            - |"), "no backend port: '-'");
	ok(strstr(t, "| relay     | in_transaction | TLSv1.3 |") && strstr(t, "| handshake | -              |"),
	   "txn after state, '-' where unknown");
	free(t);

	t = render_conns(c, 0, 0, &rc);
	ok(rc == 0 && table_ok(t, 0), "no conns: header and separator only");
	free(t);
	t = render_conns(NULL, 1, 0, &rc);
	is(rc, -EINVAL, "conns NULL with n > 0: -EINVAL");
	free(t);

	/* Unterminated arrays from the daemon stay inside their fields. */
	memset(c[1].user, 'u', sizeof(c[1].user));
	memset(c[1].k_ulp, 'k', sizeof(c[1].k_ulp));
	t = render_conns(c, 2, 1, &rc);
	ok(rc == 0 && one_line(t), "conns json: one line");
	json_is(t, "[sorted(x) for x in d[\"conns\"]][0]",
		"['age_s', 'backend_port', 'bytes_in', 'bytes_out', 'cipher', 'client', 'database', 'id', "
		"'kernel', 'ktls', 'local', 'peer', 'sni', 'state', 'tls', 'txn', 'user', 'worker']",
		"conns json keys");
	json_is(t, "sorted(d[\"conns\"][0][\"kernel\"].items())",
		"[('cipher', 'aes-256-gcm'), ('retrans', 3), ('rtt_us', 120), ('rxconf', 'HW'), "
		"('txconf', 'SW'), ('ulp', 'tls'), ('version', 'TLSv1.3')]",
		"conns json: the kernel view");
	json_is(t, "[(x[\"id\"], x[\"worker\"], x[\"client\"], x[\"local\"], x[\"backend_port\"], "
		   "x[\"state\"], x[\"txn\"], x[\"age_s\"], x[\"bytes_out\"]) for x in d[\"conns\"]]",
		"[(7, 1, '192.0.2.10:50123', '10.0.0.5:5433', 41234, 'relay', 'in_transaction', 12.25, 1099511627776), "
		"(8, 0, '[2001:db8::1]:40000', '[2001:db8::2]:5433', 0, 'handshake', '', 0.0, 0)]",
		"conns json values");
	json_is(t, "(d[\"conns\"][1][\"peer\"]==\"CN=\\x22x\\x22\\n\\ufffd\", len(d[\"conns\"][1][\"user\"]), "
		   "d[\"conns\"][1][\"kernel\"][\"ulp\"], d[\"conns\"][1][\"kernel\"][\"txconf\"])",
		"(True, 63, 'kkkkkkk', 'unknown (needs CAP_NET_ADMIN)')",
		"conns json: escaped, unterminated fields cut at their size");
	free(t);
	t = render_conns(c, 0, 1, &rc);
	json_is(t, "d", "{'conns': []}", "no conns: empty JSON list");
	free(t);
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

static atomic_int reload_fail, drain_calls, drain_timeout;

static int fake_conns(void *ctx, struct admin_conn **out, size_t *n)
{
	(void)ctx;
	*out = malloc(sizeof(conns_fixture));
	if (!*out)
		return -ENOMEM;
	memcpy(*out, conns_fixture, sizeof(conns_fixture));
	*n = 2;
	return 0;
}

static int fake_reload(void *ctx, char *msg, size_t len)
{
	(void)ctx;
	if (atomic_load(&reload_fail)) {
		snprintf(msg, len, "cannot read /etc/tls/tls.crt: No such file\nor directory");
		return -ENOENT;
	}
	snprintf(msg, len, "certificate reloaded: CN=db, not after Jan  1 00:00:00 2027 GMT");
	return 0;
}

static int fake_drain(void *ctx, int timeout_ms)
{
	(void)ctx;
	atomic_fetch_add(&drain_calls, 1);
	atomic_store(&drain_timeout, timeout_ms);
	return timeout_ms < 0 ? 30000 : timeout_ms > 100000 ? 100000 : timeout_ms; /* an earlier 100 s deadline stands */
}

static const struct admin_ops fake_ops = { .snapshot = fake_snapshot, .conns = fake_conns,
					   .reload = fake_reload, .drain = fake_drain };
static const struct admin_ops snapshot_only_ops = { .snapshot = fake_snapshot };

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

	rc = ctl(path, "show conns", &t);
	ok(rc == 0 && table_ok(t, 2), "ctl show conns: a table of 2 connections");
	ok(strstr(t, "| 192.0.2.10:50123    |") && strstr(t, "|        41234 |"), "show conns rows");
	free(t);
	rc = ctl(path, "show conns json", &t);
	json_is(t, "[(x[\"id\"], x[\"client\"], x[\"kernel\"][\"ulp\"], x[\"kernel\"][\"txconf\"]) "
		   "for x in d[\"conns\"]]",
		"[(7, '192.0.2.10:50123', '', ''), (8, '[2001:db8::1]:40000', '', '')]",
		"show conns json: the kernel view is replaced by sock_diag (no such sockets here)");
	free(t);

	rc = ctl(path, "reload", &t);
	is(rc, 0, "ctl reload: 0");
	is_str(t, "OK: certificate reloaded: CN=db, not after Jan  1 00:00:00 2027 GMT\n", "reload: OK and the message");
	free(t);
	rc = ctl(path, "reload json", &t);
	json_is(t, "(d[\"result\"], d[\"message\"][:20])", "('ok', 'certificate reloaded')", "reload json");
	free(t);
	atomic_store(&reload_fail, 1);
	rc = ctl(path, "reload", &t);
	is(rc, -EINVAL, "ctl reload failing: -EINVAL");
	is_str(t, "ERROR: cannot read /etc/tls/tls.crt: No such file or directory\n",
	       "reload failure: ERROR and the message, on one line");
	free(t);
	rc = ctl(path, "reload json", &t);
	is(rc, -EINVAL, "ctl reload json failing: -EINVAL");
	json_is(t, "d", "{'error': 'cannot read /etc/tls/tls.crt: No such file or directory'}",
		"reload json failure: a JSON error object");
	atomic_store(&reload_fail, 0);
	free(t);

	rc = ctl(path, "drain 7", &t);
	ok(rc == 0 && strncmp(t, "OK: draining", 12) == 0 && strstr(t, "after 7 s"), "ctl drain 7: OK: draining");
	ok(atomic_load(&drain_calls) == 1 && atomic_load(&drain_timeout) == 7000, "drain callback got 7000 ms");
	free(t);
	rc = ctl(path, "drain", &t);
	ok(rc == 0 && strstr(t, "after 30 s") && atomic_load(&drain_timeout) == -1,
	   "ctl drain: the default timeout (-1), answered with the deadline in force (%s)", t);
	free(t);
	rc = ctl(path, "drain 3 json", &t);
	json_is(t, "d", "{'result': 'ok', 'draining': True, 'timeout_s': 3}", "drain json");
	free(t);
	rc = ctl(path, "drain soon", &t);
	ok(rc == -EINVAL && atomic_load(&drain_calls) == 3, "drain with bad seconds: refused, no callback");
	free(t);
	rc = ctl(path, "drain 500ms", &t);
	ok(rc == 0 && strstr(t, "after 0.500 s") && atomic_load(&drain_timeout) == 500,
	   "ctl drain 500ms: 500 ms, said as 0.500 s (%s)", t);
	free(t);
	rc = ctl(path, "drain 1m30s json", &t);
	json_is(t, "d", "{'result': 'ok', 'draining': True, 'timeout_s': 90}", "drain 1m30s json: 90 s");
	free(t);
	rc = ctl(path, "drain 1.5s json", &t);
	json_is(t, "d[\"timeout_s\"]", "1.5", "drain 1.5s json: timeout_s 1.5");
	free(t);
	rc = ctl(path, "drain json", &t);
	json_is(t, "d[\"timeout_s\"]", "30", "drain json: the default timeout as the deadline in force, not null");
	free(t);
	rc = ctl(path, "drain 2m", &t);
	ok(rc == 0 && strstr(t, "after 100 s"), "drain 2m after a sooner deadline: answers the one in force (%s)", t);
	free(t);

	rc = ctl(path, "show bogus json", &t);
	is(rc, -EINVAL, "ctl show bogus json: -EINVAL");
	json_is(t, "d", "{'error': \"unknown command (try 'help')\"}", "show bogus json: a JSON error object");
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

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A client that sends many commands and reads nothing fills its socket: it must not hold
 * up other clients, and it is dropped once an answer waits longer than 2 s. */
static void test_slow_reader(const char *path)
{
	static char junk[1 << 20];
	char *t = NULL;
	int fd = unix_connect(path), good = fd >= 0;

	/* one send: the socket takes it all, the server reads it a line at a time */
	for (int i = 0; i < 1000; i++)
		memcpy(junk + 11 * i, "show stats\n", 11);
	good = good && send(fd, junk, 11000, MSG_NOSIGNAL) == 11000;
	usleep(300 * 1000);
	uint64_t t1 = mono_ms();
	int rc = ctl(path, "help", &t);
	uint64_t took = mono_ms() - t1;
	ok(good && rc == 0 && took < 1000, "a client that does not read does not delay another (%llu ms)",
	   (unsigned long long)took);
	if (!good || rc)
		diag("good %d rc %d answer '%s'", good, rc, t ? t : "");
	free(t);
	usleep(2500 * 1000);
	size_t got = 0;
	ssize_t n;
	while ((n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
		got += (size_t)n;
	/* its unread commands turn the close into ECONNRESET */
	ok((n == 0 || (n < 0 && errno == ECONNRESET)) && got > 100000 && got < 1000 * 1000,
	   "... and is dropped after its answer waits 2 s (%zu bytes of answers, then closed)", got);
	close(fd);
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
	test_slow_reader(path);

	admin_stop(a);
	ok(lstat(path, &st) < 0 && errno == ENOENT, "admin_stop removes the socket");

	/* A stale socket (no listener) is replaced; a regular file is not. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ok(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "stale socket left behind");
	close(fd);
	is(admin_start(path, NULL, &snapshot_only_ops, NULL, &a), 0, "stale socket replaced");
	char *t = NULL;
	const char *const unsupported[] = { "show conns", "reload", "drain 5" };
	for (int i = 0; i < 3; i++) {
		int rc = ctl(path, unsupported[i], &t);
		ok(rc == -EINVAL && strcmp(t, "ERROR: not supported\n") == 0, "no callback: '%s' is not supported",
		   unsupported[i]);
		free(t);
	}
	admin_stop(a);
	is(admin_start(NULL, "", &fake_ops, NULL, &a), 0, "neither socket nor listener: 0");
	ok(a == NULL && admin_metrics_port(a) == 0, "... and nothing started");
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
	test_quantile();
	test_render_conns();
	test_live();
	return done_testing();
}
