// SPDX-License-Identifier: MIT
// Minimal TAP producer for C unit tests: plan, ok, is, diag, skip, done_testing.
#ifndef KS_TAP_H
#define KS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed, tap_planned;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
}

static inline void diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static inline int ok_(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (!cond) {
		tap_failed++;
		printf("#   Failed at %s:%d\n", file, line);
	}
	return cond;
}
#define ok(cond, ...) ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is(got, exp, ...)                                                              \
	do {                                                                           \
		long long g_ = (long long)(got), e_ = (long long)(exp);                \
		if (!ok_(g_ == e_, __FILE__, __LINE__, __VA_ARGS__))                   \
			printf("#   got: %lld\n#   expected: %lld\n", g_, e_);          \
	} while (0)

#define is_str(got, exp, ...)                                                          \
	do {                                                                           \
		const char *g_ = (got), *e_ = (exp);                                   \
		int c_ = g_ && e_ ? strcmp(g_, e_) == 0 : g_ == e_;                    \
		if (!ok_(c_, __FILE__, __LINE__, __VA_ARGS__))                         \
			printf("#   got: '%s'\n#   expected: '%s'\n", g_ ? g_ : "(null)", \
			       e_ ? e_ : "(null)");                                    \
	} while (0)

static inline void skip(const char *why)
{
	printf("ok %d # SKIP %s\n", ++tap_n, why);
}

static inline int done_testing(void)
{
	if (!tap_planned)
		printf("1..%d\n", tap_n);
	return tap_failed || (tap_planned && tap_planned != tap_n) ? 1 : 0;
}

#endif
