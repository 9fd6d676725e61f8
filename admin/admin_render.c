// SPDX-License-Identifier: MIT
// The admin protocol without I/O: parsing one command line and rendering the
// answer from a snapshot as PgBouncer-style aligned tables or one JSON object.
// Everything here is pure (memory and a FILE * only) so it can be fuzzed.
#include "admin_int.h"
#include "config.h"

const double admin_hist_bounds_ms[ADMIN_HIST_BUCKETS - 1] = { 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500 };

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parsing --------------------------------------------------------------------- */

#define MAX_TOKENS 3 /* "show stats json", "drain 30 json" */

struct token {
	const char *s;
	size_t len;
};

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* ASCII-only case folding: the locale must not change what a command means. */
static int token_is(const struct token *t, const char *word)
{
	size_t n = strlen(word);
	if (t->len != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = t->s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != word[i])
			return 0;
	}
	return 1;
}

/* Split line into at most MAX_TOKENS words; -EINVAL if there are more. */
static int tokenize(const char *line, struct token *tok, int *ntok)
{
	int n = 0;
	const char *p = line;
	for (;;) {
		while (is_space(*p))
			p++;
		if (!*p)
			break;
		if (n == MAX_TOKENS)
			return -EINVAL;
		tok[n].s = p;
		while (*p && !is_space(*p))
			p++;
		tok[n].len = (size_t)(p - tok[n].s);
		n++;
	}
	*ntok = n;
	return 0;
}

/* The drain timeout, at most ADMIN_DRAIN_MAX_S, written as the daemon's durations
 * are (--drain-timeout: 30, 500ms, 1.5s, 1m30s, 2h), as milliseconds. 0 or -EINVAL. */
static int parse_timeout(const struct token *t, int *ms)
{
	char buf[32];
	if (t->len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, t->s, t->len);
	buf[t->len] = 0;
	int v;
	if (config_parse_duration(buf, &v) || v > ADMIN_DRAIN_MAX_S * 1000)
		return -EINVAL;
	*ms = v;
	return 0;
}

int admin_wants_json(const char *line)
{
	size_t end = strlen(line), start;
	while (end && is_space(line[end - 1]))
		end--;
	for (start = end; start && !is_space(line[start - 1]); start--)
		;
	struct token last = { line + start, end - start };
	return token_is(&last, "json");
}

int admin_parse(const char *line, struct admin_cmd *out)
{
	struct token tok[MAX_TOKENS];
	struct admin_cmd cmd = { .timeout_ms = -1 };
	int n, i;

	if (!line || strnlen(line, ADMIN_LINE_MAX + 1) > ADMIN_LINE_MAX)
		return -EINVAL;
	if (tokenize(line, tok, &n) || n == 0)
		return -EINVAL;
	if (token_is(&tok[0], "help")) {
		cmd.kind = ADM_HELP;
		i = 1;
	} else if (token_is(&tok[0], "show") && n >= 2) {
		if (token_is(&tok[1], "info"))
			cmd.kind = ADM_SHOW_INFO;
		else if (token_is(&tok[1], "stats"))
			cmd.kind = ADM_SHOW_STATS;
		else if (token_is(&tok[1], "workers"))
			cmd.kind = ADM_SHOW_WORKERS;
		else if (token_is(&tok[1], "conns"))
			cmd.kind = ADM_SHOW_CONNS;
		else
			return -EINVAL;
		i = 2;
	} else if (token_is(&tok[0], "reload")) {
		cmd.kind = ADM_RELOAD;
		i = 1;
	} else if (token_is(&tok[0], "drain")) {
		cmd.kind = ADM_DRAIN;
		i = 1;
		/* "drain json" is the default timeout; anything else must be the seconds */
		if (i < n && !token_is(&tok[i], "json") && parse_timeout(&tok[i++], &cmd.timeout_ms))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (i < n && token_is(&tok[i], "json")) {
		cmd.json = 1;
		i++;
	}
	if (i != n)
		return -EINVAL;
	*out = cmd;
	return 0;
}

/* ---- text tables ------------------------------------------------------------------ */

#define TBL_MAX_COLS 24

struct tbl {
	int ncols;
	const char *const *hdr;
	unsigned right;  /* bit c set: right-align column c (numbers) */
	char **cell;     /* row-major, ncols per row */
	size_t n, cap;
	int err;
};

/* Append one cell; control characters become '?' so a row stays one line. */
__attribute__((format(printf, 2, 3)))
static void tbl_add(struct tbl *t, const char *fmt, ...)
{
	char *s;
	va_list ap;
	if (t->err)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		char **c = realloc(t->cell, cap * sizeof(*c));
		if (!c)
			goto err_nomem;
		t->cell = c;
		t->cap = cap;
	}
	va_start(ap, fmt);
	int rc = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (rc < 0)
		goto err_nomem;
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	t->cell[t->n++] = s;
	return;
err_nomem:
	t->err = -ENOMEM;
}

