// SPDX-License-Identifier: MIT
// Unit tests for the metrics listener: the pure request parser, the Prometheus
// rendering (checked by a small Python parser of the text format), and a live
// listener: /metrics, /healthz, /readyz, 404, 405, 400, 431, limits, and idle
// clients that must not hold up anyone else.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "tap.h"

static int have_python;

/* ---- the parser ------------------------------------------------------------------------ */

static int parse(const char *req, char *path)
{
	return admin_http_parse(req, strlen(req), path, 64);
}

static void test_parse(void)
{
	char path[64] = "untouched", big[ADMIN_HTTP_HEAD_MAX + 100];

	is(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", path), 0, "complete GET, CRLF");
	is_str(path, "/metrics", "path");
	is(parse("GET /healthz HTTP/1.0\n\n", path), 0, "HTTP/1.0 with bare LF");
	is_str(path, "/healthz", "path (LF)");
	is(parse("GET /readyz?verbose=1&x=2 HTTP/1.1\r\nA: b\nC:d\r\n\n", path), 0, "mixed CRLF and LF");
	is_str(path, "/readyz", "query string removed");
	is(parse("GET /a#frag HTTP/1.1\r\n\r\n", path), 0, "fragment");
	is_str(path, "/a", "fragment removed");
	is(parse("\r\n\nGET / HTTP/1.1\r\n\r\n", path), 0, "empty lines before the request line ignored");
	is_str(path, "/", "root path");
	is(parse("GET http://host:9187/metrics?x HTTP/1.1\r\n\r\n", path), 0, "absolute-form");
	is_str(path, "/metrics", "absolute-form path");
	is(parse("GET HTTP://host HTTP/1.1\r\n\r\n", path), 0, "absolute-form without a path");
	is_str(path, "/", "absolute-form without a path is /");
	is(parse("GET /m HTTP/1.1\r\nX-Empty:\r\nUser-Agent: Prometheus/2.45 \t\xc3\xbc\r\n\r\n", path), 0,
	   "empty header value, tab, UTF-8 value");
	is(parse("GET /x HTTP/1.1\r\n\r\nGARBAGE AFTER", path), 0, "bytes after the head are ignored");

	strcpy(path, "untouched");
	const char *partial[] = { "", "G", "GET", "GET /metrics", "GET /metrics HTTP/1.1",
				  "GET /metrics HTTP/1.1\r", "GET /metrics HTTP/1.1\r\n",
				  "GET /metrics HTTP/1.1\r\nHost: x\r\n", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r",
				  "\r\n", "GET / HTTP/1.1\nHost: a" };
	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
		is(parse(partial[i], path), -EAGAIN, "partial '%.*s...': -EAGAIN", (int)strcspn(partial[i], "\r\n"),
		   partial[i]);
	is_str(path, "untouched", "path untouched unless complete");

	const char *notget[] = { "POST /metrics HTTP/1.1\r\n", "HEAD / HTTP/1.1\r\n\r\n", "get / HTTP/1.1\r\n",
				 "DELETE /x HTTP/1.0\n", "OPTIONS * HTTP/1.1\r\n" };
	for (size_t i = 0; i < sizeof(notget) / sizeof(notget[0]); i++)
		is(parse(notget[i], path), -EOPNOTSUPP, "not GET: '%.*s' -EOPNOTSUPP",
		   (int)strcspn(notget[i], "\r\n"), notget[i]);

	const char *bad[] = {
		"GET\r\n\r\n", "GET /\r\n\r\n", "GET / HTTP/1.1 extra\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n", "GET / http/1.1\r\n\r\n", "GET / HTTP/1.10\r\n\r\n",
		"GET metrics HTTP/1.1\r\n\r\n", "GET * HTTP/1.1\r\n\r\n", "GET http:///x HTTP/1.1\r\n\r\n", "GET http:// HTTP/1.1\r\n\r\n",
		"GET http://?x HTTP/1.1\r\n\r\n",
		"GET /a\x01 HTTP/1.1\r\n\r\n", "GET /\xc3\xbc HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "GET / HTTP/1.1\r\nName : x\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", " GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01\x02\x05\x01\x01\n",
		"/ HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is(parse(bad[i], path), -EINVAL, "malformed #%zu: -EINVAL", i);
	is(admin_http_parse("GET /\0 HTTP/1.1\r\n\r\n", 19, path, 64), -EINVAL, "NUL in the request line");
	is(admin_http_parse("GET / HTTP/1.1\r\nA: \0\r\n\r\n", 24, path, 64), -EINVAL, "NUL in a header");
	is(admin_http_parse("GET / HTTP/1.1\r\n\r\n", 18, path, 0), -EINVAL, "no room for the path");
	is(admin_http_parse(NULL, 0, path, 64), -EINVAL, "NULL buffer");

	/* The head may use ADMIN_HTTP_HEAD_MAX bytes, no more. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memcpy(big + ADMIN_HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
	is(admin_http_parse(big, ADMIN_HTTP_HEAD_MAX, path, 64), 0, "a head of exactly the maximum");
	is(admin_http_parse(big, sizeof(big), path, 64), 0, "... with more bytes after it");
	memcpy(big + ADMIN_HTTP_HEAD_MAX - 4, "aa\r\n\r\n", 6);
	is(admin_http_parse(big, ADMIN_HTTP_HEAD_MAX - 1, path, 64), -EAGAIN, "one byte short: -EAGAIN");
	is(admin_http_parse(big, ADMIN_HTTP_HEAD_MAX, path, 64), -E2BIG, "head over the maximum: -E2BIG");
	is(admin_http_parse(big, sizeof(big), path, 64), -E2BIG, "... also with more bytes");
	memcpy(big, "GET /", 5);
	memset(big + 5, 'p', 100);
	memcpy(big + 105, " HTTP/1.1\r\n\r\n", 13);
	is(admin_http_parse(big, 118, path, 64), -E2BIG, "path longer than the caller's buffer: -E2BIG");
	char longer[200];
	is(admin_http_parse(big, 118, longer, sizeof(longer)), 0, "... fits a larger one");
	is(strlen(longer), 101, "the long path");
}

/* ---- Prometheus text ----------------------------------------------------------------------- */

/* A strict reader of the text format 0.0.4 for the checks: HELP/TYPE before samples,
 * one TYPE per family, name{labels} value lines, unique series, counters end in _total,
 * histograms with cumulative buckets ending at le="+Inf" == _count. Then prints
 * eval(argv[2]) over m (series -> value, labels sorted). */
static const char prom_py[] =
	"import re,sys\n"
	"t=open(sys.argv[1],encoding='utf-8').read()\n"
	"assert t.endswith('\\n'), 'no final newline'\n"
	"name_re=r'[a-zA-Z_:][a-zA-Z0-9_:]*'\n"
	"lab_re=r'[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\"'\n"
	"sample=re.compile(r'^('+name_re+r')(?:\\{('+lab_re+r'(?:,'+lab_re+r')*)?\\})? (\\S+)$')\n"
	"types={}; helps={}; m={}; fam_of={}\n"
	"def family(n):\n"
	"  for suf in ('_bucket','_sum','_count'):\n"
	"    if n.endswith(suf) and types.get(n[:-len(suf)])=='histogram': return n[:-len(suf)]\n"
	"  return n\n"
	"for ln in t.split('\\n')[:-1]:\n"
	"  if ln.startswith('# HELP '):\n"
	"    _,_,n,h=ln.split(' ',3); assert n not in helps, 'two HELP '+n; helps[n]=h; continue\n"
	"  if ln.startswith('# TYPE '):\n"
	"    _,_,n,ty=ln.split(' '); assert n not in types, 'two TYPE '+n\n"
	"    assert ty in ('counter','gauge','histogram','summary','untyped'), ty\n"
	"    assert n not in fam_of.values(), 'TYPE after samples '+n\n"
	"    types[n]=ty; continue\n"
	"  assert not ln.startswith('#') and ln, 'stray line %r'%ln\n"
	"  g=sample.match(ln); assert g, 'bad sample %r'%ln\n"
	"  n,labs,v=g.group(1),g.group(2) or '',g.group(3)\n"
	"  f=family(n); assert f in types, 'no TYPE for '+n\n"
	"  if types[f]=='counter': assert n.endswith('_total'), 'counter without _total '+n\n"
	"  labs=','.join(sorted(re.findall(lab_re,labs)))\n"
	"  k=n+('{'+labs+'}' if labs else ''); assert k not in m, 'duplicate '+k\n"
	"  m[k]=float(v); fam_of[k]=f\n"
	"for f,ty in types.items():\n"
	"  assert f in helps, 'no HELP '+f\n"
	"  if ty!='histogram': continue\n"
	"  bs=[(k,v) for k,v in m.items() if k.startswith(f+'_bucket{')]\n"
	"  les=[float(re.search(r'le=\"([^\"]*)\"',k).group(1)) for k,_ in bs]\n"
	"  assert les==sorted(les) and les[-1]==float('inf'), 'buckets out of order'\n"
	"  vs=[v for _,v in bs]; assert vs==sorted(vs), 'buckets not cumulative'\n"
	"  assert vs[-1]==m[f+'_count'] and f+'_sum' in m, 'le=+Inf != _count'\n"
	"print(eval(sys.argv[2]))\n";

/* Check body with prom_py; print eval(expr) into out. 0, or -1 (out has the error). */
static int prom_eval(const char *body, const char *expr, char *out, size_t cap)
{
	char txt[] = "/tmp/test_admin_prom_XXXXXX", py[] = "/tmp/test_admin_py_XXXXXX", cmd[1024];
	int fd = mkstemp(txt), fd2 = mkstemp(py);
	out[0] = 0;
	if (fd < 0 || fd2 < 0)
		return -1;
	ssize_t n = write(fd, body, strlen(body)), n2 = write(fd2, prom_py, sizeof(prom_py) - 1);
	close(fd);
	close(fd2);
	snprintf(cmd, sizeof(cmd), "python3 %s %s '%s' 2>&1", py, txt, expr);
	FILE *p = popen(cmd, "r");
	size_t len = p ? fread(out, 1, cap - 1, p) : 0;
	out[len] = 0;
	while (len && out[len - 1] == '\n')
		out[--len] = 0;
	int st = p ? pclose(p) : -1;
	unlink(txt);
	unlink(py);
	return n == (ssize_t)strlen(body) && n2 == (ssize_t)sizeof(prom_py) - 1 && st == 0 ? 0 : -1;
}

static void prom_is(const char *body, const char *expr, const char *exp, const char *name)
{
	char got[4096];
	if (!have_python) {
		skip("python3 not available");
		return;
	}
	int rc = prom_eval(body, expr, got, sizeof(got));
	ok(rc == 0 && strcmp(got, exp) == 0, "%s", name);
	if (rc || strcmp(got, exp))
		diag("expr %s: got '%s', expected '%s'", expr, got, exp);
}

static const char *const reasons[] = { "eof", NULL, "handshake_timeout" };
static const char *const steps[] = { "buffered", "suite" };

static struct admin_snapshot fake(struct admin_worker *w)
{
	memset(w, 0, 2 * sizeof(*w));
	for (int i = 0; i < 2; i++) {
		w[i].id = i;
		w[i].engine = "uring";
		w[i].c.accepted = 40 + (uint64_t)i;
		w[i].c.active = 3;
		w[i].c.refused_max = 7;
		w[i].c.handshakes_ok = 30;
		w[i].c.handshakes_failed = 1;
		w[i].c.tls12 = 1;
		w[i].c.tls13 = 29;
		w[i].c.ktls_tx = 28;
		w[i].c.ktls_rx = 27;
		w[i].c.user_tls = 3;
		w[i].c.rekey_rx = 5;
		w[i].c.rekey_tx = 1;
		w[i].c.plaintext = 2;
		w[i].c.cancels = 4;
		w[i].c.backend_connect_failed = 5;
		w[i].c.bytes_c2b = 1ULL << 40;
		w[i].c.bytes_b2c = 5;
		w[i].c.closed[0] = 10;
		w[i].c.closed[2] = 2 + (uint64_t)i;
		w[i].c.ktls_fallback[0] = 1;
		w[i].c.ktls_fallback[1] = 2 + (uint64_t)i;
		w[i].c.active_ktls_tx = 2;   /* sums: tx 4, rx 3, user 3: open TLS 6 */
		w[i].c.active_ktls_rx = 1 + (uint64_t)i;
		w[i].c.active_user_tls = 1 + (uint64_t)i;
		w[i].c.hs_hist[0] = 5;       /* 10 <= 1 ms */
		w[i].c.hs_hist[3] = 10;      /* 20 in (5, 10] ms */
		w[i].c.hs_hist[ADMIN_HIST_BUCKETS - 1] = (uint64_t)i; /* 1 over 2.5 s */
		w[i].c.hs_sum_us = 2500000;  /* 5 s */
	}
	return (struct admin_snapshot){
		.version = "1.2.3 \"q\" \\", .io = "uring", .ktls = "available\nx", .kernel = "6.1.0",
		.pid = 42, .uptime_s = 93784.5, .nworkers = 2, .workers = w, .reason_names = reasons,
		.nreasons = 3, .ktls_step_names = steps, .nsteps = 2, .draining = 1, .cert_not_after_unix = 1798761600, .client_crls = 2, .client_crl_next_update_unix = 1797000000, .reloads_ok = 3, .reloads_failed = 2, .reloads_partial = 1,
	};
}

static char *metrics(const struct admin_snapshot *s, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	*rc = admin_metrics_render(s, f);
	fclose(f);
	return buf;
}

static void test_metrics_render(void)
{
	struct admin_worker w[2];
	struct admin_snapshot s = fake(w);
	int rc;
	char *t = metrics(&s, &rc);

	is(rc, 0, "admin_metrics_render: 0");
	prom_is(t, "len(m) > 30", "True", "metrics parse as Prometheus text");
	prom_is(t,
		"[m[k] for k in (\"ktls_sidecar_connections_active\", \"ktls_sidecar_connections_accepted_total\", "
		"\"ktls_sidecar_connections_refused_total\", \"ktls_sidecar_cancels_total\", "
		"\"ktls_sidecar_backend_connect_failures_total\", \"ktls_sidecar_plaintext_connections_total\", "
		"\"ktls_sidecar_uptime_seconds\", \"ktls_sidecar_draining\")]",
		"[6.0, 81.0, 14.0, 8.0, 10.0, 4.0, 93784.5, 1.0]", "connection counters and gauges");
	prom_is(t, "sorted((k,v) for k,v in m.items() if k.startswith(\"ktls_sidecar_connections_closed_total\"))",
		"[('ktls_sidecar_connections_closed_total{reason=\"eof\"}', 20.0), "
		"('ktls_sidecar_connections_closed_total{reason=\"handshake_timeout\"}', 5.0), "
		"('ktls_sidecar_connections_closed_total{reason=\"reason_1\"}', 0.0)]",
		"closed by reason");
	prom_is(t, "[m[\"ktls_sidecar_handshakes_total{result=\\\"%s\\\"}\" % r] for r in (\"ok\", \"failed\")]",
		"[60.0, 2.0]", "handshakes by result");
	prom_is(t, "[m[\"ktls_sidecar_tls_version_total{version=\\\"%s\\\"}\" % r] for r in (\"TLSv1.2\", \"TLSv1.3\")]",
		"[2.0, 58.0]", "handshakes by TLS version");
	prom_is(t, "[m[\"ktls_sidecar_bytes_total{direction=\\\"%s\\\"}\" % r] for r in (\"client_to_backend\", \"backend_to_client\")]",
		"[2199023255552.0, 10.0]", "bytes by direction");
	prom_is(t, "[m[\"ktls_sidecar_ktls_connections{direction=\\\"%s\\\",mode=\\\"%s\\\"}\" % (d, k)] "
		   "for k in (\"kernel\", \"user\") for d in (\"tx\", \"rx\")]",
		"[4.0, 3.0, 2.0, 3.0]", "kTLS gauges by direction and mode (user tx = open TLS - kernel tx)");
	prom_is(t, "[m[\"ktls_sidecar_ktls_installed_total{direction=\\\"%s\\\"}\" % d] for d in (\"tx\", \"rx\")] + "
		   "[m[\"ktls_sidecar_user_tls_connections_total\"]]",
		"[56.0, 54.0, 6.0]", "kTLS installs and userspace TLS counters");
	prom_is(t, "[m[\"ktls_sidecar_ktls_rekeys_total{direction=\\\"%s\\\"}\" % d] for d in (\"tx\", \"rx\")]",
		"[2.0, 10.0]", "kTLS rekeys by direction");
	prom_is(t, "[(k, v) for k, v in sorted(m.items()) if k.startswith(\"ktls_sidecar_ktls_fallbacks_total\")]",
		"[('ktls_sidecar_ktls_fallbacks_total{step=\"buffered\"}', 2.0), "
		"('ktls_sidecar_ktls_fallbacks_total{step=\"suite\"}', 5.0)]",
		"kTLS fallbacks by step");
	prom_is(t, "[(k[k.index(\"le=\"):], v) for k, v in m.items() if \"duration_seconds_bucket\" in k]",
		"[('le=\"0.001\"}', 10.0), ('le=\"0.002\"}', 10.0), ('le=\"0.005\"}', 10.0), ('le=\"0.01\"}', 30.0), "
		"('le=\"0.025\"}', 30.0), ('le=\"0.05\"}', 30.0), ('le=\"0.1\"}', 30.0), ('le=\"0.25\"}', 30.0), "
		"('le=\"0.5\"}', 30.0), ('le=\"1\"}', 30.0), ('le=\"2.5\"}', 30.0), ('le=\"+Inf\"}', 31.0)]",
		"handshake histogram: cumulative buckets in seconds");
	prom_is(t, "(m[\"ktls_sidecar_handshake_duration_seconds_sum\"], m[\"ktls_sidecar_handshake_duration_seconds_count\"])",
		"(5.0, 31.0)", "histogram _sum in seconds and _count");
	prom_is(t, "(m[\"ktls_sidecar_certificate_expiry_timestamp_seconds\"], "
		   "[m[\"ktls_sidecar_reloads_total{result=\\\"%s\\\"}\" % r] for r in (\"ok\", \"partial\", \"failed\")])",
		"(1798761600.0, [3.0, 1.0, 2.0])", "certificate expiry as Unix time, reloads by outcome");
	prom_is(t, "m[\"ktls_sidecar_client_crl_next_update_timestamp_seconds\"]", "1797000000.0",
		"the client CRLs' earliest nextUpdate as Unix time");
	prom_is(t, "[k for k in m if k.startswith(\"ktls_sidecar_info\")]",
		"['ktls_sidecar_info{io=\"uring\",ktls=\"available\\\\nx\",version=\"1.2.3 \\\\\"q\\\\\" \\\\\\\\\"}']",
		"info labels escaped (quote, backslash, newline)");
	ok(strstr(t, "# TYPE ktls_sidecar_handshake_duration_seconds histogram\n") &&
	   strstr(t, "# TYPE ktls_sidecar_connections_active gauge\n") &&
	   strstr(t, "# HELP ktls_sidecar_bytes_total "), "HELP and TYPE lines");
	free(t);

	struct admin_snapshot empty = { .nworkers = 0 };
	t = metrics(&empty, &rc);
	is(rc, 0, "empty snapshot renders");
	prom_is(t, "(m[\"ktls_sidecar_handshake_duration_seconds_count\"], m[\"ktls_sidecar_connections_active\"])",
		"(0.0, 0.0)", "empty snapshot: valid text, zeros");
	prom_is(t, "\"ktls_sidecar_certificate_expiry_timestamp_seconds\" in m", "False",
		"no certificate expiry when it is unknown");
	prom_is(t, "\"ktls_sidecar_client_crl_next_update_timestamp_seconds\" in m", "False", "no CRL gauge without CRLs");
	free(t);
	s.workers = NULL;
	t = metrics(&s, &rc);
	is(rc, -EINVAL, "workers missing: -EINVAL");
	free(t);
}

/* ---- the live listener ------------------------------------------------------------------- */

static atomic_int not_ready, snap_fail;

static int fake_snapshot(void *ctx, struct admin_snapshot *out)
{
	(void)ctx;
	if (atomic_load(&snap_fail))
		return -EIO;
	struct admin_worker *w = malloc(2 * sizeof(*w));
	if (!w)
		return -ENOMEM;
	*out = fake(w);
	return 0;
}

/* probe_mode: 0 no probe; 1 a probe that connects at once (a socketpair end);
 * 2 one that never does (a pipe's read end: never writable). */
static atomic_int probe_mode, probe_calls;
static int stuck_pipe[2] = { -1, -1 };

static int fake_ready(void *ctx, int *probe, char *why, size_t len)
{
	(void)ctx;
	atomic_fetch_add(&probe_calls, 1);
	if (atomic_load(&not_ready)) {
		snprintf(why, len, "draining\n(shutting down)");
		return -ESHUTDOWN;
	}
	int sv[2];
	switch (atomic_load(&probe_mode)) {
	case 1:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
			return -errno;
		close(sv[1]); /* writable all the same: POLLOUT|POLLHUP, SO_ERROR 0 */
		*probe = sv[0];
		return -EINPROGRESS;
	case 2:
		if (pipe2(stuck_pipe, O_CLOEXEC))
			return -errno;
		*probe = stuck_pipe[0];
		return -EINPROGRESS;
	}
	return 0;
}

static int fake_ready_done(void *ctx, int rc, int *probe, char *why, size_t len)
{
	(void)ctx, (void)probe;
	if (rc)
		snprintf(why, len, "probe: %s", strerror(-rc));
	return rc;
}

static const struct admin_ops ops = { .snapshot = fake_snapshot, .ready = fake_ready, .ready_done = fake_ready_done };

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int tcp_connect(int family, unsigned port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_port = htons((uint16_t)port);
		len = sizeof(*in);
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read to EOF (or timeout_ms); NUL-terminated. */
static size_t read_all(int fd, char *out, size_t cap, int timeout_ms)
{
	size_t len = 0;
	uint64_t end = mono_ms() + (uint64_t)timeout_ms;
	while (len + 1 < cap) {
		uint64_t now = mono_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = 0;
	return len;
}

/* One request on a fresh connection; the whole response in out. */
static size_t http(int family, unsigned port, const char *req, size_t reqlen, char *out, size_t cap)
{
	out[0] = 0;
	int fd = tcp_connect(family, port);
	if (fd < 0)
		return 0;
	size_t n = send(fd, req, reqlen, MSG_NOSIGNAL) == (ssize_t)reqlen ? read_all(fd, out, cap, 7000) : 0;
	close(fd);
	return n;
}

static size_t get(unsigned port, const char *path, char *out, size_t cap)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n", path);
	return http(AF_INET, port, req, (size_t)n, out, cap);
}

/* Status code, and the body once Content-Length and Connection: close check out. */
static int response(const char *resp, const char **body)
{
	int status = 0;
	size_t clen = 0;
	*body = NULL;
	if (sscanf(resp, "HTTP/1.1 %d ", &status) != 1)
		return -1;
	const char *end = strstr(resp, "\r\n\r\n"), *cl = strstr(resp, "\r\nContent-Length: ");
	if (!end || !cl || cl > end || sscanf(cl, "\r\nContent-Length: %zu", &clen) != 1)
		return -2;
	if (strlen(end + 4) != clen)
		return -3;
	const char *conn = strstr(resp, "\r\nConnection: close\r\n");
	if (!conn || conn > end)
		return -4;
	*body = end + 4;
	return status;
}

static void test_requests(unsigned port)
{
	char out[65536];
	const char *body;

	get(port, "/metrics", out, sizeof(out));
	is(response(out, &body), 200, "GET /metrics: 200");
	ok(strstr(out, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL,
	   "/metrics content type is the text format 0.0.4");
	if (body)
		prom_is(body, "(m[\"ktls_sidecar_connections_accepted_total\"], "
			      "m[\"ktls_sidecar_handshake_duration_seconds_count\"])",
			"(81.0, 31.0)", "/metrics parses as Prometheus text, with the snapshot's numbers");

	get(port, "/healthz", out, sizeof(out));
	ok(response(out, &body) == 200 && strcmp(body, "ok\n") == 0, "GET /healthz: 200 ok");
	get(port, "/readyz", out, sizeof(out));
	ok(response(out, &body) == 200 && strcmp(body, "ready\n") == 0, "GET /readyz: 200 ready");
	atomic_store(&not_ready, 1);
	get(port, "/readyz?x=1", out, sizeof(out));
	ok(response(out, &body) == 503 && strcmp(body, "not ready: draining (shutting down)\n") == 0,
	   "GET /readyz when not ready: 503 with the reason on one line");
	atomic_store(&not_ready, 0);
	get(port, "/healthz", out, sizeof(out));
	ok(response(out, &body) == 200, "/healthz stays 200 while not ready");

	atomic_store(&snap_fail, 1);
	get(port, "/metrics", out, sizeof(out));
	is(response(out, &body), 500, "snapshot failure: 500");
	atomic_store(&snap_fail, 0);

	get(port, "/nope", out, sizeof(out));
	is(response(out, &body), 404, "unknown path: 404");
	get(port, "/metrics/", out, sizeof(out));
	is(response(out, &body), 404, "/metrics/ is another path: 404");

	const char post[] = "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
	http(AF_INET, port, post, sizeof(post) - 1, out, sizeof(out));
	ok(response(out, &body) == 405 && strstr(out, "\r\nAllow: GET\r\n"), "POST: 405 with Allow: GET");
	const char garbage[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n";
	http(AF_INET, port, garbage, sizeof(garbage) - 1, out, sizeof(out));
	is(response(out, &body), 400, "a TLS ClientHello: 400");
	const char http10[] = "GET /healthz HTTP/1.0\n\n";
	http(AF_INET, port, http10, sizeof(http10) - 1, out, sizeof(out));
	is(response(out, &body), 200, "HTTP/1.0 with bare LF: 200");

	char big[ADMIN_HTTP_HEAD_MAX + 512];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	http(AF_INET, port, big, sizeof(big), out, sizeof(out));
	is(response(out, &body), 431, "a head over 4096 bytes: 431");

	/* Byte by byte: the parser waits for the whole head. */
	int fd = tcp_connect(AF_INET, port);
	const char slow[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	int sent = 1;
	for (size_t i = 0; i < sizeof(slow) - 1 && sent; i++) {
		sent = send(fd, slow + i, 1, MSG_NOSIGNAL) == 1;
		usleep(2000);
	}
	read_all(fd, out, sizeof(out), 7000);
	ok(sent && response(out, &body) == 200, "a head sent byte by byte: 200");
	close(fd);
}

/* Idle clients hold slots, not the loop: others are answered at once, the idle ones are
 * dropped after about 5 s, and a 17th concurrent client takes the oldest one's slot. */
static void test_idle_and_limit(unsigned port)
{
	char out[65536];
	const char *body;
	int idle[16];

	uint64_t t0 = mono_ms();
	idle[0] = tcp_connect(AF_INET, port);
	ok(send(idle[0], "GET /metr", 9, MSG_NOSIGNAL) == 9, "an idle client sent half a request line");
	uint64_t t1 = mono_ms();
	get(port, "/healthz", out, sizeof(out));
	uint64_t took = mono_ms() - t1;
	ok(response(out, &body) == 200 && took < 1000, "another client is served at once (%llu ms)",
	   (unsigned long long)took);

	for (int i = 1; i < 16; i++) {
		idle[i] = tcp_connect(AF_INET, port);
		usleep(10 * 1000); /* accepted in this order */
	}
	usleep(100 * 1000);
	t1 = mono_ms();
	get(port, "/healthz", out, sizeof(out));
	took = mono_ms() - t1;
	ok(response(out, &body) == 200 && strcmp(body, "ok\n") == 0 && took < 1000,
	   "a 17th concurrent client is served (%llu ms)", (unsigned long long)took);
	t1 = mono_ms();
	size_t got = read_all(idle[0], out, sizeof(out), 8000);
	took = mono_ms() - t1;
	ok(got == 0 && took < 1000, "the oldest idle client gave its slot: closed at once (%llu ms)",
	   (unsigned long long)took);
	get(port, "/healthz", out, sizeof(out));
	ok(response(out, &body) == 200, "an 18th: served too");

	got = read_all(idle[15], out, sizeof(out), 8000);
	uint64_t waited = mono_ms() - t0;
	ok(got == 0 && waited >= 4500 && waited < 7500, "the newest idle client is dropped after about 5 s (%llu ms)",
	   (unsigned long long)waited);
	for (int i = 0; i < 16; i++)
		close(idle[i]);
	usleep(200 * 1000);
	get(port, "/healthz", out, sizeof(out));
	is(response(out, &body), 200, "slots are free again");
}

static int send_get(unsigned port, const char *path)
{
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", path);
	int fd = tcp_connect(AF_INET, port);
	if (fd >= 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* /readyz probes the pooler without blocking the loop: /healthz is answered while a
 * probe hangs, concurrent /readyz share one probe, and a hung one answers 503 after 1 s. */
static void test_ready_probe(unsigned port)
{
	char out[4096];
	const char *body;

	atomic_store(&probe_mode, 1);
	get(port, "/readyz", out, sizeof(out));
	ok(response(out, &body) == 200 && strcmp(body, "ready\n") == 0, "a probe that connects: 200 ready");

	atomic_store(&probe_mode, 2);
	atomic_store(&probe_calls, 0);
	uint64_t t0 = mono_ms();
	int a = send_get(port, "/readyz");
	usleep(50 * 1000);
	int b = send_get(port, "/readyz");
	usleep(50 * 1000);
	uint64_t t1 = mono_ms();
	get(port, "/healthz", out, sizeof(out));
	uint64_t took = mono_ms() - t1;
	ok(response(out, &body) == 200 && took < 500, "/healthz answered while the probe hangs (%llu ms)",
	   (unsigned long long)took);
	ok(a >= 0 && read_all(a, out, sizeof(out), 5000) && response(out, &body) == 503 && body &&
		   strcmp(body, "not ready: probe: Connection timed out\n") == 0,
	   "the hung probe: 503 with the reason");
	took = mono_ms() - t0;
	ok(took >= 900 && took < 2500, "after about 1 s (%llu ms)", (unsigned long long)took);
	ok(b >= 0 && read_all(b, out, sizeof(out), 5000) && response(out, &body) == 503,
	   "the second /readyz: the same answer");
	is(atomic_load(&probe_calls), 1, "both waited on one probe");
	close(a);
	close(b);
	close(stuck_pipe[1]);
	atomic_store(&probe_mode, 0);
}

/* A client that never reads a large answer costs nothing but its slot. */
static void test_slow_reader(unsigned port)
{
	char out[65536], req[] = "GET /metrics HTTP/1.1\r\n\r\n";
	const char *body;
	int fds[8], small = 1, good = 1;

	for (int i = 0; i < 8; i++) {
		fds[i] = tcp_connect(AF_INET, port);
		/* the smallest receive buffer, so the answer does not fit in the socket */
		setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		if (send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
			good = 0;
	}
	uint64_t t1 = mono_ms();
	get(port, "/healthz", out, sizeof(out));
	uint64_t took = mono_ms() - t1;
	ok(good && response(out, &body) == 200 && took < 1000,
	   "clients that do not read /metrics do not delay /healthz (%llu ms)", (unsigned long long)took);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	usleep(200 * 1000); /* the server notices and frees the slots */
}

static void test_live(void)
{
	struct admin *a = NULL, *b = NULL;
	char addr[64];

	is(admin_start(NULL, "127.0.0.1:0", &ops, NULL, &a), 0, "admin_start with a metrics listener only");
	unsigned port = admin_metrics_port(a);
	ok(a && port > 0, "the bound port is known (%u)", port);
	if (!a || !port)
		return;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	is(admin_start(NULL, addr, &ops, NULL, &b), -EADDRINUSE, "a port in use: -EADDRINUSE");
	is(admin_start(NULL, "localhost:9187", &ops, NULL, &b), -EINVAL, "a name, not a number: -EINVAL");
	is(admin_start(NULL, "127.0.0.1:65536", &ops, NULL, &b), -EINVAL, "port out of range: -EINVAL");
	is(admin_start(NULL, "::1:9187", &ops, NULL, &b), -EINVAL, "IPv6 without brackets: -EINVAL");
	is(admin_start(NULL, "127.0.0.1", &ops, NULL, &b), -EINVAL, "no port: -EINVAL");
	ok(b == NULL, "nothing returned on failure");

	static const struct admin_ops none = { 0 };
	char out[4096];
	const char *body;
	is(admin_start(NULL, "127.0.0.1:0", &none, NULL, &b), 0, "a listener without callbacks");
	get(admin_metrics_port(b), "/metrics", out, sizeof(out));
	is(response(out, &body), 501, "no snapshot callback: /metrics 501");
	get(admin_metrics_port(b), "/readyz", out, sizeof(out));
	is(response(out, &body), 200, "no ready callback: /readyz 200 (the process is up)");
	admin_stop(b);

	test_requests(port);
	test_slow_reader(port);
	test_ready_probe(port);
	test_idle_and_limit(port);
	admin_stop(a);
	ok(tcp_connect(AF_INET, port) < 0, "admin_stop closes the listener");

	int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
	int v6 = fd6 >= 0 && bind(fd6, (struct sockaddr *)&in6, sizeof(in6)) == 0;
	if (fd6 >= 0)
		close(fd6);
	if (!v6) {
		skip("no IPv6 loopback");
		return;
	}
	char dir[] = "/tmp/test_admin_http_XXXXXX", path[64];
	if (!mkdtemp(dir))
		return;
	snprintf(path, sizeof(path), "%s/admin.sock", dir);
	is(admin_start(path, "[::1]:0", &ops, NULL, &a), 0, "admin_start with a socket and an IPv6 listener");
	const char req[] = "GET /healthz HTTP/1.1\r\n\r\n";
	http(AF_INET6, admin_metrics_port(a), req, sizeof(req) - 1, out, sizeof(out));
	is(response(out, &body), 200, "GET /healthz over IPv6: 200");
	admin_stop(a);
	rmdir(dir);
}

int main(void)
{
	have_python = system("python3 -c pass >/dev/null 2>&1") == 0;
	if (!have_python)
		diag("python3 not found: metrics are not validated");
	test_parse();
	test_metrics_render();
	test_live();
	return done_testing();
}
