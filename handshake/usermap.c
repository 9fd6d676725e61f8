// SPDX-License-Identifier: MIT
// --client-user-map: which PostgreSQL users a client certificate may log in as, in
// the spirit of PostgreSQL's pg_ident.conf. Parsing and matching only; the file is
// read by hs_ctx.c.
#include "handshake.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAP_USERS_MAX 64   /* users on one line */
#define MAP_REGEX_MAX 256  /* bytes of a /regex identity */

struct user_rule {
	char kind;       /* 'C' CN (exact), 'N' subject DN (exact), 'D' DNS SAN pattern, 'U' URI SAN glob */
	char *ident;     /* without its prefix */
	regex_t *re;     /* identity "/pattern": a POSIX extended regex instead */
	char *users;     /* "a\0b\0\0"; with re, a "\1" in one is the first group's match */
	size_t users_len; /* bytes of users before the final NUL */
};

struct user_map {
	struct user_rule *r;
	size_t n, cap;
	atomic_int refs;  /* contexts that share it: a reload may keep the map in service */
};

static int map_fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int map_fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "line %u: %s", line, why);
	return -EINVAL;
}

struct user_map *user_map_ref(struct user_map *m)
{
	if (m)
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

static void rule_free(struct user_rule *r)
{
	free(r->ident);
	free(r->users);
	if (r->re)
		regfree(r->re);
	free(r->re);
}

void user_map_free(struct user_map *m)
{
	if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < m->n; i++)
		rule_free(&m->r[i]);
	free(m->r);
	free(m);
}

size_t user_map_rules(const struct user_map *m) { return m ? m->n : 0; }

/* One field of a line: its decoded bytes, and whether it was quoted. */
struct field {
	const char *s;
	size_t len;
	int quoted;
};

/* Split one line [p, end) into at most nmax fields, decoded into buf (as long as the
 * line): runs of bytes other than blanks, or double-quoted strings in which "" is one
 * quote (as pg_ident.conf's); '#' outside quotes starts a comment. Control characters
 * are refused, as is a lone '\r' (a CRLF's was removed by the caller). */
static int split_line(const char *p, const char *end, char *buf, struct field *f, size_t nmax, size_t *nf,
		      unsigned line, char *err, size_t errlen)
{
	*nf = 0;
	while (p < end) {
		if (*p == ' ' || *p == '\t') {
			p++;
			continue;
		}
		if (*p == '#')
			return 0;
		if (*nf == nmax)
			return map_fail(err, errlen, line, "more than %zu users", nmax - 1);
		struct field *x = &f[(*nf)++];
		x->s = buf;
		x->quoted = *p == '"';
		if (x->quoted) {
			for (p++;; p++) {
				if (p == end)
					return map_fail(err, errlen, line, "a quote is not closed");
				if (*p == '"' && p + 1 < end && p[1] == '"')
					p++; /* "" inside quotes: one quote */
				else if (*p == '"')
					break;
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					return map_fail(err, errlen, line, "a control character (byte %d)", (unsigned char)*p);
				*buf++ = *p;
			}
			p++;
			if (p < end && *p != ' ' && *p != '\t' && *p != '#')
				return map_fail(err, errlen, line, "text right after a closing quote");
		} else {
			for (; p < end && *p != ' ' && *p != '\t' && *p != '#'; p++) {
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					return map_fail(err, errlen, line, "a control character (byte %d)", (unsigned char)*p);
				*buf++ = *p;
			}
		}
		x->len = (size_t)(buf - x->s);
	}
	return 0;
}

/* One rule from a line's fields (at least one). */
/* The identity a field names: 'C' CN=, 'N' DN:, 'D' DNS:, 'U' URI: (with something
 * after it), *plen its prefix's length; 0 if none. */
