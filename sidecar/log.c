// SPDX-License-Identifier: MIT
// logfmt/JSON line logger. Values containing spaces or quotes must be passed
// through log_quote() by the caller; the message itself is always quoted.
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level g_level = LOG_INFO; /* a reload may change it while workers log */
static int g_json;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level lvl) { __atomic_store_n(&g_level, lvl, __ATOMIC_RELAXED); }
void log_set_json(int on) { g_json = on; }
int log_enabled(enum log_level lvl) { return lvl <= __atomic_load_n(&g_level, __ATOMIC_RELAXED); }

int log_level_parse(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Append s to buf as a quoted string, escaping quotes, backslashes and controls. */
static size_t put_quoted(char *buf, size_t off, size_t cap, const char *s)
{
	if (off < cap)
		buf[off++] = '"';
	for (; *s && off + 2 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[off++] = '\\';
			buf[off++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			buf[off++] = '?';
		} else {
			buf[off++] = (char)c;
		}
	}
	if (off < cap)
		buf[off++] = '"';
	return off;
}

const char *log_esc(char *buf, size_t len, const char *s)
{
	size_t o = 0;
	for (; s && *s && o + 3 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			buf[o++] = '\\';
		buf[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (len)
		buf[o < len ? o : len - 1] = 0;
	return buf;
}

/* An unquoted value written as a JSON number is: -?(0|[1-9][0-9]*)(.[0-9]+)? */
static int json_number(const char *v)
{
	const char *p = v + (*v == '-');
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return 0;
	if (*p == '.') {
		if (!(p[1] >= '0' && p[1] <= '9'))
			return 0;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	return *p == 0;
}

/* Convert "k=v k2=\"v 2\"" pairs into ,"k":v,"k2":"v 2" JSON members: an unquoted
 * number stays a number (bytes, durations, counts: log stores can sum and compare
 * them), anything else, and anything quoted, is a string. So a value that only
 * looks like a number now and then (a hex serial) must be quoted at its source. */
static size_t kv_to_json(char *buf, size_t off, size_t cap, const char *kv)
{
	const char *p = kv;
	while (*p && off + 8 < cap) {
		while (*p == ' ')
			p++;
		const char *eq = strchr(p, '=');
		if (!eq)
			break;
		off += (size_t)snprintf(buf + off, cap - off, ",\"%.*s\":", (int)(eq - p), p);
		if (off >= cap)
			return cap;
		p = eq + 1;
		char val[512];
		size_t n = 0;
		int quoted = *p == '"';
		if (quoted) {
			p++;
			while (*p && *p != '"' && n + 1 < sizeof(val)) {
				if (*p == '\\' && p[1])
					p++;
				val[n++] = *p++;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ' ' && n + 1 < sizeof(val))
				val[n++] = *p++;
		}
		val[n] = 0;
		if (!quoted && json_number(val))
			off += (size_t)snprintf(buf + off, cap - off, "%s", val);
		else
			off = put_quoted(buf, off, cap, val);
		if (off >= cap)
			return cap;
	}
	return off;
}

void log_msg(enum log_level lvl, const char *mod, const char *msg, const char *fmt, ...)
{
	if (!log_enabled(lvl))
		return;
	int saved = errno;
	char kv[1024] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(kv, sizeof(kv), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

	char line[2048];
	size_t cap = sizeof(line) - 2, off;
	if (g_json) {
		off = (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":\"%s\",\"msg\":",
				       when, level_names[lvl], mod);
		off = put_quoted(line, off < cap ? off : cap, cap, msg);
		off = kv_to_json(line, off, cap, kv);
		if (off < cap)
			line[off++] = '}';
	} else {
		off = (size_t)snprintf(line, cap, "ts=%s level=%s mod=%s msg=", when, level_names[lvl], mod);
		off = put_quoted(line, off < cap ? off : cap, cap, msg);
		if (kv[0] && off < cap)
			off += (size_t)snprintf(line + off, cap - off, " %s", kv);
	}
	if (off > cap)
		off = cap;
	line[off++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, off);
	(void)r;
	errno = saved;
}
