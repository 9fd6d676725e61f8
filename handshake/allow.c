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

int allow_match_uri(const char *p, const char *u)
{
	while (*p) {
		if (*p == '*') {
			if (p[1] == 0)
				return 1; /* trailing '*': prefix match */
			/* '*' inside: try each split within the current segment */
			for (const char *s = u;; s++) {
				if (allow_match_uri(p + 1, s))
					return 1;
				if (*s == 0 || *s == '/')
					return 0;
			}
		}
		if (*p != *u)
			return 0;
		p++;
		u++;
	}
	return *u == 0;
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