static char ident_kind(const struct field *f, size_t *plen)
{
	static const struct {
		const char *prefix;
		char kind;
	} kinds[] = { { "CN=", 'C' }, { "DN:", 'N' }, { "DNS:", 'D' }, { "URI:", 'U' } };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		*plen = strlen(kinds[i].prefix);
		if (f->len > *plen && memcmp(f->s, kinds[i].prefix, *plen) == 0)
			return kinds[i].kind;
	}
	return 0;
}

/* A CN= value that reads as a whole subject: ',' or '+' then an attribute name and '='
 * ("CN=etl,O=Example Corp", pasted from a clientname=DN map). */
static int reads_as_dn(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] != ',' && s[i] != '+')
			continue;
		size_t j = i + 1;
		while (j < len && s[j] == ' ')
			j++;
		size_t name = j;
		while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '.' || s[j] == '-'))
			j++;
		if (j > name && j < len && s[j] == '=')
			return 1;
	}
	return 0;
}

/* The end of the bracket expression that opens at pat[i] ('['): the index of its ']',
 * or len. "[]a]" and "[^]a]" hold a ']'; so do "[:alpha:]", "[=a=]" and "[.-.]". */
static size_t bracket_end(const char *pat, size_t i, size_t len)
{
	size_t j = i + 1;
	j += j < len && pat[j] == '^';
	j += j < len && pat[j] == ']';
	for (; j < len && pat[j] != ']'; j++) {
		if (pat[j] != '[' || j + 1 >= len || (pat[j + 1] != ':' && pat[j + 1] != '=' && pat[j + 1] != '.'))
			continue;
		char close = pat[j + 1];
		size_t k = j + 2;
		while (k + 1 < len && !(pat[k] == close && pat[k + 1] == ']'))
			k++;
		j = k + 1; /* on the class's ']' */
	}
	return j;
}

#define REGEX_SIZE_MAX 512 /* glibc's compiled size, roughly: x+ is compiled as xx* */

/* What a /regex identity may hold, beyond what regcomp checks: no back-reference, no
 * counted repetition ({n,m}), no repetition (*, + or ?) that does not follow an atom
 * ("a++", "(*", "^?": undefined in POSIX), and no nesting of + that makes the
 * compiled pattern large (each + copies what it repeats: 14 nested "(...)+" groups
 * take seconds to match). These make compiling or matching expensive in time or
 * memory, and certificates bring the text it is run against. */
static const char *regex_refused(const char *pat, size_t len)
{
	size_t stack[MAP_REGEX_MAX + 1], depth = 0;
	size_t cur = 0, last = 0; /* sizes: this group so far, the atom a repetition takes */
	for (size_t i = 0; i < len; i++) {
		char ch = pat[i];
		if (ch == '[') {
			i = bracket_end(pat, i, len);
			last = 1;
		} else if (ch == '\\' && i + 1 < len) {
			if (pat[++i] >= '1' && pat[i] <= '9')
				return "back-references (\\1 in the pattern) are not supported";
			last = 1;
		} else if (ch == '{') {
			return "counted repetition ({n,m}) is not supported: spell it out, or use + and *";
		} else if (ch == '*' || ch == '+' || ch == '?') {
			if (!last)
				return "a *, + or ? that follows no character or group (as in a++ or (*) is not supported";
			cur += ch == '+' ? last : 1;
			last = 0;
			continue;
		} else if (ch == '(') {
			stack[depth++] = cur;
			cur = 0;
			last = 0;
			continue;
		} else if (ch == ')' && depth) {
			last = cur + 1;
			cur = stack[--depth];
		} else {
			last = ch != '|' && ch != '^';
		}
		cur += last ? last : 1;
		if (cur > REGEX_SIZE_MAX)
			return "its + repeat groups that hold + too deeply (the compiled pattern would be too large)";
	}
	return NULL;
}