static void tbl_row(FILE *f, const struct tbl *t, const size_t *w, const char *const *row)
{
	for (int c = 0; c < t->ncols; c++) {
		int width = (int)w[c];
		fputs(c ? " | " : " ", f);
		if (t->right & (1u << c))
			fprintf(f, "%*s", width, row[c]);
		else if (c == t->ncols - 1)
			fputs(row[c], f); /* no trailing blanks */
		else
			fprintf(f, "%-*s", width, row[c]);
	}
	fputc('\n', f);
}

/* Print the header, a separator and the rows, then free the cells. */
static int tbl_print(struct tbl *t, FILE *f)
{
	size_t w[TBL_MAX_COLS];
	int rc = t->err;
	if (rc || t->n % (size_t)t->ncols)
		goto out;
	for (int c = 0; c < t->ncols; c++)
		w[c] = strlen(t->hdr[c]);
	for (size_t i = 0; i < t->n; i++) {
		size_t len = strlen(t->cell[i]);
		if (len > w[i % (size_t)t->ncols])
			w[i % (size_t)t->ncols] = len;
	}
	tbl_row(f, t, w, t->hdr);
	for (int c = 0; c < t->ncols; c++) {
		if (c)
			fputc('+', f);
		for (size_t k = 0; k < w[c] + 2; k++)
			fputc('-', f);
	}
	fputc('\n', f);
	for (size_t i = 0; i < t->n; i += (size_t)t->ncols)
		tbl_row(f, t, w, (const char *const *)&t->cell[i]);
out:
	for (size_t i = 0; i < t->n; i++)
		free(t->cell[i]);
	free(t->cell);
	return rc;
}

/* ---- JSON ------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (2-4), or 0: JSON must be valid UTF-8. */
static int utf8_seq(const unsigned char *s)
{
	uint32_t cp, min;
	int n;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Write s as a JSON string; NULL is "", invalid UTF-8 becomes U+FFFD. */
void admin_json_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	fputc('"', f);
	while (*s) {
		if (*s == '"' || *s == '\\') {
			fprintf(f, "\\%c", *s++);
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s++);
		} else if (*s < 0x80) {
			fputc(*s++, f);
		} else {
			int n = utf8_seq(s);
			if (n) {
				fwrite(s, 1, (size_t)n, f);
				s += n;
			} else {
				fputs("\\ufffd", f);
				s++;
			}
		}
	}
	fputc('"', f);
}

/* ,"key":"value" (the comma unless first) */
static void json_kv_str(FILE *f, int first, const char *key, const char *val)
{
	fprintf(f, "%s\"%s\":", first ? "" : ",", key);
	admin_json_str(f, val);
}

/* ---- commands --------------------------------------------------------------------- */

static const struct {
	const char *cmd, *what;
} help_rows[] = {
	{ "help", "this list" },
	{ "show info",
	  "version, pid, uptime, io engine, kTLS status, kernel, OpenSSL, certificate, addresses, "
	  "last reload, draining" },
	{ "show stats",
	  "connection, handshake, kTLS and byte counters summed over workers; handshake latency "
	  "percentiles" },
	{ "show workers", "per-worker connections, bytes and event loop counters" },
	{ "show conns",
	  "open connections: client, pooler-side port (PgBouncer SHOW CLIENTS port), TLS, identity, "
	  "kTLS as the sidecar and the kernel see it" },
	{ "reload", "read the config file again, reload certificates and TLS settings; the old ones stay on failure" },
	{ "drain [TIMEOUT]",
	  "stop accepting, close connections as they finish and the rest after TIMEOUT (30, 500ms, 2m), then exit" },
};
#define N_HELP (sizeof(help_rows) / sizeof(help_rows[0]))

