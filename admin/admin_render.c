// SPDX-License-Identifier: MIT
// The admin protocol without I/O: parsing one command line and rendering the
// answer from a snapshot as PgBouncer-style aligned tables or one JSON object.
// Everything here is pure (memory and a FILE * only) so it can be fuzzed.
#include "admin.h"

const double admin_hist_bounds_ms[ADMIN_HIST_BUCKETS - 1] = { 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500 };

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing --------------------------------------------------------------------- */

#define MAX_TOKENS 3 /* "show stats json" */

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

int admin_parse(const char *line, struct admin_cmd *out)
{
	struct token tok[MAX_TOKENS];
	struct admin_cmd cmd = { 0 };
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
		else
			return -EINVAL;
		i = 2;
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

#define TBL_MAX_COLS 10

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
static void json_str(FILE *f, const char *str)
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
	json_str(f, val);
}

/* ---- commands --------------------------------------------------------------------- */

static const struct {
	const char *cmd, *what;
} help_rows[] = {
	{ "help", "this list" },
	{ "show info",
	  "version, pid, uptime, io engine, kTLS status, kernel, OpenSSL, certificate, addresses" },
	{ "show stats", "connection, handshake, kTLS and byte counters summed over workers" },
	{ "show workers", "per-worker connections, bytes and event loop counters" },
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

static int render_info_json(const struct admin_snapshot *s, FILE *f)
{
	double up = isfinite(s->uptime_s) && s->uptime_s > 0 ? s->uptime_s : 0;
	fputc('{', f);
	json_kv_str(f, 1, "version", s->version);
	fprintf(f, ",\"pid\":%ld,\"uptime_s\":%.3f,\"workers\":%d", s->pid, up, s->nworkers);
	json_kv_str(f, 0, "io", s->io);
	json_kv_str(f, 0, "io_why", s->io_why);
	json_kv_str(f, 0, "ktls", s->ktls);
	json_kv_str(f, 0, "ktls_why", s->ktls_why);
	json_kv_str(f, 0, "kernel", s->kernel);
	json_kv_str(f, 0, "openssl", s->openssl);
	json_kv_str(f, 0, "cert", s->cert);
	json_kv_str(f, 0, "listen", s->listen);
	json_kv_str(f, 0, "backend", s->backend);
	fputs("}\n", f);
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
	tbl_add(&t, "ktls");
	tbl_add(&t, "%s%s%s%s", nz(s->ktls), s->ktls_why && *s->ktls_why ? " (" : "", nz(s->ktls_why),
		s->ktls_why && *s->ktls_why ? ")" : "");
	tbl_add(&t, "kernel"), tbl_add(&t, "%s", nz(s->kernel));
	tbl_add(&t, "openssl"), tbl_add(&t, "%s", nz(s->openssl));
	tbl_add(&t, "cert"), tbl_add(&t, "%s", nz(s->cert));
	tbl_add(&t, "listen"), tbl_add(&t, "%s", nz(s->listen));
	tbl_add(&t, "backend"), tbl_add(&t, "%s", nz(s->backend));
	return tbl_print(&t, f);
}

static void sum_counters(const struct admin_snapshot *s, struct admin_counters *t)
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
		for (int r = 0; r < ADMIN_MAX_REASONS; r++)
			t->closed[r] += c->closed[r];
	}
}

static const char *reason_name(const struct admin_snapshot *s, int i, char *buf, size_t len)
{
	if (s->reason_names && s->reason_names[i])
		return s->reason_names[i];
	snprintf(buf, len, "reason_%d", i);
	return buf;
}

static int render_stats(const struct admin_snapshot *s, int json, FILE *f)
{
	static const char *const hdr[] = { "stat", "value" };
	struct tbl tb = { .ncols = 2, .hdr = hdr, .right = 2 };
	struct admin_counters t;
	int nr = s->nreasons < 0 ? 0 : s->nreasons > ADMIN_MAX_REASONS ? ADMIN_MAX_REASONS : s->nreasons;
	char buf[32];

	sum_counters(s, &t);
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
		const char *name = reason_name(s, r, buf, sizeof(buf));
		if (!json) {
			tbl_add(&tb, "closed_%s", name), tbl_add(&tb, "%" PRIu64, t.closed[r]);
			continue;
		}
		if (r)
			fputc(',', f);
		json_str(f, name);
		fprintf(f, ":%" PRIu64, t.closed[r]);
	}
	if (json) {
		fputs("}}\n", f);
		return 0;
	}
	return tbl_print(&tb, f);
}

static void worker_json(const struct admin_worker *w, FILE *f)
{
	fprintf(f, "{\"id\":%d", w->id);
	json_kv_str(f, 0, "engine", w->engine);
	fprintf(f, ",\"active\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"bytes_c2b\":%" PRIu64
		   ",\"bytes_b2c\":%" PRIu64 ",\"loops\":%" PRIu64 ",\"enters\":%" PRIu64
		   ",\"completions\":%" PRIu64 "}",
		w->c.active, w->c.accepted, w->c.bytes_c2b, w->c.bytes_b2c, w->loops, w->enters,
		w->completions);
}

static int render_workers(const struct admin_snapshot *s, int json, FILE *f)
{
	static const char *const hdr[] = { "id",        "engine", "active", "accepted",   "bytes_c2b",
					   "bytes_b2c", "loops",  "enters", "completions" };
	struct tbl t = { .ncols = 9, .hdr = hdr, .right = 0x1fd }; /* all but engine */

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
		tbl_add(&t, "%d", w->id), tbl_add(&t, "%s", nz(w->engine));
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
	case ADM_SHOW_CONNS:
	case ADM_RELOAD:
	case ADM_DRAIN:
		rc = -ENOTSUP; /* not wired yet */
		break;
	}
	if (!rc && ferror(f))
		rc = -EIO;
	return rc;
}