static int compile_regex(struct user_rule *r, const char *pat, size_t len, int want_group, unsigned line,
			 char *err, size_t errlen)
{
	if (len > MAP_REGEX_MAX)
		return map_fail(err, errlen, line, "a /regex over %d bytes", MAP_REGEX_MAX);
	int shown = (int)(len > 64 ? 64 : len);
	const char *why = regex_refused(pat, len); /* its group stack holds MAP_REGEX_MAX */
	if (why)
		return map_fail(err, errlen, line, "'/%.*s': %s", shown, pat, why);
	char *text = strndup(pat, len);
	if (!text || !(r->re = calloc(1, sizeof(*r->re)))) {
		free(text);
		return -ENOMEM;
	}
	/* without a \1 to fill, glibc matches faster when it need not track groups */
	int rc = regcomp(r->re, text, REG_EXTENDED | (want_group ? 0 : REG_NOSUB));
	free(text);
	if (rc) {
		char msg[100];
		regerror(rc, r->re, msg, sizeof(msg));
		free(r->re);
		r->re = NULL;
		return map_fail(err, errlen, line, "'/%.*s': %s", shown, pat, msg);
	}
	if (want_group && r->re->re_nsub == 0)
		return map_fail(err, errlen, line, "'/%.*s': a user holds \\1, but the /regex has no (group) for it",
				shown, pat);
	return 0;
}

/* The users of a line, checked; *ulen their bytes with a NUL each, *group whether one
 * holds \1 (only a /regex rule may). */
static int check_users(const struct field *f, size_t nf, int is_re, unsigned line, char *err, size_t errlen,
		       size_t *ulen, int *group)
{
	*ulen = 0;
	*group = 0;
	for (size_t i = 1; i < nf; i++) {
		const struct field *u = &f[i];
		const char *sub = u->len >= 2 ? memmem(u->s, u->len, "\\1", 2) : NULL;
		if (u->len > PG_USER_MAX)
			return map_fail(err, errlen, line, "user '%.16s...' is over %d bytes, which PostgreSQL cuts", u->s,
					PG_USER_MAX);
		if (!u->len)
			return map_fail(err, errlen, line, "an empty user name");
		if (!u->quoted && u->s[0] == '+')
			return map_fail(err, errlen, line, "'%.*s': role membership (pg_ident's +role) is not supported",
					(int)u->len, u->s);
		if (!u->quoted && memchr(u->s, ',', u->len))
			return map_fail(err, errlen, line, "'%.*s': users are separated by blanks, not commas (quote a "
					"name that holds one)", (int)u->len, u->s);
		if (is_re && sub && memmem(sub + 2, u->len - (size_t)(sub + 2 - u->s), "\\1", 2))
			return map_fail(err, errlen, line, "'%.*s': \\1 more than once", (int)u->len, u->s);
		if (!is_re && !u->quoted && sub)
			return map_fail(err, errlen, line, "'%.*s': \\1 needs a /regex identity (CN=/^(.*)@corp$)",
					(int)u->len, u->s);
		const char *bs = u->quoted ? NULL : memchr(u->s, '\\', u->len);
		if (bs && bs == sub) /* the \1; another backslash after it? */
			bs = memchr(sub + 2, '\\', u->len - (size_t)(sub + 2 - u->s));
		if (bs)
			return map_fail(err, errlen, line, "'%.*s': a backslash other than one \\1 (quote a name that "
					"holds one)", (int)u->len, u->s);
		*group |= is_re && sub;
		*ulen += u->len + 1;
	}
	return 0;
}

/* A DN: "/regex" that is rather a subject in OpenSSL's one-line form ("/C=US/O=x/CN=y"):
 * name= at its start and after a later '/'. */
static int reads_as_slash_dn(const char *s, size_t len)
{
	size_t n = 0;
	while (n < len && isalpha((unsigned char)s[n]))
		n++;
	if (!n || n == len || s[n] != '=')
		return 0;
	const char *slash = memchr(s + n, '/', len - n);
	if (!slash)
		return 0;
	size_t i = (size_t)(slash - s) + 1, k = i;
	while (k < len && isalpha((unsigned char)s[k]))
		k++;
	return k > i && k < len && s[k] == '=';
}