static int render_help(int json, FILE *f)
{
	static const char *const hdr[] = { "command", "description" };
	struct tbl t = { .ncols = 2, .hdr = hdr };
	if (json) {
		fputs("{\"commands\":[", f);
		for (size_t i = 0; i < N_HELP; i++) {
			fputs(i ? ",{" : "{", f);
			json_kv_str(f, 1, "command", help_rows[i].cmd);
			json_kv_str(f, 0, "description", help_rows[i].what);
			fputc('}', f);
		}
		fputs("],\"json\":\"append 'json' to any command for JSON output\"}\n", f);
		return 0;
	}
	for (size_t i = 0; i < N_HELP; i++) {
		tbl_add(&t, "%s [json]", help_rows[i].cmd);
		tbl_add(&t, "%s", help_rows[i].what);
	}
	return tbl_print(&t, f);
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* While draining, the seconds until the sessions still open are closed (0 once
 * due); -1 when not draining or the figure is not a number. */
static double drain_left(const struct admin_snapshot *s)
{
	if (!s->draining || !isfinite(s->drain_left_s))
		return -1;
	return s->drain_left_s > 0 ? s->drain_left_s : 0.0;
}

static int render_info_json(const struct admin_snapshot *s, FILE *f)
{
	double up = isfinite(s->uptime_s) && s->uptime_s > 0 ? s->uptime_s : 0;
	fputc('{', f);
	json_kv_str(f, 1, "version", s->version);
	fprintf(f, ",\"pid\":%ld,\"uptime_s\":%.3f,\"workers\":%d", s->pid, up, s->nworkers);
	json_kv_str(f, 0, "io", s->io);
	json_kv_str(f, 0, "io_why", s->io_why);
	json_kv_str(f, 0, "io_features", s->io_features);
	json_kv_str(f, 0, "ktls", s->ktls);
	json_kv_str(f, 0, "ktls_why", s->ktls_why);
	json_kv_str(f, 0, "kernel", s->kernel);
	json_kv_str(f, 0, "openssl", s->openssl);
	json_kv_str(f, 0, "cert", s->cert);
	json_kv_str(f, 0, "cert_sans", s->cert_sans);
	json_kv_str(f, 0, "cert_serial", s->cert_serial);
	json_kv_str(f, 0, "cert_not_after", s->cert_not_after);
	fprintf(f, ",\"client_crls\":%d,\"client_crls_stale\":%d", s->client_crls, s->client_crls_stale);
	json_kv_str(f, 0, "client_crl_next_update", s->client_crl_next_update);
	json_kv_str(f, 0, "client_user_match", s->client_user_match);
	fprintf(f, ",\"client_user_map_rules\":%d", s->client_user_map_rules);
	json_kv_str(f, 0, "listen", s->listen);
	json_kv_str(f, 0, "backend", s->backend);
	json_kv_str(f, 0, "reload_at", s->reload_at);
	json_kv_str(f, 0, "reload_result", s->reload_result);
	fprintf(f, ",\"reloads_ok\":%" PRIu64 ",\"reloads_partial\":%" PRIu64 ",\"reloads_failed\":%" PRIu64,
		s->reloads_ok, s->reloads_partial, s->reloads_failed);
	fprintf(f, ",\"draining\":%s", s->draining ? "true" : "false");
	double left = drain_left(s);
	if (left >= 0)
		fprintf(f, ",\"drain_left_s\":%.1f}\n", left);
	else
		fputs(",\"drain_left_s\":null}\n", f);
	return 0;
}

static int render_info(const struct admin_snapshot *s, FILE *f)
{
	static const char *const hdr[] = { "key", "value" };
	struct tbl t = { .ncols = 2, .hdr = hdr };
	/* Clamp before converting: a bogus double must not reach an integer cast. */
	double up = isfinite(s->uptime_s) && s->uptime_s > 0 ? s->uptime_s : 0;
	if (up > 1e12)
		up = 1e12;
	uint64_t sec = (uint64_t)up;

	tbl_add(&t, "version"), tbl_add(&t, "%s", nz(s->version));
	tbl_add(&t, "pid"), tbl_add(&t, "%ld", s->pid);
	tbl_add(&t, "uptime");
	tbl_add(&t, "%" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 " (%.0f s)", sec / 86400,
		sec / 3600 % 24, sec / 60 % 60, sec % 60, up);
	tbl_add(&t, "workers"), tbl_add(&t, "%d", s->nworkers);
	tbl_add(&t, "io");
	tbl_add(&t, "%s%s%s%s", nz(s->io), s->io_why && *s->io_why ? " (" : "", nz(s->io_why),
		s->io_why && *s->io_why ? ")" : "");
	tbl_add(&t, "io_features"), tbl_add(&t, "%s", nz(s->io_features));
	tbl_add(&t, "ktls");
	tbl_add(&t, "%s%s%s%s", nz(s->ktls), s->ktls_why && *s->ktls_why ? " (" : "", nz(s->ktls_why),
		s->ktls_why && *s->ktls_why ? ")" : "");
	tbl_add(&t, "kernel"), tbl_add(&t, "%s", nz(s->kernel));
	tbl_add(&t, "openssl"), tbl_add(&t, "%s", nz(s->openssl));
	tbl_add(&t, "cert"), tbl_add(&t, "%s", nz(s->cert));
	tbl_add(&t, "cert_sans"), tbl_add(&t, "%s", nz(s->cert_sans));
	tbl_add(&t, "cert_serial"), tbl_add(&t, "%s", nz(s->cert_serial));
	tbl_add(&t, "cert_not_after"), tbl_add(&t, "%s", nz(s->cert_not_after));
	tbl_add(&t, "client_crls");
	if (s->client_crls)
		tbl_add(&t, "%d (next update %s)%s", s->client_crls,
			s->client_crl_next_update && *s->client_crl_next_update ? s->client_crl_next_update : "none",
			s->client_crls_stale ? "; PAST ITS NEXT UPDATE: clients of its CA are refused" : "");
	else
		tbl_add(&t, "none");
	tbl_add(&t, "client_user_match");
	if (s->client_user_match && strcmp(s->client_user_match, "map") == 0)
		tbl_add(&t, "map (%d rules)", s->client_user_map_rules);
	else
		tbl_add(&t, "%s", s->client_user_match && *s->client_user_match ? s->client_user_match : "none");
	tbl_add(&t, "listen"), tbl_add(&t, "%s", nz(s->listen));
	tbl_add(&t, "backend"), tbl_add(&t, "%s", nz(s->backend));
	tbl_add(&t, "reload");
	if (s->reload_at && *s->reload_at)
		tbl_add(&t, "%s (%s); %" PRIu64 " ok, %" PRIu64 " partial, %" PRIu64 " refused", s->reload_at,
			nz(s->reload_result), s->reloads_ok, s->reloads_partial, s->reloads_failed);
	else
		tbl_add(&t, "never");
	tbl_add(&t, "draining");
	double left = drain_left(s);
	if (left >= 0)
		tbl_add(&t, "yes, the rest closed in %.1f s", left);
	else
		tbl_add(&t, "%s", s->draining ? "yes" : "no");
	return tbl_print(&t, f);
}

void admin_counters_sum(const struct admin_snapshot *s, struct admin_counters *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < s->nworkers; i++) {
		const struct admin_counters *c = &s->workers[i].c;
		t->accepted += c->accepted, t->refused_max += c->refused_max, t->active += c->active;
		t->handshakes_ok += c->handshakes_ok, t->handshakes_failed += c->handshakes_failed;
		t->tls12 += c->tls12, t->tls13 += c->tls13;
		t->ktls_tx += c->ktls_tx, t->ktls_rx += c->ktls_rx, t->user_tls += c->user_tls;
		t->plaintext += c->plaintext, t->cancels += c->cancels;
		t->backend_connect_failed += c->backend_connect_failed;
		t->bytes_c2b += c->bytes_c2b, t->bytes_b2c += c->bytes_b2c;
		t->active_ktls_tx += c->active_ktls_tx, t->active_ktls_rx += c->active_ktls_rx;
		t->active_user_tls += c->active_user_tls;
		t->rekey_rx += c->rekey_rx, t->rekey_tx += c->rekey_tx;
		for (int r = 0; r < ADMIN_MAX_REASONS; r++)
			t->closed[r] += c->closed[r];
		for (int k = 0; k < ADMIN_MAX_STEPS; k++)
			t->ktls_fallback[k] += c->ktls_fallback[k];
		for (int b = 0; b < ADMIN_HIST_BUCKETS; b++)
			t->hs_hist[b] += c->hs_hist[b];
		t->hs_sum_us += c->hs_sum_us;
	}
}

