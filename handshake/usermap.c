// SPDX-License-Identifier: MIT
// --client-user-map: which PostgreSQL users a client certificate may log in as, in
// the spirit of PostgreSQL's pg_ident.conf. Parsing and matching only; the file is
// read by hs_ctx.c.
#include "handshake.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAP_IDENT_MAX 1024 /* bytes of one identity, "URI:" and all */
#define MAP_USERS_MAX 64   /* users on one line */

struct user_rule {
	char kind;       /* 'C' CN (exact), 'D' DNS SAN pattern, 'U' URI SAN glob */
	char *ident;     /* without its prefix */
	char *users;     /* "a\0b\0\0" */
	size_t users_len; /* bytes of users before the final NUL */
};

struct user_map {
	struct user_rule *r;
	size_t n, cap;
};

static int map_fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int map_fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "line %u: %s", line, why);
	return -EINVAL;
}

void user_map_free(struct user_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->r[i].ident);
		free(m->r[i].users);
	}
	free(m->r);
	free(m);
}

size_t user_map_rules(const struct user_map *m) { return m ? m->n : 0; }

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

/* The next whitespace-separated field of [*p, end): its start and length, 0 at the end. */
static size_t next_field(const char **p, const char *end, const char **field)
{
	const char *s = *p;
	while (s < end && is_space(*s))
		s++;
	const char *e = s;
	while (e < end && !is_space(*e))
		e++;
	*field = s;
	*p = e;
	return (size_t)(e - s);
}

/* One rule from a line without its comment, [s, end), that holds a field. */
static int parse_rule(struct user_map *m, const char *s, const char *end, unsigned line, char *err, size_t errlen)
{
	static const struct {
		const char *prefix;
		char kind;
	} kinds[] = { { "CN=", 'C' }, { "DNS:", 'D' }, { "URI:", 'U' } };
	const char *f;
	size_t flen = next_field(&s, end, &f);
	char kind = 0;
	size_t plen = 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		plen = strlen(kinds[i].prefix);
		if (flen > plen && strncmp(f, kinds[i].prefix, plen) == 0) {
			kind = kinds[i].kind;
			break;
		}
	}
	if (!kind)
		return map_fail(err, errlen, line, "'%.*s' is not CN=name, DNS:name or URI:pattern",
				(int)(flen > 64 ? 64 : flen), f);
	if (flen > MAP_IDENT_MAX)
		return map_fail(err, errlen, line, "an identity over %d bytes", MAP_IDENT_MAX);
	char users[MAP_USERS_MAX * (PG_USER_MAX + 1) + 1];
	size_t ulen = 0, nusers = 0;
	const char *u;
	size_t n;
	while ((n = next_field(&s, end, &u))) {
		if (n > PG_USER_MAX)
			return map_fail(err, errlen, line, "user '%.16s...' is over %d bytes, which PostgreSQL cuts", u,
					PG_USER_MAX);
		if (++nusers > MAP_USERS_MAX)
			return map_fail(err, errlen, line, "more than %d users", MAP_USERS_MAX);
		memcpy(users + ulen, u, n);
		users[ulen + n] = 0;
		ulen += n + 1;
	}
	if (!nusers)
		return map_fail(err, errlen, line, "'%.*s' names no user", (int)(flen > 64 ? 64 : flen), f);
	users[ulen] = 0;
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 8;
		struct user_rule *r = realloc(m->r, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		m->r = r;
		m->cap = cap;
	}
	struct user_rule *r = &m->r[m->n];
	r->kind = kind;
	r->ident = strndup(f + plen, flen - plen);
	r->users = malloc(ulen + 1);
	if (!r->ident || !r->users) {
		free(r->ident);
		free(r->users);
		return -ENOMEM;
	}
	memcpy(r->users, users, ulen + 1);
	r->users_len = ulen;
	m->n++;
	return 0;
}

int user_map_parse(const char *text, size_t len, struct user_map **out, char *err, size_t errlen)
{
	struct user_map *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	const char *p = text, *end = text + len;
	unsigned line = 0;
	int rc = 0;
	while (p < end && !rc) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		line++;
		const char *hash = memchr(p, '#', (size_t)(le - p));
		const char *ce = hash ? hash : le;
		for (const char *q = p; q < ce && !rc; q++)
			if ((unsigned char)*q < 0x20 && !is_space(*q))
				rc = map_fail(err, errlen, line, "a control character (byte %d)", (unsigned char)*q);
		const char *f;
		const char *s = p;
		if (!rc && next_field(&s, ce, &f))
			rc = parse_rule(m, p, ce, line, err, errlen);
		p = le + (nl != NULL);
	}
	if (!rc && !m->n)
		rc = map_fail(err, errlen, line, "no rule in the file");
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		user_map_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

static int rule_matches(const struct user_rule *r, const char *cn, const char *const *dns, size_t ndns,
			const char *const *uris, size_t nuris)
{
	switch (r->kind) {
	case 'C':
		return cn && *cn && strcmp(r->ident, cn) == 0;
	case 'D':
		for (size_t i = 0; i < ndns; i++)
			if (allow_match_dns(r->ident, dns[i]))
				return 1;
		return 0;
	default:
		for (size_t i = 0; i < nuris; i++)
			if (allow_match_uri(r->ident, uris[i]))
				return 1;
		return 0;
	}
}

int user_map_users(const struct user_map *m, const char *cn, const char *const *dns, size_t ndns,
		   const char *const *uris, size_t nuris, char **out)
{
	size_t total = 0;
	for (size_t i = 0; m && i < m->n; i++)
		if (rule_matches(&m->r[i], cn, dns, ndns, uris, nuris))
			total += m->r[i].users_len;
	char *buf = malloc(total + 1), *w = buf;
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; m && i < m->n; i++)
		if (rule_matches(&m->r[i], cn, dns, ndns, uris, nuris)) {
			memcpy(w, m->r[i].users, m->r[i].users_len);
			w += m->r[i].users_len;
		}
	*w = 0;
	*out = buf;
	return 0;
}

int user_list_has(const char *list, const char *user)
{
	if (strlen(user) > PG_USER_MAX)
		return 0;
	for (const char *u = list; *u; u += strlen(u) + 1)
		if (strcmp(u, user) == 0)
			return 1;
	return 0;
}
