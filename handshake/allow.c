// SPDX-License-Identifier: MIT
// Client-certificate allow-lists: subject CN (exact), DNS SANs (exact or a
// leading "*." label wildcard) and URI SANs such as SPIFFE IDs (segment globs).
#include "handshake.h"

#include <string.h>
#include <strings.h>

int allow_match_dns(const char *pattern, const char *name)
{
	if (!*pattern || !*name)
		return 0;
	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, name) == 0;
	const char *dot = strchr(name, '.');
	/* the wildcard covers exactly one non-empty leftmost label */
	if (!dot || dot == name)
		return 0;
	return strcasecmp(pattern + 1, dot) == 0;
}

/* One pass with a single backtrack point, not a recursion per '*': a pattern with many
 * stars against a long URI from a certificate would otherwise take exponential time.
 * A '*' never matches '/', so the pattern's '/' meet the URI's in order, and a star
 * before a matched '/' has nothing left to try. */
int allow_match_uri(const char *p, const char *u)
{
	const char *star_p = NULL, *star_u = NULL;
	for (;;) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			if (*p == 0)
				return 1; /* trailing '*': prefix match */
			star_p = p;
			star_u = u;
			continue;
		}
		if (*p == 0 && *u == 0)
			return 1;
		if (*u && *p == *u) {
			if (*p == '/')
				star_p = NULL;
			p++;
			u++;
			continue;
		}
		/* mismatch: the last '*' takes one more character, if it may */
		if (!star_p || *star_u == 0 || *star_u == '/')
			return 0;
		p = star_p;
		u = ++star_u;
	}
}

int allow_check(const struct hs_settings *s, const char *cn, const char *const *dns, size_t ndns,
		const char *const *uris, size_t nuris)
{
	if (!s->n_allow_cn && !s->n_allow_dns && !s->n_allow_uri)
		return 1;
	for (size_t i = 0; cn && i < s->n_allow_cn; i++)
		if (strcmp(s->allow_cn[i], cn) == 0)
			return 1;
	for (size_t i = 0; i < s->n_allow_dns; i++)
		for (size_t j = 0; j < ndns; j++)
			if (allow_match_dns(s->allow_dns[i], dns[j]))
				return 1;
	for (size_t i = 0; i < s->n_allow_uri; i++)
		for (size_t j = 0; j < nuris; j++)
			if (allow_match_uri(s->allow_uri[i], uris[j]))
				return 1;
	return 0;
}