double admin_hist_quantile(const uint64_t hist[ADMIN_HIST_BUCKETS], double q)
{
	uint64_t total = 0, below = 0;
	for (int b = 0; b < ADMIN_HIST_BUCKETS; b++)
		total += hist[b];
	if (!total || !(q > 0) || q > 1)
		return NAN;
	/* The same rule as Prometheus' histogram_quantile(): the first bucket whose
	 * cumulative count reaches the rank, linear within it. */
	double rank = q * (double)total;
	for (int b = 0; b < ADMIN_HIST_BUCKETS; b++) {
		if (!hist[b] || (double)(below + hist[b]) < rank) {
			below += hist[b];
			continue;
		}
		if (b == ADMIN_HIST_BUCKETS - 1)
			return admin_hist_bounds_ms[b - 1];
		double lo = b ? admin_hist_bounds_ms[b - 1] : 0, hi = admin_hist_bounds_ms[b];
		return lo + (hi - lo) * (rank - (double)below) / (double)hist[b];
	}
	return admin_hist_bounds_ms[ADMIN_HIST_BUCKETS - 2]; /* rounding: rank just above total */
}

const char *admin_name(const char *const *names, int i, const char *prefix, char *buf, size_t len)
{
	if (names && names[i])
		return names[i];
	snprintf(buf, len, "%s_%d", prefix, i);
	return buf;
}