static int add_rule(struct user_map *m, const struct field *f, size_t nf, unsigned line, char *err, size_t errlen)
{
	int shown = (int)(f[0].len > 64 ? 64 : f[0].len);
	size_t plen, skip;
	char kind = ident_kind(&f[0], &plen);
	/* fields are not NUL-terminated: compare within their length only */
	int second = nf > 1 && ident_kind(&f[1], &skip);
	if (!kind && nf > 1 && (second || (f[1].len && f[1].s[0] == '/')))
		return map_fail(err, errlen, line, "'%.*s': there is no map-name column (pg_ident's first): drop it%s",
				shown, f[0].s, second ? "" : ", and say which name the /regex is for: CN=/...");
	if (!kind && !f[0].quoted && f[0].len && f[0].s[0] == '/')
		return map_fail(err, errlen, line, "'%.*s': say which name the /regex is for: CN=/..., DN:/..., "
				"DNS:/... or URI:/...", shown, f[0].s);
	if (!kind)
		return map_fail(err, errlen, line, "'%.*s' is not CN=name, DN:subject, DNS:name or URI:pattern", shown,
				f[0].s);
	const char *id = f[0].s + plen;
	size_t idlen = f[0].len - plen;
	int is_re = idlen > 1 && id[0] == '/';
	if (idlen > MAP_IDENT_MAX)
		return map_fail(err, errlen, line, "an identity over %d bytes", MAP_IDENT_MAX);
	if (kind == 'C' && !is_re && reads_as_dn(id, idlen))
		return map_fail(err, errlen, line, "'%.*s' reads as a whole subject: to match the subject (as "
				"clientname=DN), write the whole field double-quoted with DN: before it", shown, f[0].s);
	if (kind == 'N' && is_re && reads_as_slash_dn(id + 1, idlen - 1))
		return map_fail(err, errlen, line, "'%.*s' is a subject in OpenSSL's /C=../CN=.. form, read as a /regex: "
				"DN: takes RFC 2253 (CN=..,O=..,C=..; check --client-cert prints it)", shown, f[0].s);
	if (kind == 'N' && !f[0].quoted)
		return map_fail(err, errlen, line, "'%.*s': double-quote a DN: identity (its values may hold blanks: "
				"\"DN:CN=a,O=Example Corp\")", shown, f[0].s);
	if (nf < 2)
		return map_fail(err, errlen, line, "'%.*s' names no user", shown, f[0].s);
	size_t ulen;
	int group, rc;
	if ((rc = check_users(f, nf, is_re, line, err, errlen, &ulen, &group)))
		return rc;
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 8;
		struct user_rule *r = realloc(m->r, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		m->r = r;
		m->cap = cap;
	}
	struct user_rule *r = &m->r[m->n];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->ident = strndup(id, idlen);
	r->users = malloc(ulen + 1);
	if (r->ident && r->users && is_re)
		rc = compile_regex(r, id + 1, idlen - 1, group, line, err, errlen);
	if (!r->ident || !r->users || rc) {
		rule_free(r);
		return rc ? rc : -ENOMEM;
	}
	char *w = r->users;
	for (size_t i = 1; i < nf; i++) {
		memcpy(w, f[i].s, f[i].len);
		w[f[i].len] = 0;
		w += f[i].len + 1;
	}
	*w = 0;
	r->users_len = ulen;
	m->n++;
	return 0;
}

