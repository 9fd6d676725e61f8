// SPDX-License-Identifier: MIT
// Unit tests for the relay buffer pool: slots are distinct and page-aligned,
// the hot cache hands back the newest slots with their pages, everything past
// it and every trimmed slot has its pages given back (mincore), and nothing is
// lost or handed out twice.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bufpool.h"
#include "tap.h"

#define N 200 /* more than one mapping of slots */

/* Pages of buf that are resident in memory. */
static unsigned resident(void *buf)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char v[BUFPOOL_SLOT / 4096 + 1];
	size_t pages = BUFPOOL_SLOT / (size_t)pg, n = 0;
	if (mincore(buf, BUFPOOL_SLOT, v) != 0)
		return ~0u;
	for (size_t i = 0; i < pages; i++)
		n += v[i] & 1;
	return (unsigned)n;
}

static int all_bytes(const uint8_t *b, uint8_t v)
{
	for (size_t i = 0; i < BUFPOOL_SLOT; i++)
		if (b[i] != v)
			return 0;
	return 1;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

/* No two of the n slots overlap. */
static int disjoint(void **s, size_t n)
{
	void **c = malloc(n * sizeof(*c));
	int ok = c != NULL;
	if (c) {
		memcpy(c, s, n * sizeof(*c));
		qsort(c, n, sizeof(*c), cmp_ptr);
		for (size_t i = 1; i < n && ok; i++)
			ok = (uintptr_t)c[i] - (uintptr_t)c[i - 1] >= BUFPOOL_SLOT;
	}
	free(c);
	return ok;
}

int main(void)
{
	struct bufpool p = {0};
	void *s[N];
	unsigned full = BUFPOOL_SLOT / (unsigned)sysconf(_SC_PAGESIZE);
	int aligned = 1;

	for (int i = 0; i < N; i++) {
		s[i] = bufpool_get(&p);
		aligned &= s[i] && ((uintptr_t)s[i] % (uintptr_t)sysconf(_SC_PAGESIZE)) == 0;
		memset(s[i], i + 1, BUFPOOL_SLOT);
	}
	ok(aligned, "%d slots, all page-aligned", N);
	ok(disjoint(s, N), "no two slots overlap");

	/* the slots given back while the hot cache has room keep their pages and contents */
	for (int i = 0; i < N; i++)
		bufpool_put(&p, s[i]);
	is((int)p.nhot, (int)BUFPOOL_HOT, "the hot cache holds %u slots", BUFPOOL_HOT);
	is((int)resident(s[0]), (int)full, "a hot slot keeps its pages");
	is((int)resident(s[BUFPOOL_HOT]), 0, "a slot given back once the cache is full gives its pages back");
	is((int)resident(s[N - 1]), 0, "and so does the last one");
	void *again = bufpool_get(&p);
	ok(again == s[BUFPOOL_HOT - 1], "the last slot that went into the cache comes back first");
	ok(all_bytes(again, (uint8_t)BUFPOOL_HOT), "with its pages still there (no fault, no zeroing)");
	bufpool_put(&p, again);

	/* trim: nothing goes while slots are being taken, all goes after a quiet period */
	bufpool_get(&p);
	bufpool_put(&p, again);
	is((int)bufpool_trim(&p), 0, "a trim after a slot was taken releases nothing");
	is((int)resident(s[1]), (int)full, "the hot slots still have their pages");
	is((int)bufpool_trim(&p), (int)BUFPOOL_HOT, "the next trim, with nothing taken, releases the hot cache");
	is((int)p.nhot, 0, "the hot cache is empty");
	unsigned left = 0;
	for (int i = 0; i < N; i++)
		left += resident(s[i]);
	is((int)left, 0, "no slot keeps a page after the trim");
	is((int)bufpool_trim(&p), 0, "a trim of an empty cache releases nothing");

	/* every slot comes back exactly once, zeroed where its pages were given back */
	void *t[N];
	int zero = 1;
	for (int i = 0; i < N; i++) {
		t[i] = bufpool_get(&p);
		zero &= t[i] && all_bytes(t[i], 0);
	}
	ok(zero, "the %d slots come back zeroed", N);
	ok(disjoint(t, N), "and none twice");
	is((int)p.total, 4 * 64, "no mapping more than needed (%zu slots)", p.total);

	/* a slot released while in use (an idle connection) reads as zeroes */
	memset(t[0], 0x5a, BUFPOOL_SLOT);
	bufpool_release(t[0]);
	is((int)resident(t[0]), 0, "bufpool_release drops the pages of a slot in use");
	ok(all_bytes(t[0], 0), "which then reads as zeroes");
	bufpool_put(&p, NULL);
	is((int)p.nhot, 0, "putting NULL is a no-op");
	for (int i = 0; i < N; i++)
		bufpool_put(&p, t[i]);
	bufpool_destroy(&p);
	done_testing();
}