static const struct {
	const char *name;
	double q;
} quantiles[] = { { "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 } };
#define N_QUANTILES (sizeof(quantiles) / sizeof(quantiles[0]))

/* ,"handshake_ms":{"p50":..,"p90":..,"p99":..,"count":..,"sum":..,"bounds":[..],"buckets":[..]}
 * buckets: one count each (not cumulative), the last one +Inf. Percentiles are null when
 * there was no handshake. */
static void render_hist_json(const struct admin_counters *t, FILE *f)
{
	uint64_t count = 0;

	fputs(",\"handshake_ms\":{", f);
	for (size_t i = 0; i < N_QUANTILES; i++) {
		double v = admin_hist_quantile(t->hs_hist, quantiles[i].q);
		fprintf(f, i ? ",\"%s\":" : "\"%s\":", quantiles[i].name);
		if (isnan(v))
			fputs("null", f);
		else
			fprintf(f, "%.3f", v);
	}
	for (int b = 0; b < ADMIN_HIST_BUCKETS; b++)
		count += t->hs_hist[b];
	fprintf(f, ",\"count\":%" PRIu64 ",\"sum\":%.3f,\"bounds\":[", count, (double)t->hs_sum_us / 1000.0);
	for (int b = 0; b < ADMIN_HIST_BUCKETS - 1; b++)
		fprintf(f, b ? ",%g" : "%g", admin_hist_bounds_ms[b]);
	fputs("],\"buckets\":[", f);
	for (int b = 0; b < ADMIN_HIST_BUCKETS; b++)
		fprintf(f, b ? ",%" PRIu64 : "%" PRIu64, t->hs_hist[b]);
	fputs("]}", f);
}

static int render_stats(const struct admin_snapshot *s, int json, FILE *f)
{
	static const char *const hdr[] = { "stat", "value" };
	struct tbl tb = { .ncols = 2, .hdr = hdr, .right = 2 };
	struct admin_counters t;
	int nr = admin_count(s->nreasons, ADMIN_MAX_REASONS);
	char buf[32];

	admin_counters_sum(s, &t);
	const struct {
		const char *key;
		uint64_t v;
	} rows[] = {
		{ "accepted", t.accepted }, { "active", t.active }, { "refused_max", t.refused_max },
		{ "handshakes_ok", t.handshakes_ok }, { "handshakes_failed", t.handshakes_failed },
		{ "tls12", t.tls12 }, { "tls13", t.tls13 }, { "ktls_tx", t.ktls_tx },
		{ "ktls_rx", t.ktls_rx }, { "user_tls", t.user_tls }, { "plaintext", t.plaintext },
		{ "cancels", t.cancels }, { "backend_connect_failed", t.backend_connect_failed },
		{ "bytes_c2b", t.bytes_c2b }, { "bytes_b2c", t.bytes_b2c },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (json)
			fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "{", rows[i].key, rows[i].v);
		else
			tbl_add(&tb, "%s", rows[i].key), tbl_add(&tb, "%" PRIu64, rows[i].v);
	}
	if (json)
		fputs(",\"closed\":{", f);
	for (int r = 0; r < nr; r++) {
		const char *name = admin_name(s->reason_names, r, "reason", buf, sizeof(buf));
		if (!json) {
			tbl_add(&tb, "closed_%s", name), tbl_add(&tb, "%" PRIu64, t.closed[r]);
			continue;
		}
		if (r)
			fputc(',', f);
		admin_json_str(f, name);
		fprintf(f, ":%" PRIu64, t.closed[r]);
	}
	const struct {
		const char *key;
		uint64_t v;
	} gauges[] = {
		{ "active_ktls_tx", t.active_ktls_tx },
		{ "active_ktls_rx", t.active_ktls_rx },
		{ "active_user_tls", t.active_user_tls },
		{ "ktls_rekey_rx", t.rekey_rx },
		{ "ktls_rekey_tx", t.rekey_tx },
	};
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		if (json)
			fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "},", gauges[i].key, gauges[i].v);
		else
			tbl_add(&tb, "%s", gauges[i].key), tbl_add(&tb, "%" PRIu64, gauges[i].v);
	}
	int ns = admin_count(s->nsteps, ADMIN_MAX_STEPS);
	if (json) {
		render_hist_json(&t, f);
		fputs(",\"ktls_fallback\":{", f);
		for (int k = 0; k < ns; k++) {
			if (k)
				fputc(',', f);
			admin_json_str(f, admin_name(s->ktls_step_names, k, "step", buf, sizeof(buf)));
			fprintf(f, ":%" PRIu64, t.ktls_fallback[k]);
		}
		fputs("}}\n", f);
		return 0;
	}
	for (int k = 0; k < ns; k++)
		tbl_add(&tb, "ktls_fallback_%s", admin_name(s->ktls_step_names, k, "step", buf, sizeof(buf))),
			tbl_add(&tb, "%" PRIu64, t.ktls_fallback[k]);
	for (size_t i = 0; i < N_QUANTILES; i++) {
		double v = admin_hist_quantile(t.hs_hist, quantiles[i].q);
		tbl_add(&tb, "handshake_%s_ms", quantiles[i].name);
		if (isnan(v))
			tbl_add(&tb, "-");
		else
			tbl_add(&tb, "%.2f", v);
	}
	return tbl_print(&tb, f);
}