int user_map_parse(const char *text, size_t len, struct user_map **out, char *err, size_t errlen)
{
	struct user_map *m = calloc(1, sizeof(*m));
	char *buf = malloc(len + 1);
	struct field f[MAP_USERS_MAX + 1];
	if (!m || !buf) {
		free(m);
		free(buf);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&m->refs, 1);
	const char *p = text, *end = text + len;
	unsigned line = 0;
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3; /* a UTF-8 byte-order mark, as some editors write */
	int rc = 0;
	while (p < end && !rc) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		line++;
		if (le > p && le[-1] == '\r')
			le--; /* CRLF */
		size_t nf;
		rc = split_line(p, le, buf, f, sizeof(f) / sizeof(f[0]), &nf, line, err, errlen);
		if (!rc && nf)
			rc = add_rule(m, f, nf, line, err, errlen);
		p = nl ? nl + 1 : end;
	}
	free(buf); /* no rule at all is a map that gives no one any user */
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		user_map_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* The names of a certificate a rule of this kind looks at. */
struct names {
	const char *const *v;
	size_t n;
};

static struct names rule_names(char kind, const char *const *cn, const char *const *dn, const char *const *dns,
			       size_t ndns, const char *const *uris, size_t nuris)
{
	switch (kind) {
	case 'C':
		return (struct names){ cn, *cn && **cn ? 1 : 0 };
	case 'N':
		return (struct names){ dn, *dn && **dn ? 1 : 0 };
	case 'D':
		return (struct names){ dns, ndns };
	default:
		return (struct names){ uris, nuris };
	}
}

static int literal_matches(const struct user_rule *r, const char *name)
{
	switch (r->kind) {
	case 'C':
	case 'N':
		return strcmp(r->ident, name) == 0;
	case 'D':
		return allow_match_dns(r->ident, name);
	default:
		return allow_match_uri(r->ident, name);
	}
}

struct ubuf {
	char *p;
	size_t len, cap;
	int nomem;
};

static void ubuf_add(struct ubuf *b, const char *s, size_t n)
{
	if (b->nomem)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *grown = realloc(b->p, cap);
		if (!grown) {
			b->nomem = 1;
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* A /regex rule's users for one name it matched: "\1" becomes the first group's
 * match; a user that comes out empty, or longer than PostgreSQL keeps whole (no
 * login could match it), is left out. */
static void add_substituted(struct ubuf *b, const struct user_rule *r, const char *name, const regmatch_t *g)
{
	for (const char *u = r->users; *u; u += strlen(u) + 1) {
		const char *sub = strstr(u, "\\1");
		if (!sub) {
			ubuf_add(b, u, strlen(u) + 1);
			continue;
		}
		if (g->rm_so < 0) /* the group took no part in the match: no user, as PostgreSQL */
			continue;
		size_t glen = (size_t)(g->rm_eo - g->rm_so), len = (size_t)(sub - u) + glen + strlen(sub + 2);
		if (len == 0 || len > PG_USER_MAX)
			continue;
		ubuf_add(b, u, (size_t)(sub - u));
		ubuf_add(b, name + g->rm_so, glen);
		ubuf_add(b, sub + 2, strlen(sub + 2) + 1);
	}
}

int user_map_users(const struct user_map *m, const char *cn, const char *dn, const char *const *dns, size_t ndns,
		   const char *const *uris, size_t nuris, char **out)
{
	struct ubuf b = { 0 };
	ubuf_add(&b, "", 0); /* an empty list is "\0" */
	for (size_t i = 0; m && i < m->n && !b.nomem; i++) {
		const struct user_rule *r = &m->r[i];
		struct names nm = rule_names(r->kind, &cn, &dn, dns, ndns, uris, nuris);
		for (size_t k = 0; k < nm.n; k++) {
			regmatch_t g[2] = { { -1, -1 }, { -1, -1 } };
			if (!r->re && literal_matches(r, nm.v[k])) {
				ubuf_add(&b, r->users, r->users_len);
				break; /* one match of a literal rule gives its users once */
			}
			if (r->re && regexec(r->re, nm.v[k], 2, g, 0) == 0)
				add_substituted(&b, r, nm.v[k], &g[1]);
		}
	}
	if (b.nomem) {
		free(b.p);
		return -ENOMEM;
	}
	b.p[b.len] = 0;
	*out = b.p;
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