static void worker_json(const struct admin_worker *w, FILE *f)
{
	fprintf(f, "{\"id\":%d", w->id);
	if (w->cpu >= 0)
		fprintf(f, ",\"cpu\":%d", w->cpu);
	else
		fputs(",\"cpu\":null", f);
	json_kv_str(f, 0, "engine", w->engine);
	fprintf(f, ",\"active\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"bytes_c2b\":%" PRIu64
		   ",\"bytes_b2c\":%" PRIu64 ",\"loops\":%" PRIu64 ",\"enters\":%" PRIu64
		   ",\"completions\":%" PRIu64 "}",
		w->c.active, w->c.accepted, w->c.bytes_c2b, w->c.bytes_b2c, w->loops, w->enters,
		w->completions);
}

static int render_workers(const struct admin_snapshot *s, int json, FILE *f)
{
	static const char *const hdr[] = { "id",        "cpu",       "engine", "active", "accepted",
					   "bytes_c2b", "bytes_b2c", "loops",  "enters", "completions" };
	struct tbl t = { .ncols = 10, .hdr = hdr, .right = 0x3fb }; /* all but engine */

	if (json)
		fputs("{\"workers\":[", f);
	for (int i = 0; i < s->nworkers; i++) {
		const struct admin_worker *w = &s->workers[i];
		if (json) {
			if (i)
				fputc(',', f);
			worker_json(w, f);
			continue;
		}
		tbl_add(&t, "%d", w->id);
		if (w->cpu >= 0)
			tbl_add(&t, "%d", w->cpu);
		else
			tbl_add(&t, "-");
		tbl_add(&t, "%s", nz(w->engine));
		tbl_add(&t, "%" PRIu64, w->c.active), tbl_add(&t, "%" PRIu64, w->c.accepted);
		tbl_add(&t, "%" PRIu64, w->c.bytes_c2b), tbl_add(&t, "%" PRIu64, w->c.bytes_b2c);
		tbl_add(&t, "%" PRIu64, w->loops), tbl_add(&t, "%" PRIu64, w->enters);
		tbl_add(&t, "%" PRIu64, w->completions);
	}
	if (json) {
		fputs("]}\n", f);
		return 0;
	}
	return tbl_print(&t, f);
}

/* ---- show conns -------------------------------------------------------------------- */

static const char *dash(const char *s)
{
	return *s ? s : "-";
}

/* The daemon fills fixed arrays; a missing terminator must not run off the end. */
#define TERMINATE(a) ((a)[sizeof(a) - 1] = 0)
static void conn_terminate(struct admin_conn *c)
{
	TERMINATE(c->client), TERMINATE(c->local), TERMINATE(c->state), TERMINATE(c->txn), TERMINATE(c->tls);
	TERMINATE(c->cipher), TERMINATE(c->sni), TERMINATE(c->peer), TERMINATE(c->user);
	TERMINATE(c->database), TERMINATE(c->ktls), TERMINATE(c->k_ulp), TERMINATE(c->k_version);
	TERMINATE(c->k_cipher), TERMINATE(c->k_txconf), TERMINATE(c->k_rxconf);
}

static double age_of(const struct admin_conn *c)
{
	return isfinite(c->age_s) && c->age_s > 0 ? (c->age_s > 1e12 ? 1e12 : c->age_s) : 0;
}

static void conn_json(const struct admin_conn *c, FILE *f)
{
	fprintf(f, "{\"id\":%" PRIu64 ",\"worker\":%d", c->id, c->worker);
	json_kv_str(f, 0, "client", c->client);
	json_kv_str(f, 0, "local", c->local);
	fprintf(f, ",\"backend_port\":%u", c->backend_port);
	json_kv_str(f, 0, "state", c->state);
	json_kv_str(f, 0, "txn", c->txn);
	json_kv_str(f, 0, "tls", c->tls);
	json_kv_str(f, 0, "cipher", c->cipher);
	json_kv_str(f, 0, "sni", c->sni);
	json_kv_str(f, 0, "peer", c->peer);
	json_kv_str(f, 0, "user", c->user);
	json_kv_str(f, 0, "database", c->database);
	fprintf(f, ",\"age_s\":%.3f,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64, age_of(c),
		c->bytes_in, c->bytes_out);
	json_kv_str(f, 0, "ktls", c->ktls);
	fputs(",\"kernel\":{", f);
	json_kv_str(f, 1, "ulp", c->k_ulp);
	json_kv_str(f, 0, "version", c->k_version);
	json_kv_str(f, 0, "cipher", c->k_cipher);
	json_kv_str(f, 0, "txconf", c->k_txconf);
	json_kv_str(f, 0, "rxconf", c->k_rxconf);
	fprintf(f, ",\"rtt_us\":%" PRIu32 ",\"retrans\":%" PRIu32 "}}", c->k_rtt_us, c->k_retrans);
}

static void conn_row(struct tbl *t, const struct admin_conn *c)
{
	tbl_add(t, "%" PRIu64, c->id), tbl_add(t, "%d", c->worker), tbl_add(t, "%s", dash(c->client));
	if (c->backend_port)
		tbl_add(t, "%u", c->backend_port);
	else
		tbl_add(t, "-");
	tbl_add(t, "%s", dash(c->state)), tbl_add(t, "%s", dash(c->txn)), tbl_add(t, "%s", dash(c->tls));
	tbl_add(t, "%s", dash(c->cipher)), tbl_add(t, "%s", dash(c->sni));
	tbl_add(t, "%s", dash(c->peer)), tbl_add(t, "%s", dash(c->user));
	tbl_add(t, "%s", dash(c->database)), tbl_add(t, "%.1f", age_of(c));
	tbl_add(t, "%" PRIu64, c->bytes_in), tbl_add(t, "%" PRIu64, c->bytes_out);
	tbl_add(t, "%s", dash(c->ktls)), tbl_add(t, "%s", dash(c->k_ulp));
	tbl_add(t, "%s", dash(c->k_version)), tbl_add(t, "%s", dash(c->k_cipher));
	tbl_add(t, "%s", dash(c->k_txconf)), tbl_add(t, "%s", dash(c->k_rxconf));
	tbl_add(t, "%" PRIu32, c->k_rtt_us), tbl_add(t, "%" PRIu32, c->k_retrans);
}

int admin_render_conns(const struct admin_conn *conns, size_t n, int json, FILE *f)
{
	static const char *const hdr[] = { "id",       "worker",    "client",   "backend_port", "state",
					   "txn",      "tls",       "cipher",   "sni",          "peer",
					   "user",     "database",  "age_s",    "bytes_in",     "bytes_out",
					   "ktls",     "k_ulp",     "k_version", "k_cipher",    "k_txconf",
					   "k_rxconf", "rtt_us",    "retrans" };
	/* numbers right-aligned: id, worker, backend_port, age_s, bytes_in/out, rtt_us, retrans */
	struct tbl t = { .ncols = 23, .hdr = hdr, .right = 0x60700bu };
	int rc;

	if (!f || (n && !conns))
		return -EINVAL;
	if (json)
		fputs("{\"conns\":[", f);
	for (size_t i = 0; i < n; i++) {
		struct admin_conn c = conns[i];
		conn_terminate(&c);
		if (json) {
			if (i)
				fputc(',', f);
			conn_json(&c, f);
		} else {
			conn_row(&t, &c);
		}
	}
	if (json)
		fputs("]}\n", f);
	rc = json ? 0 : tbl_print(&t, f);
	if (!rc && ferror(f))
		rc = -EIO;
	return rc;
}

/* ---- dispatch ----------------------------------------------------------------------- */

int admin_render(const struct admin_cmd *cmd, const struct admin_snapshot *snap, FILE *f)
{
	int rc = -EINVAL;
	if (!cmd || !f)
		return -EINVAL;
	if (cmd->kind != ADM_HELP && (!snap || snap->nworkers < 0 || (snap->nworkers && !snap->workers)))
		return -EINVAL;
	switch (cmd->kind) {
	case ADM_HELP:
		rc = render_help(cmd->json, f);
		break;
	case ADM_SHOW_INFO:
		rc = cmd->json ? render_info_json(snap, f) : render_info(snap, f);
		break;
	case ADM_SHOW_STATS:
		rc = render_stats(snap, cmd->json, f);
		break;
	case ADM_SHOW_WORKERS:
		rc = render_workers(snap, cmd->json, f);
		break;
	case ADM_SHOW_CONNS: /* need the daemon: admin_render_conns, admin.c */
	case ADM_RELOAD:
	case ADM_DRAIN:
		rc = -EINVAL;
		break;
	}
	if (!rc && ferror(f))
		rc = -EIO;
	return rc;
}
